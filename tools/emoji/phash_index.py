#!/usr/bin/env python3
"""Write models/easel-emoji/index/phash.json: a 64-bit DCT pHash of every training image.

  python tools/emoji/phash_index.py --data .cache/emoji/emoji-32 --out models/easel-emoji/index/phash.json

The images hashed are exactly the training images (fetch_data.py: RGBA over
white, BOX-resized to 32x32, uint8 RGB), so a generated 32x32 output can be
compared with them directly.

pHash, exactly (the Rust side must match bit for bit):
  1. input: 32x32 RGB uint8 (a larger image is first resized to 32x32 with a
     box/area filter; the model's own outputs are already 32x32);
  2. grey level, as f64, no rounding: L = (299*R + 587*G + 114*B) / 1000;
  3. 2-D DCT-II, unnormalised: D = C . L . C^T with
     C[k][n] = cos(pi * (2n + 1) * k / 64), k, n = 0..31
     (any uniform scale factor gives the same hash; per-coefficient
     "orthonormal" scaling does NOT, so none is applied);
  4. keep the top-left 8x8 block D[0..8][0..8] (DC included), 64 values in
     row-major order v[i] = D[i / 8][i % 8];
  5. m = median of the 64 values = (s[31] + s[32]) / 2 of the sorted values;
  6. bit i = 1 if v[i] > m else 0; hash = sum(bit[i] << (63 - i)), i.e. v[0]
     is the most significant bit; written as 16 lower-case hex digits.
Distance = Hamming distance (popcount of xor). The file records the nearest-
neighbour distance statistics between distinct training images, to pick the
near-copy threshold.
"""
import argparse
import json
import os

import numpy as np

N = 32
_k = np.arange(N)[:, None]
_n = np.arange(N)[None, :]
DCT = np.cos(np.pi * (2 * _n + 1) * _k / (2 * N))  # C[k][n]


def phash(rgb: np.ndarray) -> int:
    """rgb: [32, 32, 3] uint8 -> 64-bit int."""
    assert rgb.shape == (N, N, 3) and rgb.dtype == np.uint8
    x = rgb.astype(np.float64)
    grey = (299 * x[..., 0] + 587 * x[..., 1] + 114 * x[..., 2]) / 1000
    d = DCT @ grey @ DCT.T
    v = d[:8, :8].reshape(64)
    s = np.sort(v)
    m = (s[31] + s[32]) / 2
    h = 0
    for i in range(64):
        if v[i] > m:
            h |= 1 << (63 - i)
    return h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".cache/emoji/emoji-32")
    ap.add_argument("--out", default="models/easel-emoji/index/phash.json")
    args = ap.parse_args()
    imgs = np.load(args.data + ".npz")["images"]
    meta = json.load(open(args.data + ".json"))
    hashes = [phash(a) for a in imgs]

    hs = np.array(hashes, dtype=np.uint64)
    x = hs[:, None] ^ hs[None, :]
    dist = np.zeros(x.shape, dtype=np.int64)
    for b in range(64):
        dist += ((x >> np.uint64(b)) & np.uint64(1)).astype(np.int64)
    np.fill_diagonal(dist, 64)
    nn = dist.min(axis=1)
    stats = {
        "nearest_neighbour_hamming_percentiles": {str(q): float(np.percentile(nn, q)) for q in (1, 5, 10, 25, 50)},
        "pairs_within_4": int((dist <= 4).sum() // 2),
        "pairs_within_8": int((dist <= 8).sum() // 2),
    }
    out = {
        "algorithm": "dct-phash-64: grey=(299R+587G+114B)/1000 on 32x32, unnormalised 2-D DCT-II, "
        "top-left 8x8 incl. DC, bit=v>median(64), row-major, first value = MSB; see tools/emoji/phash_index.py",
        "image": "training image as trained: 32x32 RGB, RGBA composited over white, BOX-resized from 64x64",
        "stats": stats,
        "entries": [
            {"hash": f"{h:016x}", "unified": m["unified"], "caption": m["captions"][0]} for h, m in zip(hashes, meta)
        ],
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    entries = out.pop("entries")
    with open(args.out, "w") as f:  # one entry per line: small, diffable
        head = json.dumps(out, indent=1, ensure_ascii=False)
        f.write(head[:-2] + ',\n "entries": [\n')
        f.write(",\n".join(json.dumps(e, ensure_ascii=False) for e in entries))
        f.write("\n ]\n}\n")
    print(f"{len(hashes)} hashes -> {args.out}; {stats}")


if __name__ == "__main__":
    main()
