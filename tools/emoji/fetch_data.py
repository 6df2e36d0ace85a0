#!/usr/bin/env python3
"""Fetch the Noto emoji training set and build the captioned image array.

Source: npm package ``emoji-datasource-google@16.0.0`` (images: Noto Emoji,
Apache-2.0; package metadata: MIT). The package is fetched with ``npm pack``
into a cache directory OUTSIDE the repository; nothing here is committed.

Output (in ``--cache``):
  * ``emoji-<res>.npz``   ``images``: uint8 [N, res, res, 3], RGB on white,
                          ``order``: int (emoji.json ``sort_order``)
  * ``emoji-<res>.json``  list of {"unified", "image", "captions": [...]},
                          same order as ``images``.

Image pipeline (exactly what the model is trained on, and what the pHash
index hashes): the 64x64 RGBA PNG is alpha-composited over opaque white
(255, 255, 255) at 64x64 with PIL ``Image.alpha_composite``, converted to RGB,
then resized to ``res`` x ``res`` with ``Image.BOX`` (area averaging; an exact
2x2 mean at res=32). Skin-tone variants are skipped: they are near-duplicates
of the base emoji and would only tilt the data towards people.

Captions: the Unicode name in lower case ("grinning face with smiling eyes"),
every short name with ``_``/``-`` turned into spaces ("grinning", "smile")
except the two-letter ``flag-xx`` codes, and "<name>, <category>" ("taco, food
& drink"). Training samples one caption per image per step.

Usage: python tools/emoji/fetch_data.py [--cache .cache/emoji] [--res 32]
"""
import argparse
import json
import os
import re
import subprocess
import tarfile

import numpy as np
from PIL import Image

PACKAGE = "emoji-datasource-google@16.0.0"
TARBALL = "emoji-datasource-google-16.0.0.tgz"


def fetch(cache: str) -> str:
    """npm-pack the package into `cache` (once) and unpack it; returns the package dir."""
    os.makedirs(cache, exist_ok=True)
    tgz = os.path.join(cache, TARBALL)
    if not os.path.exists(tgz):
        subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", cache, "--loglevel=error"], check=True)
    pkg = os.path.join(cache, "pkg")
    if not os.path.exists(os.path.join(pkg, "package", "emoji.json")):
        with tarfile.open(tgz) as tf:
            tf.extractall(pkg)
    return os.path.join(pkg, "package")


def norm(s: str) -> str:
    s = s.lower().replace("_", " ").replace("-", " ")
    return re.sub(r"\s+", " ", s).strip()


def captions_for(e: dict) -> list:
    name = norm(e["name"])
    caps = [name]
    for sn in e.get("short_names") or []:
        if re.fullmatch(r"flag-[a-z]{2}", sn):
            continue  # ISO codes ("flag-eg") say nothing the name does not
        c = norm(sn)
        if c and c not in caps:
            caps.append(c)
    caps.append(f"{name}, {e['category'].lower()}")
    return caps


def load_image(path: str, res: int) -> np.ndarray:
    rgba = Image.open(path).convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    if rgb.size != (res, res):
        rgb = rgb.resize((res, res), Image.BOX)
    return np.asarray(rgb, dtype=np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=".cache/emoji")
    ap.add_argument("--res", type=int, default=32)
    args = ap.parse_args()

    pkg = fetch(args.cache)
    entries = json.load(open(os.path.join(pkg, "emoji.json")))
    entries = [e for e in entries if e.get("has_img_google")]
    entries.sort(key=lambda e: e["sort_order"])  # deterministic order
    imgdir = os.path.join(pkg, "img", "google", "64")

    images, meta, order = [], [], []
    for e in entries:
        p = os.path.join(imgdir, e["image"])
        if not os.path.exists(p):
            continue
        images.append(load_image(p, args.res))
        order.append(e["sort_order"])
        meta.append({"unified": e["unified"], "image": e["image"], "captions": captions_for(e)})

    out = os.path.join(args.cache, f"emoji-{args.res}")
    np.savez_compressed(out + ".npz", images=np.stack(images), order=np.array(order))
    with open(out + ".json", "w") as f:
        json.dump(meta, f, indent=0, ensure_ascii=False)
    ncap = sum(len(m["captions"]) for m in meta)
    print(f"{len(images)} emoji, {ncap} captions -> {out}.npz / .json")


if __name__ == "__main__":
    main()
