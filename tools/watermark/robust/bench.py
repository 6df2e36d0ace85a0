#!/usr/bin/env python3
"""Bench for easelmark: robustness, false positives, invisibility and speed.

    python bench.py [--emoji 40 --emoji-dir DIR --nat256 10 --nat512 10 --stride K]
                    [--attacks a,b,...] [--fp 0] [--json OUT]

Marked sets:
  emoji  = the real delivered 32x32 model outputs (--emoji-dir, default /tmp/wm/outputs/*.png,
           sorted, first --emoji of them), enlarged by nearest neighbour x8 to 256x256 exactly as
           the server does before it watermarks;
  nat256 / nat512 = the public-domain / CC0 sample photos shipped inside the scikit-image wheel
           (NATURAL below; found via importlib without importing skimage), centre square crop,
           Lanczos-resized to 256x256 / 512x512 (grey ones repeated to RGB).
Synthetic pictures (synth.py) are used only for the false-positive test.  Each image gets random ids.
Per attack: detected with the right id / total, wrong ids.  PSNR and SSIM (Gaussian
11x11, sigma 1.5, on luminance Y = 0.299R + 0.587G + 0.114B, C1 = (0.01*255)^2,
C2 = (0.03*255)^2, mean over the valid windows) of the marked image vs the source.
--fp N: N unmarked synthetic images (emoji / nat256 / nat512 / uniform noise / flat colours,
seeds 50000+i) plus the unmarked bench pictures, each as PNG and after JPEG 80; any detection is a
false positive.
"""
import argparse
import glob
import io
import json
import os
import sys
import time

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import easelmark as em  # noqa: E402
import synth  # noqa: E402


# ----------------------------------------------------------------------------- metrics
def ssim(a, b):
    """SSIM of the lumas, as the embedder's calibration measures it (easelmark.ssim)."""
    return em.ssim(em.luma(a), em.luma(b))


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


# ----------------------------------------------------------------------------- attacks
def _codec(a, fmt, q):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, fmt, quality=q)
    return np.asarray(Image.open(buf).convert("RGB"))


def _resize(a, f, m):
    im = Image.fromarray(a)
    w, h = im.size
    return np.asarray(im.resize((max(1, round(w * f)), max(1, round(h * f))), m))


def _crop(a, fx, fy, rng):
    h, w = a.shape[:2]
    cw, ch = round(w * fx), round(h * fy)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return a[y:y + ch, x:x + cw].copy()


def _enh(a, cls, f):
    return np.asarray(cls(Image.fromarray(a)).enhance(f))


BL, BC = Image.Resampling.BILINEAR, Image.Resampling.BICUBIC
ATTACKS = {
    "none": lambda a, r: a,
    "jpeg70": lambda a, r: _codec(a, "JPEG", 70),
    "jpeg80": lambda a, r: _codec(a, "JPEG", 80),
    "jpeg90": lambda a, r: _codec(a, "JPEG", 90),
    "jpeg95": lambda a, r: _codec(a, "JPEG", 95),
    "webp75": lambda a, r: _codec(a, "WEBP", 75),
    "resize0.5-bilinear": lambda a, r: _resize(a, 0.5, BL),
    "resize0.5-bicubic": lambda a, r: _resize(a, 0.5, BC),
    "resize0.75-bilinear": lambda a, r: _resize(a, 0.75, BL),
    "resize0.75-bicubic": lambda a, r: _resize(a, 0.75, BC),
    "resize1.5-bilinear": lambda a, r: _resize(a, 1.5, BL),
    "resize1.5-bicubic": lambda a, r: _resize(a, 1.5, BC),
    "resize2-bilinear": lambda a, r: _resize(a, 2.0, BL),
    "resize2-bicubic": lambda a, r: _resize(a, 2.0, BC),
    "crop87%-random": lambda a, r: _crop(a, 0.87, 0.87, r),
    "crop75%w-fullh": lambda a, r: _crop(a, 0.75, 1.0, r),
    "brightness+15%": lambda a, r: _enh(a, ImageEnhance.Brightness, 1.15),
    "brightness-15%": lambda a, r: _enh(a, ImageEnhance.Brightness, 0.85),
    "contrast+15%": lambda a, r: _enh(a, ImageEnhance.Contrast, 1.15),
    "contrast-15%": lambda a, r: _enh(a, ImageEnhance.Contrast, 0.85),
    "resize0.75+jpeg85": lambda a, r: _codec(_resize(a, 0.75, BL), "JPEG", 85),
}


# scikit-image 0.25.2 wheel, skimage/data/: only files that are public domain or CC0 (see SPEC.md)
NATURAL = ["astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "retina.jpg",
           "rocket.jpg", "camera.png", "clock_motion.png", "brick.png", "grass.png"]


