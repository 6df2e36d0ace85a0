#!/usr/bin/env python3
"""How far a transformation leaves easelmark from a read: the code bit errors before decoding.

    python bit_errors.py [--format webp|jpeg] [--quality 75] [--folder DIR] [--seed 3]

Marks every PNG of --folder (default: the delivered outputs shipped as test fixtures,
crates/media/tests/fixtures/outputs; 32x32 ones enlarged x8 by nearest neighbour to 256x256, as
the server does) with random ids, encodes it with Pillow's libwebp or libjpeg at --quality,
decodes it, and follows `easelmark.detect` to the soft code bits of its best scale candidate.
Prints per picture whether `detect` read the right ids, the sync z-score, the number of wrong
hard bits among the 127 (BCH(127, 64) has distance 21) and the reliability ranks of the wrong bits
(0 = least reliable). Then, per decoder design, how many pictures it could recover:
  chase p:  the wrong bits outside the p least reliable are at most T_ERR (Chase-II, the
            decoder before OSD);
  osd o:    at most o wrong bits among the (about) 64 most reliable (ordered-statistics
            decoding of order o re-encodes from them), whatever their cost;
  rank sum: the sum of the wrong bits' ranks + 1 is within the acceptance bound RANK_SUM_MAX
            (what the decoder accepts; `read` above is the decoder itself, OSD_ORDER included).
A development tool for the decoder's design; it measures, it asserts nothing.
"""
import argparse
import glob
import io
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import easelmark as em  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "../../../crates/media/tests/fixtures/outputs")


def soft_code_bits(rgb):
    """`detect`'s steps 1 and 2 for its best coarse scale: (sync z, soft code values)."""
    y_full = em.luma(rgb[..., :3])
    ys, _, _ = em._centre(y_full, em.SEARCH_MAX)
    rs = em.residual(ys)
    scales = em.scale_grid()
    zs = np.array([em._z(em.sync_corr(em.fold(rs, s))) for s in scales])
    k = int(np.argmax(zs))
    yd, _, _ = em._centre(y_full, em.DET_MAX)
    rd = em.residual(yd, max(1, int(round(em.PRE_R * scales[k]))))
    cands = []
    for s in (scales[k] / em.S_FINE, scales[k], scales[k] * em.S_FINE):
        c = em.sync_corr(em.fold(rd, s))
        cands.append((em._z(c), s, np.unravel_index(np.argmax(c), c.shape)))
    z, s, (dy, dx) = max(cands, key=lambda t: t[0])
    return z, em.soft_bits(em.fold(rd, s), dy, dx)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--format", choices=["webp", "jpeg"], default="webp")
    ap.add_argument("--quality", type=int, default=75)
    ap.add_argument("--folder", default=FIXTURES)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    paths = sorted(glob.glob(os.path.join(args.folder, "*.png")))
    if not paths:
        sys.exit(f"no PNG in {args.folder}")
    ranks_all = []
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        if rgb.shape[0] < 256 and 256 % rgb.shape[0] == 0 and rgb.shape[0] == rgb.shape[1]:
            f = 256 // rgb.shape[0]
            rgb = np.repeat(np.repeat(rgb, f, 0), f, 1)
        server, image = int(rng.integers(0, 1 << 16)), int(rng.integers(0, 1 << 32))
        marked = em.embed(rgb, server, image)
        buf = io.BytesIO()
        Image.fromarray(marked).save(buf, args.format.upper(), quality=args.quality)
        buf.seek(0)
        attacked = np.asarray(Image.open(buf).convert("RGB"))
        found = em.detect(attacked)
        read = found is not None and (found["server"], found["image"]) == (server, image)
        z, soft = soft_code_bits(attacked)
        hard = (soft < 0).astype(np.int64) ^ em.WHITEN
        wrong = hard != np.asarray(em.bch_encode(em.payload_bits(server, image)))
        order = np.argsort(np.abs(soft), kind="stable")
        ranks = np.nonzero(wrong[order])[0]
        ranks_all.append(ranks)
        print(f"{os.path.basename(path)}  read {str(read):5}  z {z:5.1f}  wrong bits {len(ranks):3}"
              f"  ranks {ranks.tolist()}")
    n = len(ranks_all)
    print(f"\n{n} pictures, {args.format} quality {args.quality}; could be recovered by:")
    for p in (0, 6, 8, 10, 12):
        ok = sum(int((r >= p).sum()) <= em.T_ERR for r in ranks_all)
        print(f"  chase p={p:2}: {ok}/{n}")
    for o in (1, 2, 3):
        ok = sum(int((r >= 127 - 64).sum()) <= o for r in ranks_all)
        print(f"  osd order {o}, any cost: {ok}/{n}")
    ok = sum(int((r + 1).sum()) <= em.RANK_SUM_MAX for r in ranks_all)
    print(f"  rank sum <= {em.RANK_SUM_MAX}, any search: {ok}/{n}")


if __name__ == "__main__":
    main()
