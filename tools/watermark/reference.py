"""Cross-check of Easel's invisible watermark against the Python
`invisible-watermark` package (its `dwtDctSvd` method).

Writes crates/media/tests/fixtures/watermark/:
  source_<name>.png   two 256x256 synthetic pictures (an emoji-like one
                      upscaled 8x from 32x32 on white, a smooth "natural" one)
  ours_<name>.png     the sources marked by Easel's Rust code (the script
                      runs `cargo test` with EASEL_WATERMARK_FIXTURES=write)
  ref_<name>.png      the sources marked by the reference encoder with the
                      same 64 bits, for Easel's decoder
  results.json        the payload, the 64 bits (with a CRC-16 computed here,
                      independently of the Rust code) and what the reference
                      decoder read from Easel's marks, as is and after JPEG 85.

Run from the repository root, in a virtual environment with the reference:
  python -m venv .venv-wm && .venv-wm/bin/pip install invisible-watermark==0.2.0 opencv-python-headless numpy
  .venv-wm/bin/python tools/watermark/reference.py
then `cargo test -p easel-media --test media watermark` checks the results.
It also checks that Easel's integer U formula matches OpenCV on every colour.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from imwatermark import WatermarkDecoder, WatermarkEncoder

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/media/tests/fixtures/watermark"
SERVER, IMAGE = 0xE5E1, 0x1234ABCD  # must match the Rust fixture test


def crc16_ccitt_false(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def payload_bits(server: int, image: int) -> list[int]:
    data = server.to_bytes(2, "big") + image.to_bytes(4, "big")
    word = data + crc16_ccitt_false(data).to_bytes(2, "big")
    return [int(b) for b in np.unpackbits(np.frombuffer(word, dtype=np.uint8))]


def bits_hex(bits) -> str:
    return bytes(np.packbits(np.array(bits, dtype=np.uint8))).hex()


def emoji_source() -> np.ndarray:
    """A 32x32 face on white, antialiased, upscaled 8x by pixel repetition (RGB)."""
    y, x = np.mgrid[0:32, 0:32] + 0.5
    cx, cy, r = 16.3, 15.8, 11.5
    d = np.hypot(x - cx, y - cy)
    cover = np.clip(r - d + 0.5, 0, 1)[..., None]
    shade = 1 - 0.25 * np.clip((y - cy) / r, 0, 1)[..., None]
    face = np.array([250, 200, 60.0]) * shade
    eyes = np.hypot(np.abs(x - cx) - r * 0.35, y - cy + r * 0.25) < r * 0.15
    mouth = (np.abs(d - r * 0.55) < 0.9) & (y - cy > r * 0.2)
    face[eyes | mouth] = [40, 30, 70]
    small = 255 * (1 - cover) + face * cover
    big = np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)
    return np.clip(np.round(big), 0, 255).astype(np.uint8)


def natural_source() -> np.ndarray:
    """A smooth 256x256 landscape-like picture: sky gradient, hills, a sun (RGB)."""
    y, x = np.mgrid[0:256, 0:256] / 256.0
    img = np.zeros((256, 256, 3))
    img[...] = np.stack([90 + 80 * y, 140 + 60 * y, 230 - 40 * y], -1)
    sun = np.exp(-((x - 0.72) ** 2 + (y - 0.25) ** 2) / 0.004)[..., None]
    img = img * (1 - sun) + np.array([255, 230, 150]) * sun
    for h, col, ph in [(0.55, [70, 130, 60], 0.3), (0.7, [50, 105, 45], 2.1), (0.85, [110, 90, 50], 4.0)]:
        ridge = h + 0.06 * np.sin(2 * np.pi * 1.3 * x + ph) + 0.03 * np.sin(2 * np.pi * 3.7 * x + 2 * ph)
        a = np.clip((y - ridge) * 40, 0, 1)[..., None]
        tone = np.array(col) * (1.0 + 0.25 * np.sin(9 * x + 5 * y + ph))[..., None]
        img = img * (1 - a) + tone * a
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def check_u_formula() -> None:
    """Easel's `u_of` (integer, shift 14) against cv2 on all 2^24 colours."""
    v = np.arange(256, dtype=np.int64)
    b, g, r = (a.reshape(4096, 4096) for a in np.meshgrid(v, v, v, indexing="ij"))
    bgr = np.stack([b, g, r], -1).astype(np.uint8)
    u_cv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)[..., 1].astype(np.int64)
    y = (r * 4899 + g * 9617 + b * 1868 + 8192) >> 14
    u = ((b - y) * 8061 + (128 << 14) + 8192) >> 14
    mismatches = int((u != u_cv).sum())
    if mismatches:
        sys.exit(f"Easel's U formula differs from OpenCV on {mismatches} colours")


def main() -> None:
    check_u_formula()
    OUT.mkdir(parents=True, exist_ok=True)
    sources = {"emoji": emoji_source(), "natural": natural_source()}
    for name, rgb in sources.items():
        cv2.imwrite(str(OUT / f"source_{name}.png"), rgb[..., ::-1])

    env = dict(os.environ, EASEL_WATERMARK_FIXTURES="write")
    subprocess.run(
        ["cargo", "test", "-p", "easel-media", "--test", "media", "watermark::fixtures"],
        cwd=ROOT, env=env, check=True,
    )

    bits = payload_bits(SERVER, IMAGE)
    decoder = WatermarkDecoder("bits", 64)
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", bits)
    results = {
        "payload_id": f"{SERVER:04x}{IMAGE:08x}",
        "embedded_bits": bits_hex(bits),
        "reference": "invisible-watermark 0.2.0, WatermarkDecoder('bits', 64).decode(bgr, 'dwtDctSvd')",
        "ours_read_by_reference": {},
        "ours_after_jpeg85_read_by_reference": {},
        "reference_marked": {},
    }
    for name in sources:
        ours = cv2.imread(str(OUT / f"ours_{name}.png"))
        read = decoder.decode(ours, "dwtDctSvd")
        results["ours_read_by_reference"][name] = bits_hex(read)
        ok, jpg = cv2.imencode(".jpg", ours, [cv2.IMWRITE_JPEG_QUALITY, 85])
        read_jpeg = decoder.decode(cv2.imdecode(jpg, cv2.IMREAD_COLOR), "dwtDctSvd")
        results["ours_after_jpeg85_read_by_reference"][name] = bits_hex(read_jpeg)

        src = cv2.imread(str(OUT / f"source_{name}.png"))
        marked = encoder.encode(src, "dwtDctSvd")
        cv2.imwrite(str(OUT / f"ref_{name}.png"), marked)
        own = decoder.decode(marked, "dwtDctSvd")
        results["reference_marked"][name] = {
            "reference_reads_its_own_mark": bits_hex(own),
            "psnr_db": round(float(cv2.PSNR(src, marked)), 2),
        }
        results["ours_psnr_db"] = results.get("ours_psnr_db", {})
        results["ours_psnr_db"][name] = round(float(cv2.PSNR(src, ours)), 2)

    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
