#!/usr/bin/env python3
"""Train the easel-emoji quality scorer: a small image encoder aligned
contrastively with the frozen MiniLM sentence embeddings of the captions.

  python tools/emoji/fetch_data.py --cache .cache/emoji
  python tools/emoji/train_scorer.py --data .cache/emoji/emoji-32 --out .cache/scorer
  python tools/emoji/train_scorer.py ... --resume        # continue an interrupted run
  python tools/emoji/export_scorer.py --ckpt .cache/scorer/ckpt.pt --out models/easel-emoji/scorer

Data: the real training images only (fetch_data.py's 32x32 RGB on white),
never generated ones, with all their captions (name, short names, "name,
category"). The architecture and the text pooling are in scorer_common.py.

Objective: CLIP's symmetric InfoNCE (Radford et al. 2021, arXiv:2103.00020,
Fig. 3) with a learnable temperature: logits = exp(t) * img @ txt^T, the mean
of the image->text and text->image cross-entropies. Each step draws a batch of
distinct images and one random caption per image. Where two images of a batch
share a caption string, the text->image targets are split evenly between them.

Augmentation (the scorer must judge generated images, which are blurrier and
less centred than the originals): per image, a random rescale to
--min-size..32 px pasted on white at a random offset; with p=--lowres-p a
round trip through a random --lowres-min..31 px resolution (bilinear); then
with p=0.5 a blur (a random mix of the image and its 3x3 Gaussian blur), and
with p=0.3 Gaussian noise of a random std up to 0.08. No flips or colour changes: "left arrow" and "green apple"
depend on them.

Reproducibility: the initial weights come from torch.manual_seed(--seed); the
data order of epoch e is a permutation from a generator seeded (seed, e); the
captions and augmentation of step s come from a generator seeded (seed, s). A
resumed run therefore continues as an uninterrupted one would.
"""
import argparse
import json
import math
import os
import signal
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--data", default=".cache/emoji/emoji-32", help="prefix of fetch_data.py's .npz/.json")
p.add_argument("--model", default="models/easel-emoji", help="model folder whose text_encoder/ and tokenizer/ the scorer uses")
p.add_argument("--out", default=".cache/scorer", help="checkpoint, caches and log (outside the repo)")
p.add_argument("--resume", action="store_true")
p.add_argument("--batch", type=int, default=256)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--warmup", type=int, default=100)
p.add_argument("--weight-decay", type=float, default=0.05)
p.add_argument("--max-steps", type=int, default=1500, help="also the end of the cosine lr decay")
p.add_argument("--max-minutes", type=float, default=1e9, help="stop (with a checkpoint) after this long")
p.add_argument("--ckpt-minutes", type=float, default=3.0)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--min-size", type=int, default=26, help="smallest random rescale of an image, in pixels")
p.add_argument("--lowres-p", type=float, default=0.0, help="probability of a low-resolution round trip")
p.add_argument("--lowres-min", type=int, default=8, help="smallest side of that round trip")
args = p.parse_args()

