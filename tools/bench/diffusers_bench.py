#!/usr/bin/env python3
"""The reference half of `easel bench engine --reference`.

Loads a diffusers model folder with diffusers/transformers (f32, on the CPU
by default, on a CUDA GPU with `--device cuda`) and times the same stages as the engine's bench (crates/engine/src/bench.rs) on
the same inputs: the same token ids, denoiser inputs of the same shape
(random normal; the cost does not depend on the values), the same timestep.
Prints one JSON object (the engine's `ReferenceReport`) on stdout; progress
goes to stderr.

    .venv/bin/python tools/bench/diffusers_bench.py MODEL_DIR \
        --threads 2 --warmup 1 --repeats 3 --token-ids 49406,320,... \
        --latent-shape 4,64,64 --timestep 500 [--device cuda]

Threads: torch.set_num_threads(N) (intra-op pool, OpenMP/MKL/oneDNN) and one
inter-op thread; `easel bench` also sets OMP_NUM_THREADS and
MKL_NUM_THREADS to N in this process's environment.

Stages: load (the text encoder, UNet and VAE, one sample); text_encode
(the text encoder on one row of ids, as the pipelines call it:
last_hidden_state; BERT with the attention mask); denoise_b1 / denoise_b2
(`unet(x, t, encoder_hidden_states=ctx)`); decode (`vae.decode(z /
scaling_factor)`, as StableDiffusionPipeline does). SDXL folders are not
supported here.

Memory: VmHWM from /proc/self/status, reset before each stage by writing 5
to /proc/self/clear_refs (same method as the engine), so each figure is the
peak RSS while the stage ran, weights included.

Device: `--device` takes `cpu` (the default), `cuda` or `cuda:N`, the forms
of Easel's `--device`; when absent, the environment variable
EASEL_BENCH_DEVICE, else `cpu`. On CUDA the weights and inputs live on the
GPU, every timed call is bracketed by torch.cuda.synchronize(), TF32 is off
for matmuls and cuDNN convolutions (candle's CUDA f32 kernels do not use
it), and each stage also reports `peak_cuda_bytes`:
torch.cuda.max_memory_allocated after torch.cuda.reset_peak_memory_stats at
the stage's start (tensors only, not the CUDA context or the caching
allocator's reserve). `peak_rss_bytes` stays the host's resident memory.
The report's top-level `device` names the device; `library` ends with it,
so the comparison table shows where the reference ran.
"""

import argparse
import json
import os
import pathlib
import re
import statistics
import sys
import time


def status_kib(field):
    try:
        text = open("/proc/self/status").read()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes():
    kib = status_kib("VmHWM")
    return None if kib is None else kib * 1024


def memory_method():
    if status_kib("VmHWM") is None:
        return "unavailable"
    blob = bytearray(64 << 20)
    del blob
    hwm_ok = reset_peak() and status_kib("VmHWM") <= status_kib("VmRSS") + (16 << 10)
    return "per_stage" if hwm_ok else "process_peak"