def skimage_data_dir():
    import importlib.util
    spec = importlib.util.find_spec("skimage")
    if spec is None:
        raise SystemExit("pip install --no-deps -r requirements-bench.txt (its sample photos are the natural sets)")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def natural_image(name, side):
    im = Image.open(os.path.join(skimage_data_dir(), name)).convert("RGB")
    w, h = im.size
    c = min(w, h)
    im = im.crop(((w - c) // 2, (h - c) // 2, (w - c) // 2 + c, (h - c) // 2 + c))
    return np.asarray(im.resize((side, side), Image.Resampling.LANCZOS))


def load_set(args):
    out = []
    for f in sorted(glob.glob(os.path.join(args.emoji_dir, "*.png")))[: args.emoji]:
        a = np.asarray(Image.open(f).convert("RGB"))
        out.append(("emoji", os.path.basename(f), np.repeat(np.repeat(a, 8, 0), 8, 1)))
    for kind, side, n in (("nat256", 256, args.nat256), ("nat512", 512, args.nat512)):
        out += [(kind, name, natural_image(name, side)) for name in NATURAL[:n]]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--emoji", type=int, default=40)
    ap.add_argument("--emoji-dir", default="/tmp/wm/outputs")
    ap.add_argument("--nat256", type=int, default=len(NATURAL))
    ap.add_argument("--nat512", type=int, default=len(NATURAL))
    ap.add_argument("--stride", type=int, default=1, help="use every k-th image of each set (quick runs)")
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--fp", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    attacks = args.attacks.split(",") if args.attacks else []
    res = {"per_attack": {}, "quality": {}, "timing": {}, "fp": None}
    table = {(a, k): [0, 0, 0] for a in attacks for k in ("all",)}
    kinds_table = {}
    q = {}
    t_emb, t_det = {}, {}
    images = load_set(args)
    if args.stride > 1:
        images = [im for i, im in enumerate(images) if i % args.stride == 0]
    for kind, name, src in images:
        server, image = int(rng.integers(0, 1 << 16)), int(rng.integers(0, 1 << 32))
        t0 = time.perf_counter()
        marked = em.embed(src, server, image)
        t_emb.setdefault(src.shape[0], []).append(time.perf_counter() - t0)
        q.setdefault(kind, []).append((psnr(src, marked), ssim(src, marked)))
        for a in attacks:
            x = ATTACKS[a](marked, rng)
            t0 = time.perf_counter()
            r = em.detect(x)
            t_det.setdefault(src.shape[0], []).append(time.perf_counter() - t0)
            ok = r is not None and r["server"] == server and r["image"] == image
            wrong = r is not None and not ok
            for key in ((a, "all"), (a, kind)):
                t = kinds_table.setdefault(key, [0, 0, 0])
                t[0] += ok
                t[1] += wrong
                t[2] += 1
            if not ok:
                print(f"  miss {a:22s} {name}" + (f" WRONG {r}" if wrong else ""), file=sys.stderr)
    kinds = sorted({k for k, _, _ in images})
    lines = ["| attack | all | " + " | ".join(kinds) + " | wrong ids |", "|---|---|" + "---|" * len(kinds) + "---|"]
    for a in attacks:
        t = kinds_table[(a, "all")]
        cells = [f"{kinds_table[(a, k)][0]}/{kinds_table[(a, k)][2]}" for k in kinds]
        lines.append(f"| {a} | {t[0]}/{t[2]} ({100.0 * t[0] / max(1, t[2]):.0f}%) | " + " | ".join(cells) + f" | {t[1]} |")
        res["per_attack"][a] = {"ok": t[0], "wrong": t[1], "total": t[2],
                                **{k: kinds_table[(a, k)][:3] for k in kinds}}
    lines.append("")
    lines.append("| set | n | PSNR min | PSNR mean | SSIM min | SSIM mean |")
    lines.append("|---|---|---|---|---|---|")
    for k in kinds:
        p = np.array(q[k])
        lines.append(f"| {k} | {len(p)} | {p[:, 0].min():.2f} | {p[:, 0].mean():.2f} | {p[:, 1].min():.4f} | {p[:, 1].mean():.4f} |")
        res["quality"][k] = dict(psnr_min=p[:, 0].min(), psnr_mean=p[:, 0].mean(), ssim_min=p[:, 1].min(), ssim_mean=p[:, 1].mean())
    lines.append("")
    lines.append("| source side | embed ms (mean) | detect ms (mean, over all attacked versions) |")
    lines.append("|---|---|---|")
    for side in sorted(t_emb):
        lines.append(f"| {side} | {1000 * np.mean(t_emb[side]):.0f} | {1000 * np.mean(t_det.get(side, [0])):.0f} |")
        res["timing"][side] = dict(embed_ms=1000 * np.mean(t_emb[side]), detect_ms=1000 * np.mean(t_det.get(side, [0])))
    if args.fp:
        fp, n = 0, 0
        kinds_fp = ["emoji", "nat256", "nat512", "noise", "flat"]
        for i in range(args.fp):
            kind = kinds_fp[i % len(kinds_fp)]
            img = synth.make(kind, 50000 + i)
            for x in (img, _codec(img, "JPEG", 80)):
                n += 1
                r = em.detect(x)
                if r is not None:
                    fp += 1
                    print(f"  FALSE POSITIVE {kind} seed {50000 + i}: {r}", file=sys.stderr)
        # the unmarked real pictures of the marked sets, as PNG and after JPEG 80
        for kind, name, src in images:
            for x in (src, _codec(src, "JPEG", 80)):
                n += 1
                r = em.detect(x)
                if r is not None:
                    fp += 1
                    print(f"  FALSE POSITIVE {kind} {name} (unmarked): {r}", file=sys.stderr)
        lines.append("")
        lines.append(f"False positives: {fp} / {n} unmarked images ({args.fp} synthetic sources: emoji, nat256, "
                     f"nat512, uniform noise, flat colour in turn, plus the {len(images)} unmarked bench pictures; "
                     f"each as PNG and after JPEG 80)")
        res["fp"] = dict(fp=fp, n=n)
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=float)


if __name__ == "__main__":
    main()
