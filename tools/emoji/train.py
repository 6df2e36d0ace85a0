#!/usr/bin/env python3
"""Train the easel-emoji pixel-space text-to-image UNet (CPU or GPU).

  python tools/emoji/fetch_data.py --cache .cache/emoji
  python tools/emoji/train.py --data .cache/emoji/emoji-32 --out .cache/run
  python tools/emoji/train.py ... --resume                      # continue a run
  python tools/emoji/train.py ... --init-from models/easel-emoji  # continue from shipped weights

Recipe: DDPM with linear betas (1e-4..0.02, 1000 steps), v-prediction,
min-SNR-5 loss weighting (Hang et al. 2023, arXiv:2303.09556: same optimum,
faster convergence), AdamW, EMA of the weights (the EMA is what is exported),
classifier-free guidance by replacing the caption with "" with p=0.1. The text
encoder is frozen, so every caption's embedding is computed once and cached.

Reproducibility: everything random is derived from --seed: the data order of
epoch e is a permutation drawn from a generator seeded (seed, e); the caption
choice, caption drop, timesteps and noise of step s come from a generator
seeded (seed, s). A resumed run therefore continues exactly as an
uninterrupted one would (up to floating-point nondeterminism of the backend).
"""
import argparse
import json
import os
import signal
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--data", default=".cache/emoji/emoji-32", help="prefix of fetch_data.py's .npz/.json")
p.add_argument("--out", default=".cache/run", help="checkpoints, caches, loss log (outside the repo)")
p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
p.add_argument("--init-from", default=None, help="diffusers folder (models/easel-emoji) to start the weights from")
p.add_argument("--batch", type=int, default=32)
p.add_argument("--lr", type=float, default=5e-4)
p.add_argument("--warmup", type=int, default=300)
p.add_argument("--lr-decay-from", type=int, default=None, help="step where a linear lr decay starts (default: constant lr)")
p.add_argument("--lr-decay-to", type=int, default=None, help="step where it reaches --lr-min, which holds afterwards")
p.add_argument("--lr-min", type=float, default=5e-5)
p.add_argument("--ema", type=float, default=0.999)
p.add_argument("--cfg-drop", type=float, default=0.1)
p.add_argument("--min-snr", type=float, default=5.0)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--ckpt-minutes", type=float, default=5.0)
p.add_argument("--max-minutes", type=float, default=1e9, help="stop (with a checkpoint) after this long")
p.add_argument("--max-steps", type=int, default=10**9)
p.add_argument("--device", default="cuda" if os.environ.get("CUDA_VISIBLE_DEVICES") else "cpu")
args = p.parse_args()

for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[k] = str(args.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.set_threads(args.threads)
from diffusers import DDPMScheduler, UNet2DConditionModel  # noqa: E402

os.makedirs(args.out, exist_ok=True)
dev = torch.device(args.device)


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# ---------------------------------------------------------------- data
arr = np.load(args.data + ".npz")["images"]  # [N,H,W,3] uint8
meta = json.load(open(args.data + ".json"))
images = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # [-1, 1]
N = images.shape[0]
captions = [""]  # index 0 is the unconditional (empty) caption
cap_index = []  # per image: list of indices into `captions`
for m in meta:
    idx = []
    for c in m["captions"]:
        idx.append(len(captions))
        captions.append(c)
    cap_index.append(idx)
log(f"{N} images, {len(captions) - 1} captions")

# ---------------------------------------------------------------- text embeddings (frozen encoder: once)
emb_path = os.path.join(args.out, "caption_emb.pt")
if os.path.exists(emb_path) and torch.load(emb_path)["captions"] == captions:
    emb = torch.load(emb_path)["emb"]
else:
    t0 = time.time()
    enc = common.default_text_encoder()
    emb = enc(captions).half()  # [C, 32, 384]; stored f16 to halve memory, used as f32
    torch.save({"captions": captions, "emb": emb}, emb_path)
    log(f"encoded {len(captions)} captions in {time.time() - t0:.0f}s")
emb = emb.float()
ncap = torch.tensor([len(c) for c in cap_index])
cap_start = torch.tensor([c[0] for c in cap_index])

# ---------------------------------------------------------------- model
sched = DDPMScheduler(**common.TRAIN_SCHEDULE)
alphas_cumprod = sched.alphas_cumprod.to(dev)
unet = common.make_unet()
if args.init_from:
    src = UNet2DConditionModel.from_pretrained(os.path.join(args.init_from, "unet"), torch_dtype=torch.float32)
    unet.load_state_dict(src.state_dict())
    log(f"initialised weights from {args.init_from}")
unet.to(dev).train()
ema = {k: v.detach().clone().float() for k, v in unet.state_dict().items()}
opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=0.01)
nparams = sum(p.numel() for p in unet.parameters())
log(f"UNet {nparams / 1e6:.2f} M params")

