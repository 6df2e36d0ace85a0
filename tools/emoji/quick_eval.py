#!/usr/bin/env python3
"""Retrieval accuracy of a UNet checkpoint on the 100 eval names, in PyTorch.

For choosing among training checkpoints and sampling settings while a run
goes on; the figures that count are `easel eval`'s (the engine, the shipped
folder). Same measurement: one image per name (seeds 1000 + position, or
--seeds more per name), scored by the shipped scorer against all 100 names;
retrieved at k when the correct name has fewer than k names above it.

  python tools/emoji/quick_eval.py --ckpt .cache/run2/ckpt.pt --guidance 5,7,9
  python tools/emoji/quick_eval.py --model models/easel-emoji --steps 6,8

--ckpt takes train.py's checkpoint and evaluates its EMA (what export.py
ships); --model takes an exported folder. The noise generator is PyTorch's,
not the engine's, so the pictures differ from `easel eval`'s; the accuracy
over 100 names agrees within a few points.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ap = argparse.ArgumentParser()
ap.add_argument("--ckpt", default=None, help="train.py checkpoint (its EMA is evaluated)")
ap.add_argument("--model", default="models/easel-emoji", help="exported folder: scheduler, text encoder, scorer (and UNet without --ckpt)")
ap.add_argument("--guidance", default="5", help="comma list")
ap.add_argument("--steps", default="8", help="comma list")
ap.add_argument("--seeds", type=int, default=1, help="images per name")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--json", default=None, help="append one JSON line per setting to this file")
args = ap.parse_args()
for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[k] = str(args.threads)

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import common  # noqa: E402
import scorer_common as sc  # noqa: E402

common.set_threads(args.threads)
import diffusers  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402

M = args.model
names = []
for line in open(os.path.join(M, "eval", "prompts.txt")):
    line = line.strip()
    if line and not line.startswith("#") and "=" not in line:
        names.append(line)
assert len(names) == 100, len(names)

if args.ckpt:
    ck = torch.load(args.ckpt, map_location="cpu")
    unet = common.make_unet()
    unet.load_state_dict({k: v.float() for k, v in ck["ema"].items()})
    label = f"{args.ckpt} step {ck['step']}"
else:
    unet = UNet2DConditionModel.from_pretrained(os.path.join(M, "unet"), torch_dtype=torch.float32)
    label = M
unet.eval()
index = json.load(open(os.path.join(M, "model_index.json")))
sched_cls = getattr(diffusers, index["scheduler"][1])
base = sched_cls.from_pretrained(os.path.join(M, "scheduler"))
enc = common.TextEncoder(os.path.join(M, "text_encoder"), os.path.join(M, "tokenizer", "tokenizer.json"))
scorer = sc.ImageEncoder()
scorer.load_state_dict({k: v.float() for k, v in load_file(os.path.join(M, "scorer", "model.safetensors")).items()})
scorer.eval()

with torch.no_grad():
    cond = enc(names)
    uncond = enc([""])
    text = sc.embed_texts(enc, names)


@torch.no_grad()
def generate(seed, steps, g):
    sched = sched_cls.from_config(base.config)
    sched.set_timesteps(steps)
    x = torch.cat([torch.randn(1, 3, common.RES, common.RES, generator=torch.Generator().manual_seed(seed + i)) for i in range(len(names))])
    x = x * sched.init_noise_sigma
    u = uncond.expand(len(names), -1, -1)
    for t in sched.timesteps:
        out = unet(sched.scale_model_input(torch.cat([x, x]), t), t, encoder_hidden_states=torch.cat([cond, u])).sample
        oc, ou = out.chunk(2)
        x = sched.step(ou + g * (oc - ou), t, x).prev_sample
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)


for steps in [int(s) for s in args.steps.split(",")]:
    for g in [float(v) for v in args.guidance.split(",")]:
        t0 = time.time()
        top1 = top5 = 0
        mean = 0.0
        n = 0
        for s in range(args.seeds):
            imgs = generate(1000 + 100 * s, steps, g)
            with torch.no_grad():
                scores = scorer(sc.to_input(imgs)) @ text.T  # [100 images, 100 names]
            own = scores.diagonal()
            rank = (scores > own[:, None]).sum(1)  # names strictly above the right one
            top1 += int((rank < 1).sum())
            top5 += int((rank < 5).sum())
            mean += float(own.sum())
            n += len(names)
        row = {"model": label, "steps": steps, "guidance": g, "n": n, "top1": top1 / n, "top5": top5 / n, "mean_score": mean / n, "seconds": time.time() - t0}
        print(f"{label}: {steps} steps, guidance {g:g}: top-1 {100 * top1 / n:.1f}%  top-5 {100 * top5 / n:.1f}%  mean score {mean / n:.3f}  ({n} images, {row['seconds']:.0f} s)", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")