for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[k] = str(args.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import scorer_common as sc  # noqa: E402

common.set_threads(args.threads)
os.makedirs(args.out, exist_ok=True)


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# ---------------------------------------------------------------- data
arr = np.load(args.data + ".npz")["images"]
meta = json.load(open(args.data + ".json"))
images = sc.to_input(torch.from_numpy(arr))  # [N, 3, 32, 32] in [-1, 1]
N = images.shape[0]
captions, cap_index = [], []
for m in meta:
    idx = []
    for c in m["captions"]:
        idx.append(len(captions))
        captions.append(c)
    cap_index.append(idx)

emb_path = os.path.join(args.out, "text_emb.pt")
if os.path.exists(emb_path):
    cached = torch.load(emb_path)
    assert cached["captions"] == captions, "caption cache does not match the data; delete it"
    text_emb = cached["emb"]
else:
    log(f"embedding {len(captions)} captions with {args.model}/text_encoder")
    te = common.TextEncoder(os.path.join(args.model, "text_encoder"), os.path.join(args.model, "tokenizer", "tokenizer.json"))
    text_emb = sc.embed_texts(te, captions)
    torch.save({"captions": captions, "emb": text_emb}, emb_path)
log(f"{N} images, {len(captions)} captions")

# ---------------------------------------------------------------- model
torch.manual_seed(args.seed)
enc = sc.ImageEncoder()
logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
params = list(enc.parameters()) + [logit_scale]
decay = [p_ for p_ in enc.parameters() if p_.ndim > 1]
no_decay = [p_ for p_ in enc.parameters() if p_.ndim <= 1] + [logit_scale]
opt = torch.optim.AdamW(
    [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr
)
log(f"image encoder: {sum(p_.numel() for p_ in enc.parameters()):,} parameters")

step = 0
ckpt_path = os.path.join(args.out, "ckpt.pt")
if args.resume and os.path.exists(ckpt_path):
    ck = torch.load(ckpt_path, map_location="cpu")
    enc.load_state_dict(ck["encoder"])
    with torch.no_grad():
        logit_scale.copy_(ck["logit_scale"])
    opt.load_state_dict(ck["opt"])
    step = ck["step"]
    log(f"resumed from step {step}")


def save_ckpt():
    tmp = ckpt_path + ".tmp"
    torch.save(
        {"encoder": enc.state_dict(), "logit_scale": logit_scale.detach(), "opt": opt.state_dict(), "step": step,
         "args": vars(args)},
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


def batch_indices(s):
    per_epoch = N // args.batch
    epoch, k = divmod(s, per_epoch)
    g = torch.Generator().manual_seed(args.seed * 1_000_003 + epoch)
    perm = torch.randperm(N, generator=g)
    return perm[k * args.batch : (k + 1) * args.batch]


BLUR = torch.tensor([1.0, 2.0, 1.0])
BLUR = (BLUR[:, None] * BLUR[None, :] / 16).expand(3, 1, 3, 3).contiguous()


def augment(x, g):
    """x: [B, 3, 32, 32] in [-1, 1]; white is 1.0."""
    B = x.shape[0]
    out = torch.ones_like(x)
    sizes = torch.randint(args.min_size, 33, (B,), generator=g)
    u = torch.rand(B, 2, generator=g)
    for i in range(B):
        s = int(sizes[i])
        xi = x[i : i + 1] if s == 32 else F.interpolate(x[i : i + 1], size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        oy, ox = int(u[i, 0] * (33 - s)), int(u[i, 1] * (33 - s))
        out[i, :, oy : oy + s, ox : ox + s] = xi[0]
    if args.lowres_p > 0:
        # Down to r x r and back up: the soft, blob-like look of a weak sample.
        sides = torch.randint(args.lowres_min, 32, (B,), generator=g)
        pick = torch.rand(B, generator=g) < args.lowres_p
        for i in torch.nonzero(pick).flatten().tolist():
            r = int(sides[i])
            small = F.interpolate(out[i : i + 1], size=(r, r), mode="bilinear", antialias=True, align_corners=False)
            out[i] = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)[0]
    blurred = F.conv2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), BLUR, groups=3)
    alpha = torch.rand(B, 1, 1, 1, generator=g) * (torch.rand(B, 1, 1, 1, generator=g) < 0.5)
    out = out * (1 - alpha) + blurred * alpha
    std = torch.rand(B, 1, 1, 1, generator=g) * 0.08 * (torch.rand(B, 1, 1, 1, generator=g) < 0.3)
    out = out + std * torch.randn(out.shape, generator=g)
    return out.clamp(-1, 1)


def lr_at(s):
    if s < args.warmup:
        return args.lr * (s + 1) / args.warmup
    t = min(1.0, (s - args.warmup) / max(1, args.max_steps - args.warmup))
    return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def retrieval():
    """Top-1/top-5 of each (unaugmented) image's first caption among all first captions."""
    enc.eval()
    names = torch.stack([text_emb[idx[0]] for idx in cap_index])
    img = torch.cat([enc(images[i : i + 512]) for i in range(0, N, 512)])
    enc.train()
    sim = img @ names.T
    rank = (sim > sim.diag()[:, None]).sum(1)
    return (rank < 1).float().mean().item(), (rank < 5).float().mean().item()


log_f = open(os.path.join(args.out, "loss.log"), "a")
t0 = t_ckpt = time.time()
losses = []
enc.train()
while step < args.max_steps and not stop:
    g = torch.Generator().manual_seed(args.seed * 1_000_003 + 7 + step * 2)
    idx = batch_indices(step)
    caps = [cap_index[int(i)][int(torch.randint(len(cap_index[int(i)]), (1,), generator=g))] for i in idx]
    x = augment(images[idx], g)
    t = text_emb[caps]
    for group in opt.param_groups:
        group["lr"] = lr_at(step)
    img = enc(x)
    scale = logit_scale.clamp(max=math.log(100)).exp()
    logits = scale * img @ t.T
    labels = torch.arange(len(idx))
    cap_t = torch.tensor(caps)
    same = (cap_t[:, None] == cap_t[None, :]).float()
    loss_i = F.cross_entropy(logits, labels)
    loss_t = F.cross_entropy(logits.T, same / same.sum(1, keepdim=True))
    loss = (loss_i + loss_t) / 2
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    step += 1
    losses.append(loss.item())
    if step % 25 == 0:
        msg = f"step {step} loss {np.mean(losses[-25:]):.4f} scale {scale.item():.1f} lr {lr_at(step):.2e} {(time.time() - t0) / 60:.1f} min"
        if step % 100 == 0:
            r1, r5 = retrieval()
            msg += f" train-retrieval top1 {r1:.3f} top5 {r5:.3f}"
        log(msg)
        log_f.write(msg + "\n")
        log_f.flush()
    if time.time() - t_ckpt > args.ckpt_minutes * 60:
        save_ckpt()
        t_ckpt = time.time()
    if (time.time() - t0) / 60 > args.max_minutes:
        break
save_ckpt()
r1, r5 = retrieval()
log(f"done at step {step}: train-retrieval top1 {r1:.3f} top5 {r5:.3f}")
