#!/usr/bin/env python3
"""Build a tiny random-weight CLIP folder and its golden numbers, to check
the engine's CLIP scorer (crates/engine/src/score/clip.rs) against
transformers' CLIPModel. No CLIP weights can be downloaded here, so the test
uses the real architecture at toy size.

  python tools/emoji/make_tiny_clip.py --out crates/engine/tests/fixtures/score/tiny-clip

Writes config.json (transformers CLIPConfig: 2 layers, width 32, 32x32
images in 8x8 patches, projection 16, quick_gelu), model.safetensors (f32,
torch.manual_seed(0)), a word-level tokenizer.json whose <|endoftext|> has
the largest id (as in CLIP's vocabulary, where candle pools), and golden.json
(image and text embeddings, normalised, for fixed inputs).
"""
import argparse
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPConfig, CLIPModel

WORDS = ["a", "red", "apple", "taco", "happy", "face", "blue", "car", "green", "the", "on", "road"]
PROMPTS = ["a red apple", "taco", "a happy face", "a blue car on the road"]
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="crates/engine/tests/fixtures/score/tiny-clip")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    vocab = {"<|startoftext|>": 0, "[UNK]": 1}
    for w in WORDS:
        vocab[w] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)  # the largest id
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", vocab["<|endoftext|>"])],
    )
    tok.save(os.path.join(args.out, "tokenizer.json"))

    eos = vocab["<|endoftext|>"]
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, hidden_act="quick_gelu",
                         bos_token_id=0, eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, hidden_act="quick_gelu"),
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = CLIPModel(cfg).eval()
    with torch.no_grad():  # random init leaves some tensors at exactly 0/1; perturb all
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if "position_ids" not in k}
    save_file(sd, os.path.join(args.out, "model.safetensors"))
    cfg.to_json_file(os.path.join(args.out, "config.json"))

    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2)]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]

    def feats(out):
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    with torch.no_grad():
        ie = F.normalize(feats(model.get_image_features(pixel_values=x)), dim=-1)
        te = []
        for p in PROMPTS:
            ids = torch.tensor([tok.encode(p).ids])
            te.append(F.normalize(feats(model.get_text_features(input_ids=ids)), dim=-1)[0])
        te = torch.stack(te)
    golden = {
        "source": "tools/emoji/make_tiny_clip.py (transformers CLIPModel, random weights)",
        "tolerance": 1e-4,
        "prompts": PROMPTS,
        "text_embeddings": te.tolist(),
        "images": [{"rgb_hex": a.tobytes().hex(), "embedding": ie[i].tolist()} for i, a in enumerate(images)],
    }
    with open(os.path.join(args.out, "golden.json"), "w") as f:
        json.dump(golden, f)
        f.write("\n")
    print("tiny CLIP ->", args.out, "cos(img0, texts):", (ie[0] @ te.T).tolist())


if __name__ == "__main__":
    main()
