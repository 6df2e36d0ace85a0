#!/usr/bin/env python3
"""Export a train_scorer.py checkpoint as models/easel-emoji/scorer/.

  python tools/emoji/export_scorer.py --ckpt .cache/scorer/ckpt.pt --out models/easel-emoji/scorer

Writes ``model.safetensors`` (the image encoder in f16; tensor names
``blocks.{i}.conv.*``, ``blocks.{i}.norm.*``, ``proj.*`` as in
scorer_common.ImageEncoder) and ``config.json`` (scorer_common.CONFIG plus the
learnt temperature and the training step, for the record). The text side is
the model's own ``text_encoder/`` and ``tokenizer/``, named relative to the
scorer folder, so nothing of MiniLM is duplicated.
"""
import argparse
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scorer_common as sc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=".cache/scorer/ckpt.pt")
    ap.add_argument("--out", default="models/easel-emoji/scorer")
    args = ap.parse_args()
    ck = torch.load(args.ckpt, map_location="cpu")
    enc = sc.ImageEncoder()
    enc.load_state_dict(ck["encoder"])
    os.makedirs(args.out, exist_ok=True)
    tensors = {k: v.detach().half().contiguous() for k, v in enc.state_dict().items()}
    save_file(tensors, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    cfg = dict(sc.CONFIG)
    cfg["logit_scale"] = round(float(min(ck["logit_scale"].item(), math.log(100))), 4)
    cfg["training_steps"] = int(ck["step"])
    cfg["score"] = "cosine similarity of the L2-normalised image and text embeddings, in [-1, 1]"
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    n = sum(v.numel() for v in tensors.values())
    print(f"{n:,} parameters at step {ck['step']} -> {args.out}")


if __name__ == "__main__":
    main()