def figures(stage, samples, peak, cuda_peak=None):
    out = {
        "stage": stage,
        "samples_s": samples,
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "peak_rss_bytes": peak,
    }
    if cuda_peak is not None:
        out["peak_cuda_bytes"] = cuda_peak
    return out


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def time_calls(call, warmup, repeats, sync=lambda: None):
    """`warmup` untimed calls, then max(repeats, 1) timed ones; the seconds
    of each, each call bracketed by `sync` (a device barrier, or nothing)."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(max(repeats, 1)):
        sync()
        t = time.perf_counter()
        call()
        sync()
        samples.append(time.perf_counter() - t)
    return samples


def check_tokens(model_dir, prompt, ids):
    """Whether the folder's tokenizer gives `ids` for `prompt`, and its
    attention mask (a batch of one row); (None, None) without a prompt or
    tokenizer."""
    tok_dir = model_dir / "tokenizer"
    if prompt is None or not tok_dir.is_dir():
        return None, None
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(tok_dir)
    enc = tok([prompt], padding="max_length", max_length=len(ids), truncation=True)
    return enc["input_ids"][0] == ids, enc["attention_mask"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", type=pathlib.Path)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--token-ids", required=True, help="comma-separated, padded")
    ap.add_argument("--prompt", default=None, help="to check the tokenizer agrees")
    ap.add_argument("--latent-shape", required=True, help="C,H,W per image")
    ap.add_argument("--timestep", type=float, default=500.0)
    ap.add_argument(
        "--device",
        default=os.environ.get("EASEL_BENCH_DEVICE", "cpu"),
        help="cpu (default), cuda or cuda:N; default from EASEL_BENCH_DEVICE",
    )
    args = ap.parse_args()
    if not re.fullmatch(r"cpu|cuda(:\d+)?", args.device):
        ap.error(f"--device {args.device!r}: use cpu, cuda or cuda:N")

    method = memory_method()  # before torch: the reset check needs a free peak
    import torch
    import diffusers
    import transformers

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda:
        if not torch.cuda.is_available():
            sys.exit(f"diffusers_bench.py: --device {args.device} but torch {torch.__version__} sees no CUDA GPU")
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    def reset_cuda_peak():
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)

    def cuda_peak():
        return torch.cuda.max_memory_allocated(dev) if cuda else None

    d = args.model_dir
    index = json.loads((d / "model_index.json").read_text())
    if "text_encoder_2" in index:
        sys.exit("diffusers_bench.py: SDXL folders are not supported")
    ids = [int(t) for t in args.token_ids.split(",")]
    shape = [int(v) for v in args.latent_shape.split(",")]
    stages = []

    if cuda:
        torch.zeros(1, device=dev)  # create the CUDA context outside the timed load
        sync()
    reset_peak()
    reset_cuda_peak()
    t0 = time.perf_counter()
    text_cls = index["text_encoder"][1]
    text = getattr(transformers, text_cls).from_pretrained(d / "text_encoder", dtype=torch.float32).eval().to(dev)
    unet = diffusers.UNet2DConditionModel.from_pretrained(d / "unet", torch_dtype=torch.float32).eval().to(dev)
    vae = None
    if "vae" in index and (d / "vae").is_dir():
        vae = diffusers.AutoencoderKL.from_pretrained(d / "vae", torch_dtype=torch.float32).eval().to(dev)
    sync()
    stages.append(figures("load", [time.perf_counter() - t0], peak_bytes(), cuda_peak()))
    log(f"loaded in {stages[-1]['median_s']:.2f} s")

    bert = "Bert" in text_cls
    ids_t = torch.tensor([ids], dtype=torch.long, device=dev)
    mask = None
    token_ids_match, tok_mask = check_tokens(d, args.prompt, ids)
    if bert and tok_mask is not None:
        mask = torch.tensor(tok_mask, dtype=torch.long, device=dev)
    if bert and mask is None:
        mask = (ids_t != (text.config.pad_token_id or 0)).long()

    def timed(stage, call):
        reset_peak()
        reset_cuda_peak()
        with torch.inference_mode():
            samples = time_calls(call, args.warmup, args.repeats, sync)
        stages.append(figures(stage, samples, peak_bytes(), cuda_peak()))
        log(f"{stage}: {samples}")

    if bert:
        encode = lambda: text(input_ids=ids_t, attention_mask=mask).last_hidden_state  # noqa: E731
    else:
        encode = lambda: text(input_ids=ids_t).last_hidden_state  # noqa: E731
    timed("text_encode", encode)
    with torch.inference_mode():
        context = encode()
    t = torch.tensor(args.timestep, device=dev)
    for stage, batch in [("denoise_b1", 1), ("denoise_b2", 2)]:
        x = torch.randn(batch, *shape, device=dev)
        ctx = context.repeat(batch, 1, 1)
        timed(stage, lambda: unet(x, t, encoder_hidden_states=ctx).sample)
    if vae is not None:
        z = torch.randn(1, *shape, device=dev)
        scale = vae.config.scaling_factor
        timed("decode", lambda: vae.decode(z / scale).sample)

    where = f"{dev} ({torch.cuda.get_device_name(dev)})" if cuda else "cpu"
    report = {
        "library": f"diffusers {diffusers.__version__}, transformers {transformers.__version__}, "
        f"torch {torch.__version__} on {where}",
        "device": where,
        "threads": torch.get_num_threads(),
        "memory": method,
        "token_ids_match": token_ids_match,
        "stages": stages,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