step = 0
ckpt_path = os.path.join(args.out, "ckpt.pt")
if args.resume and os.path.exists(ckpt_path):
    ck = torch.load(ckpt_path, map_location="cpu")
    unet.load_state_dict(ck["model"])
    ema = {k: v.to(dev) for k, v in ck["ema"].items()}
    opt.load_state_dict(ck["opt"])
    step = ck["step"]
    log(f"resumed from step {step}")
ema = {k: v.to(dev) for k, v in ema.items()}


def save_ckpt():
    tmp = ckpt_path + ".tmp"
    torch.save(
        {
            "model": unet.state_dict(),
            "ema": ema,
            "opt": opt.state_dict(),
            "step": step,
            "args": vars(args),
            "unet_config": common.UNET_CONFIG,
            "schedule": common.TRAIN_SCHEDULE,
        },
        tmp,
    )
    os.replace(tmp, ckpt_path)
    log(f"checkpoint at step {step}")


stop = False


def on_signal(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)


def batch_indices(step):
    """Deterministic: epoch permutation from (seed, epoch), then slice."""
    per_epoch = N // args.batch  # drop the ragged tail; a new permutation each epoch covers it
    epoch, k = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(args.seed * 1_000_003 + epoch)
    perm = torch.randperm(N, generator=g)
    return perm[k * args.batch : (k + 1) * args.batch], epoch


def lr_at(step):
    """A pure function of the step, so a resumed run and a from-scratch run agree."""
    lr = args.lr * min(1.0, (step + 1) / args.warmup)
    if args.lr_decay_from is not None and step >= args.lr_decay_from:
        f = min(1.0, (step - args.lr_decay_from) / max(1, args.lr_decay_to - args.lr_decay_from))
        lr = args.lr + f * (args.lr_min - args.lr)
    return lr


loss_log = open(os.path.join(args.out, "loss.log"), "a")
t_start = time.time()
t_ckpt = time.time()
run_loss, run_n = 0.0, 0
while not stop and step < args.max_steps and (time.time() - t_start) < args.max_minutes * 60:
    idx, epoch = batch_indices(step)
    g = torch.Generator().manual_seed(args.seed * 1_000_003 + 7_919 * (step + 1))
    B = idx.shape[0]
    choice = cap_start[idx] + (torch.rand(B, generator=g) * ncap[idx]).long().clamp(max=ncap[idx] - 1)
    drop = torch.rand(B, generator=g) < args.cfg_drop
    choice = torch.where(drop, torch.zeros_like(choice), choice)
    t = torch.randint(0, sched.config.num_train_timesteps, (B,), generator=g)
    noise = torch.randn(B, 3, common.RES, common.RES, generator=g)

    x0 = images[idx].to(dev)
    c = emb[choice].to(dev)
    t, noise = t.to(dev), noise.to(dev)
    ab = alphas_cumprod[t].view(B, 1, 1, 1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    target = ab.sqrt() * noise - (1 - ab).sqrt() * x0  # v
    pred = unet(xt, t, encoder_hidden_states=c).sample
    snr = ab / (1 - ab)
    w = torch.clamp(snr, max=args.min_snr) / (snr + 1)  # min-SNR-gamma for v-prediction
    loss = (w * (pred - target) ** 2).mean(dim=(1, 2, 3)).mean()

    lr = lr_at(step)
    for gr in opt.param_groups:
        gr["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gn = torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    opt.step()
    step += 1

    d = min(args.ema, (1 + step) / (10 + step))
    with torch.no_grad():
        for k, v in unet.state_dict().items():
            if v.is_floating_point():
                ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                ema[k].copy_(v)

    run_loss += loss.item()
    run_n += 1
    if step % 20 == 0:
        el = time.time() - t_start
        line = f"step {step} epoch {epoch} loss {run_loss / run_n:.5f} lr {lr:.2e} gnorm {gn:.3f} elapsed {el:.0f}s"
        loss_log.write(line + "\n")
        loss_log.flush()
        log(line)
        run_loss, run_n = 0.0, 0
    if time.time() - t_ckpt > args.ckpt_minutes * 60:
        save_ckpt()
        t_ckpt = time.time()

save_ckpt()
log("stopped")
