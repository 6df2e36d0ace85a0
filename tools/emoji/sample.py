#!/usr/bin/env python3
"""Sample the exported easel-emoji model with diffusers components (reference loop).

  python tools/emoji/sample.py --model models/easel-emoji --out /tmp/grid.png \
      "red apple" "taco" "grinning face" "pizza"
  python tools/emoji/sample.py --compare --out /tmp/compare.png   # sampler x steps grid

Loads every component from the exported folder the way a generic diffusers
loader would (UNet2DConditionModel / scheduler class from model_index.json /
BertModel / tokenizer.json) and runs classifier-free guidance:
  x_T ~ N(0, init_noise_sigma^2); for each t:
      out = unet(scale_model_input(x), t, [cond; uncond])
      out = uncond + g * (cond - uncond)
      x = scheduler.step(out, t, x)
Image = clamp(x, -1, 1) mapped to [0, 255].
"""
import argparse
import inspect
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ap = argparse.ArgumentParser()
ap.add_argument("prompts", nargs="*", default=["red apple", "taco", "grinning face", "pizza", "red heart", "dog face", "rocket", "sun"])
ap.add_argument("--model", default="models/easel-emoji")
ap.add_argument("--out", default="/tmp/easel-emoji-samples.png")
ap.add_argument("--steps", type=int, default=None)
ap.add_argument("--guidance", type=float, default=5.0)
ap.add_argument("--seeds", type=int, default=4, help="images per prompt (seeds 0..n-1)")
ap.add_argument("--scheduler", default=None, help="override: euler, euler-a, dpm, dpm-karras, ddim, heun, unipc")
ap.add_argument("--compare", action="store_true", help="rows = (scheduler, steps, guidance), cols = prompts")
ap.add_argument("--compare-samplers", default="euler,dpm,dpm-karras,ddim,unipc")
ap.add_argument("--compare-steps", default="8,15,25")
ap.add_argument("--compare-guidance", default=None, help="comma list; default: --guidance only")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscale of the grid")
args = ap.parse_args()
for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[k] = str(args.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import common  # noqa: E402

torch.set_num_threads(args.threads)
import diffusers  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402

M = args.model
index = json.load(open(os.path.join(M, "model_index.json")))
unet = UNet2DConditionModel.from_pretrained(os.path.join(M, "unet"), torch_dtype=torch.float32).eval()
sched_cls = getattr(diffusers, index["scheduler"][1])
base_sched = sched_cls.from_pretrained(os.path.join(M, "scheduler"))
enc = common.TextEncoder(os.path.join(M, "text_encoder"), os.path.join(M, "tokenizer", "tokenizer.json"))
# the shipped tokenizer.json must carry the convention itself (no code-side settings needed)
from tokenizers import Tokenizer  # noqa: E402

raw = Tokenizer.from_file(os.path.join(M, "tokenizer", "tokenizer.json"))
e = raw.encode("")
assert e.ids[:2] == [101, 102] and len(e.ids) == 32 and set(e.ids[2:]) == {0}, e.ids


def make_sched(name):
    cfg = dict(base_sched.config)
    if name is None:
        return sched_cls.from_config(cfg)
    table = {
        "euler": (diffusers.EulerDiscreteScheduler, {"timestep_spacing": "trailing"}),
        "euler-a": (diffusers.EulerAncestralDiscreteScheduler, {"timestep_spacing": "trailing"}),
        "heun": (diffusers.HeunDiscreteScheduler, {"timestep_spacing": "trailing"}),
        "ddim": (diffusers.DDIMScheduler, {"timestep_spacing": "trailing", "clip_sample": False, "set_alpha_to_one": True}),
        "dpm": (diffusers.DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2, "timestep_spacing": "trailing"}),
        "dpm-karras": (diffusers.DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
        "unipc": (diffusers.UniPCMultistepScheduler, {"timestep_spacing": "trailing"}),
    }
    cls, extra = table[name]
    cfg.update(extra)
    return cls.from_config(cfg)


@torch.no_grad()
def generate(prompts, seeds, sched, steps, g):
    cond = enc(prompts)
    uncond = enc([""]).expand(len(prompts), -1, -1)
    imgs = []
    for s in seeds:
        gen = torch.Generator().manual_seed(s)
        x = torch.randn(len(prompts), 3, common.RES, common.RES, generator=gen)
        sched.set_timesteps(steps)
        x = x * sched.init_noise_sigma
        for t in sched.timesteps:
            inp = sched.scale_model_input(torch.cat([x, x]), t)
            out = unet(inp, t, encoder_hidden_states=torch.cat([cond, uncond])).sample
            oc, ou = out.chunk(2)
            out = ou + g * (oc - ou)
            kw = {"generator": gen} if "generator" in inspect.signature(sched.step).parameters else {}
            x = sched.step(out, t, x, **kw).prev_sample
        imgs.append(((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
    return imgs  # list over seeds of [P, H, W, 3]


def grid(rows, row_labels, col_labels, scale):
    R, C = len(rows), len(rows[0])
    cell = common.RES * scale
    lab_w, lab_h = 130, 12
    im = Image.new("RGB", (lab_w + C * cell, lab_h + R * cell), "white")
    d = ImageDraw.Draw(im)
    for j, c in enumerate(col_labels):
        d.text((lab_w + j * cell + 1, 0), c[: cell // 6], fill="black")
    for i, row in enumerate(rows):
        d.text((2, lab_h + i * cell + cell // 2 - 5), row_labels[i][:21], fill="black")
        for j, a in enumerate(row):
            tile = Image.fromarray(a).resize((cell, cell), Image.NEAREST)
            im.paste(tile, (lab_w + j * cell, lab_h + i * cell))
    return im


steps_default = args.steps or 8  # README: DPM++ 2M, 8 steps, guidance 5
if args.compare:
    rows, labels = [], []
    prompts = args.prompts[:8]
    gs = [float(g) for g in args.compare_guidance.split(",")] if args.compare_guidance else [args.guidance]
    for name in args.compare_samplers.split(","):
        for steps in [int(v) for v in args.compare_steps.split(",")]:
            for g in gs:
                t0 = time.time()
                imgs = generate(prompts, [0], make_sched(name), steps, g)
                dt = (time.time() - t0) / len(prompts)
                rows.append(list(imgs[0]))
                labels.append(f"{name} {steps} g{g:g} {dt:.2f}s")
                print(labels[-1], flush=True)
    grid(rows, labels, prompts, args.scale).save(args.out)
else:
    t0 = time.time()
    seeds = list(range(args.seeds))
    imgs = generate(args.prompts, seeds, make_sched(args.scheduler), steps_default, args.guidance)
    dt = (time.time() - t0) / (len(seeds) * len(args.prompts))
    rows = [[imgs[s][p] for s in seeds] for p in range(len(args.prompts))]
    grid(rows, args.prompts, [f"seed {s}" for s in seeds], args.scale).save(args.out)
    print(f"{steps_default} steps, guidance {args.guidance}: {dt:.3f} s/image (batched, {args.threads} thread)")
print("wrote", args.out)
