#!/usr/bin/env python3
"""Write the golden fixture that checks the Rust scorer and pHash against
this PyTorch/numpy reference (crates/engine/tests/score.rs).

  python tools/emoji/scorer_golden.py --model models/easel-emoji --data .cache/emoji/emoji-32 \
      --out crates/engine/tests/fixtures/score/golden.json

Images: three training emoji (Noto Emoji, Apache-2.0) and three synthetic
ones drawn here (a red disk, a colour gradient, seeded noise), each stored as
hex of its 32x32x3 uint8 RGB bytes. For each image the fixture records the
scorer's image embedding and the pHash; for each prompt the text embedding;
and the image x prompt cosine matrix. The scorer is loaded from the exported
f16 folder and computed in f32, exactly what the engine loads.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import scorer_common as sc  # noqa: E402
from phash_index import phash  # noqa: E402

PROMPTS = ["red apple", "taco", "grinning face", "a happy face", "a blue car on the road"]
EMOJI = ["red apple", "taco", "grinning face"]


def synthetic():
    yy, xx = np.mgrid[0:32, 0:32]
    disk = np.full((32, 32, 3), 255, np.uint8)
    # Off-centre on purpose: an image with an exact mirror symmetry has DCT
    # coefficients that are zero up to rounding, and the pHash bit of a value
    # at rounding-noise level next to the median depends on summation order
    # (numpy's BLAS vs the engine), so such images do not make a fair fixture.
    disk[(yy - 13.3) ** 2 + (xx - 17.8) ** 2 < 100] = (220, 30, 40)
    # Not a linear ramp: a separable image has exactly-zero DCT terms too.
    grad = np.stack([(xx * xx * 3 + yy * 5) % 256, (xx * 7 + yy * yy * 2) % 256, ((xx + 2 * yy) ** 2) % 256], -1).astype(np.uint8)
    noise = np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return [("red disk", disk), ("pattern", grad), ("noise", noise)]


def phash_margin(rgb):
    """Smallest |v - median| of the 64 pHash values, relative to the largest |v|."""
    from phash_index import DCT

    x = rgb.astype(np.float64)
    grey = (299 * x[..., 0] + 587 * x[..., 1] + 114 * x[..., 2]) / 1000
    v = (DCT @ grey @ DCT.T)[:8, :8].reshape(64)
    s = np.sort(v)
    return np.abs(v - (s[31] + s[32]) / 2).min() / np.abs(v).max()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/easel-emoji")
    ap.add_argument("--data", default=".cache/emoji/emoji-32")
    ap.add_argument("--out", default="crates/engine/tests/fixtures/score/golden.json")
    args = ap.parse_args()
    torch.set_num_threads(1)

    imgs = np.load(args.data + ".npz")["images"]
    meta = json.load(open(args.data + ".json"))
    first = [m["captions"][0] for m in meta]
    named = [(n, imgs[first.index(n)]) for n in EMOJI] + synthetic()

    for n, a in named:  # no bit of the fixture may hinge on rounding
        assert phash_margin(a) > 1e-9, f"{n}: a pHash value sits on the median"
    enc = sc.ImageEncoder()
    sd = {k: v.float() for k, v in load_file(os.path.join(args.model, "scorer", "model.safetensors")).items()}
    enc.load_state_dict(sd)
    enc.eval()
    te = common.TextEncoder(os.path.join(args.model, "text_encoder"), os.path.join(args.model, "tokenizer", "tokenizer.json"))
    with torch.no_grad():
        x = sc.to_input(torch.from_numpy(np.stack([a for _, a in named])))
        ie = enc(x)
        te_ = sc.embed_texts(te, PROMPTS)
        scores = ie @ te_.T
    out = {
        "source": "tools/emoji/scorer_golden.py; emoji images: Noto Emoji (Apache-2.0) via npm emoji-datasource-google",
        "tolerance": 1e-3,
        "prompts": PROMPTS,
        "text_embeddings": [[round(float(v), 7) for v in row] for row in te_],
        "images": [
            {
                "name": n,
                "rgb_hex": a.tobytes().hex(),
                "phash": f"{phash(a):016x}",
                "embedding": [round(float(v), 7) for v in ie[i]],
                "scores": [round(float(v), 7) for v in scores[i]],
            }
            for i, (n, a) in enumerate(named)
        ],
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print(f"{len(named)} images x {len(PROMPTS)} prompts -> {args.out}")
    for i, (n, _) in enumerate(named):
        print(f"  {n:14s}", " ".join(f"{s:+.3f}" for s in scores[i].tolist()))


if __name__ == "__main__":
    main()
