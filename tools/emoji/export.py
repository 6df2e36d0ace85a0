#!/usr/bin/env python3
"""Export a training checkpoint's EMA weights as models/easel-emoji/ (diffusers layout).

  python tools/emoji/export.py --ckpt .cache/run/ckpt.pt --out models/easel-emoji

Writes:
  model_index.json                        lists unet, text_encoder, tokenizer, scheduler (no vae)
  unet/config.json                        UNet2DConditionModel config (pixel space, 3 channels)
  unet/diffusion_pytorch_model.safetensors  EMA weights, f16
  scheduler/scheduler_config.json         the recommended sampler, training schedule + v-prediction
  text_encoder/config.json                all-MiniLM-L6-v2 BertConfig
  text_encoder/model.safetensors          MiniLM weights in f16, original tensor names (no `bert.` prefix)
  tokenizer/tokenizer.json                MiniLM tokenizer, truncation 32 and fixed padding to 32 built in
  tokenizer/tokenizer_config.json, vocab.txt, special_tokens_map.json   (model_max_length 32)
README.md and LICENSE are written by hand and left alone.
"""
import argparse
import json
import math
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

# Sampler shipped as the default (chosen from sample.py --compare; see README).
SCHEDULER_CLASS = "DPMSolverMultistepScheduler"
SCHEDULER_EXTRA = dict(
    algorithm_type="dpmsolver++",
    solver_order=2,
    lower_order_final=True,
    timestep_spacing="trailing",
)


def export_unet(ckpt_path: str, out: str, dtype):
    ck = torch.load(ckpt_path, map_location="cpu")
    assert ck["unet_config"] == common.UNET_CONFIG, "checkpoint was trained with another UNet config"
    unet = common.make_unet()
    unet.load_state_dict(ck["ema"])
    unet = unet.to(dtype)
    unet.save_pretrained(os.path.join(out, "unet"), safe_serialization=True)
    return ck["step"]


def export_scheduler(out: str):
    import diffusers

    cls = getattr(diffusers, SCHEDULER_CLASS)
    sched = cls(**common.TRAIN_SCHEDULE, **SCHEDULER_EXTRA)
    sched.save_pretrained(os.path.join(out, "scheduler"))
    # diffusers writes lambda_min_clipped = -Infinity, which is not JSON (serde_json
    # rejects it). Drop non-finite entries: a missing key means the same default.
    path = os.path.join(out, "scheduler", "scheduler_config.json")
    cfg = json.load(open(path))
    cfg = {k: v for k, v in cfg.items() if not (isinstance(v, float) and not math.isfinite(v))}
    json.dump(cfg, open(path, "w"), indent=2, sort_keys=True)
    json.loads(open(path).read(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def export_text(out: str):
    from safetensors.torch import load_file, save_file

    src = common.minilm_dir()
    te = os.path.join(out, "text_encoder")
    os.makedirs(te, exist_ok=True)
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg["torch_dtype"] = "float16"
    json.dump(cfg, open(os.path.join(te, "config.json"), "w"), indent=2)
    sd = load_file(os.path.join(src, "model.safetensors"))
    sd = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    save_file(sd, os.path.join(te, "model.safetensors"), metadata={"format": "pt"})

    tk = os.path.join(out, "tokenizer")
    os.makedirs(tk, exist_ok=True)
    tj = json.load(open(os.path.join(src, "tokenizer.json")))
    tj["truncation"] = {"direction": "Right", "max_length": common.MAX_LEN, "strategy": "LongestFirst", "stride": 0}
    tj["padding"] = {
        "strategy": {"Fixed": common.MAX_LEN},
        "direction": "Right",
        "pad_to_multiple_of": None,
        "pad_id": 0,
        "pad_type_id": 0,
        "pad_token": "[PAD]",
    }
    json.dump(tj, open(os.path.join(tk, "tokenizer.json"), "w"), ensure_ascii=False)
    tc = json.load(open(os.path.join(src, "tokenizer_config.json")))
    tc["model_max_length"] = common.MAX_LEN
    tc.pop("name_or_path", None)
    json.dump(tc, open(os.path.join(tk, "tokenizer_config.json"), "w"), indent=2)
    for f in ("vocab.txt", "special_tokens_map.json"):
        shutil.copy(os.path.join(src, f), os.path.join(tk, f))


def export_index(out: str):
    import diffusers

    idx = {
        "_class_name": "EaselPixelPipeline",
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", SCHEDULER_CLASS],
        "text_encoder": ["transformers", "BertModel"],
        "tokenizer": ["transformers", "BertTokenizerFast"],
        "unet": ["diffusers", "UNet2DConditionModel"],
    }
    json.dump(idx, open(os.path.join(out, "model_index.json"), "w"), indent=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=".cache/run/ckpt.pt")
    ap.add_argument("--out", default="models/easel-emoji")
    ap.add_argument("--f32", action="store_true", help="store the UNet in f32 (default f16)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    step = export_unet(args.ckpt, args.out, torch.float32 if args.f32 else torch.float16)
    export_scheduler(args.out)
    export_text(args.out)
    export_index(args.out)
    print(f"exported EMA of step {step} to {args.out}")


if __name__ == "__main__":
    main()
