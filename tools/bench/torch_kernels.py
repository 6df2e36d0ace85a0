#!/usr/bin/env python3
"""PyTorch's side of the engine's kernel examples (issue 14).

Times torch's convolution, scaled-dot-product attention or linear layer at
the shapes of `crates/engine/examples/{conv,attn,linear}_bench.rs` and
prints the best of REPEATS calls and GFLOP/s per shape, in the same format,
so the two can be read side by side on the same machine:

    cargo run --release -p easel-engine --example conv_bench -- 2 7
    .venv/bin/python tools/bench/torch_kernels.py conv 2 7

Arguments: KIND (conv, attn or linear), THREADS (default 2), REPEATS
(default 5). f32, CPU, inference mode; one untimed call first.
"""

import sys
import time

import torch
import torch.nn.functional as F

CONV = [  # label, batch, ci, co, h, w, k, stride, pad
    ("unet 320 64²", 1, 320, 320, 64, 64, 3, 1, 1),
    ("unet 320 64² b2", 2, 320, 320, 64, 64, 3, 1, 1),
    ("unet 640 32²", 1, 640, 640, 32, 32, 3, 1, 1),
    ("unet 1280 16²", 1, 1280, 1280, 16, 16, 3, 1, 1),
    ("unet 1280 8²", 1, 1280, 1280, 8, 8, 3, 1, 1),
    ("unet 2560→1280 16²", 1, 2560, 1280, 16, 16, 3, 1, 1),
    ("unet 1×1 320 64²", 1, 320, 320, 64, 64, 1, 1, 0),
    ("unet down 320 64²", 1, 320, 320, 64, 64, 3, 2, 1),
    ("vae 512 64²", 1, 512, 512, 64, 64, 3, 1, 1),
    ("vae 512 128²", 1, 512, 512, 128, 128, 3, 1, 1),
    ("vae 256 256²", 1, 256, 256, 256, 256, 3, 1, 1),
    ("vae 128 512²", 1, 128, 128, 512, 512, 3, 1, 1),
]
ATTN = [  # label, batch·heads, lq, lk, d
    ("self 64² (8×40)", 8, 4096, 4096, 40),
    ("cross 64² (8×40, 77)", 8, 4096, 77, 40),
    ("self 32² (8×80)", 8, 1024, 1024, 80),
    ("self 16² (8×160)", 8, 256, 256, 160),
    ("vae mid 64² (1×512)", 1, 4096, 4096, 512),
]
LINEAR = [  # label, rows, in, out
    ("q 64² 320→320", 4096, 320, 320),
    ("ff in 64² 320→2560", 4096, 320, 2560),
    ("ff out 64² 1280→320", 4096, 1280, 320),
    ("q 32² 640→640", 1024, 640, 640),
    ("ff in 32² 640→5120", 1024, 640, 5120),
    ("ff in 16² 1280→10240", 256, 1280, 10240),
    ("k ctx 768→320", 77, 768, 320),
]


def best(call, repeats):
    call()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    kind = sys.argv[1] if len(sys.argv) > 1 else "conv"
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    torch.set_num_threads(threads)
    with torch.inference_mode():
        if kind == "conv":
            for label, b, ci, co, h, w, k, s, p in CONV:
                conv = torch.nn.Conv2d(ci, co, k, s, p)
                x = torch.randn(b, ci, h, w)
                ho, wo = conv(x).shape[2:]
                t = best(lambda: conv(x), repeats)
                flops = 2 * b * co * ho * wo * ci * k * k
                print(f"{label:22} {t * 1e3:8.2f} ms {flops / t / 1e9:6.1f} GFLOP/s")
        elif kind == "attn":
            for label, bh, lq, lk, d in ATTN:
                q, k, v = (torch.randn(1, bh, n, d) for n in (lq, lk, lk))
                t = best(lambda: F.scaled_dot_product_attention(q, k, v), repeats)
                flops = 4 * bh * lq * lk * d
                print(f"{label:24} {t * 1e3:8.2f} ms {flops / t / 1e9:6.1f} GFLOP/s")
        elif kind == "linear":
            for label, rows, din, dout in LINEAR:
                lin = torch.nn.Linear(din, dout)
                x = torch.randn(1, rows, din)
                t = best(lambda: lin(x), repeats)
                flops = 2 * rows * din * dout
                print(f"{label:24} {t * 1e3:8.2f} ms {flops / t / 1e9:6.1f} GFLOP/s")
        else:
            sys.exit(f"unknown kind {kind!r}: conv, attn or linear")


if __name__ == "__main__":
    main()
