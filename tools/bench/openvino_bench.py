#!/usr/bin/env python3
"""An OpenVINO reference for `easel bench engine --reference`.

A drop-in alternative to tools/bench/diffusers_bench.py: same arguments,
same stages, same inputs, and the same JSON (the engine's
`ReferenceReport`, crates/engine/src/bench.rs) as the last line of stdout;
progress goes to stderr.

    [EASEL_BENCH_OV_PRECISION=f32] easel bench engine --model FOLDER --reference \
        --python .venv/bin/python --script tools/bench/openvino_bench.py

    .venv/bin/python tools/bench/openvino_bench.py MODEL_DIR \
        --threads 2 --warmup 1 --repeats 3 --token-ids 49406,320,... \
        --latent-shape 4,64,64 --timestep 500 [--precision f32|bf16]

Loads a diffusers SD 1.x folder with diffusers/transformers (f32, CPU),
converts the text encoder, the UNet and the VAE decoder to OpenVINO with
`openvino.convert_model` (TorchScript tracing of small adapters whose
inputs and output are plain tensors), fixes their input shapes to the
stages' and compiles each for OpenVINO's CPU plugin: the text encoder at
one row of ids, the UNet at batch 1 and then at batch 2, the VAE decoder
at one latent. The timings are of the compiled models only: each timed
call is one `InferRequest.infer()` on inputs set beforehand, with no
conversion to or from torch.

Compile config: INFERENCE_NUM_THREADS = `--threads`, PERFORMANCE_HINT =
LATENCY, NUM_STREAMS = 1, INFERENCE_PRECISION_HINT = `--precision`: `bf16`
(the default, or the environment variable EASEL_BENCH_OV_PRECISION, since
`easel bench` does not pass the flag) or `f32`. The precision in `library`
is the one the compiled models report, which is f32 where the CPU has no
bf16 support even when bf16 was asked for; `threads` is the plugin's too.

Stages: load (reading the folder with diffusers/transformers, converting
the three modules and compiling four models: everything from the folder
to models ready to run, one sample; stderr gives the split); text_encode
(last_hidden_state of one row of ids; BERT with the attention mask);
denoise_b1 / denoise_b2 (`unet(x, t, encoder_hidden_states=ctx)`, ctx the
compiled text encoder's output); decode (`vae.decode(z / scaling_factor)`,
the division inside the compiled graph). SDXL folders are not supported;
a folder without vae/ has no decode stage.

Memory: as diffusers_bench.py (VmHWM, reset before each stage through
/proc/self/clear_refs). Each compiled model packs its own copy of its
weights, so only one compiled UNet is resident at a time, as the engine
and diffusers hold one UNet: the batch-2 UNet is compiled after
denoise_b1, once the batch-1 one is dropped, and that compile counts
towards load (its seconds added to load's sample, its peak to load's
peak). The torch modules are dropped after compiling and freed memory is
handed back with glibc's malloc_trim; the compiled models still hold the
converted f32 weights (the CPU plugin keeps the model's constants, which
share torch's memory), so with bf16 each figure counts the f32 weights
and the packed bf16 ones.

Device: CPU only. `--device` (or EASEL_BENCH_DEVICE) is accepted for
`easel bench`, which always passes it, and anything but `cpu` is refused.
"""

import argparse
import ctypes
import gc
import importlib.metadata
import json
import os
import pathlib
import sys
import time

# The shared helpers live beside this script.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from diffusers_bench import (  # noqa: E402
    check_tokens,
    figures,
    log,
    memory_method,
    peak_bytes,
    reset_peak,
    time_calls,
)

PRECISIONS = ("f32", "bf16")


def release_freed_memory():
    """Hands memory freed by Python/torch back to the system, so that the
    next stage's VmHWM starts from what is really in use (glibc only)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def adapters(torch):
    """torch.nn.Module wrappers whose inputs and output are plain tensors,
    the form `openvino.convert_model` traces."""

    class TextEncoder(torch.nn.Module):
        def __init__(self, text, bert):
            super().__init__()
            self.text, self.bert = text, bert

        def forward(self, input_ids, attention_mask=None):
            if self.bert:
                return self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return self.text(input_ids=input_ids).last_hidden_state

    class Unet(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states).sample

    class VaeDecoder(torch.nn.Module):
        def __init__(self, vae):
            super().__init__()
            self.vae, self.scale = vae, vae.config.scaling_factor

        def forward(self, z):
            return self.vae.decode(z / self.scale).sample

    return TextEncoder, Unet, VaeDecoder


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
        help="cpu only (accepted for `easel bench`); default from EASEL_BENCH_DEVICE",
    )
    ap.add_argument(
        "--precision",
        default=os.environ.get("EASEL_BENCH_OV_PRECISION", "bf16"),
        help="f32 or bf16 (INFERENCE_PRECISION_HINT); default from EASEL_BENCH_OV_PRECISION, else bf16",
    )
    args = ap.parse_args()
    if args.device != "cpu":
        ap.error(
            f"--device {args.device!r}: the OpenVINO reference runs on the CPU only; "
            "use cpu, or tools/bench/diffusers_bench.py for CUDA"
        )
    if args.precision not in PRECISIONS:
        ap.error(f"--precision {args.precision!r}: use f32 or bf16")
    if args.threads < 1:
        ap.error("--threads must be at least 1")

    method = memory_method()  # before torch: the reset check needs a free peak
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints
    import torch
    import diffusers
    import transformers

    torch.set_num_threads(args.threads)  # the tracing runs each module once
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)

    d = args.model_dir
    index = json.loads((d / "model_index.json").read_text())
    if "text_encoder_2" in index:
        sys.exit("openvino_bench.py: SDXL folders are not supported")
    ids = [int(t) for t in args.token_ids.split(",")]
    shape = [int(v) for v in args.latent_shape.split(",")]
    text_cls = index["text_encoder"][1]
    bert = "Bert" in text_cls
    stages = []

    core = ov.Core()
    config = {
        props.inference_num_threads: args.threads,
        hints.inference_precision: ov.Type.bf16 if args.precision == "bf16" else ov.Type.f32,
        hints.performance_mode: hints.PerformanceMode.LATENCY,
        props.num_streams: 1,
    }

    # The tokenizer is read before the timed load, as the engine's bench
    # tokenizes outside it; the mask is also the text encoder's example input.
    token_ids_match, tok_mask = check_tokens(d, args.prompt, ids)
    ids_t = torch.tensor([ids], dtype=torch.long)

    reset_peak()
    t0 = time.perf_counter()
    text = getattr(transformers, text_cls).from_pretrained(d / "text_encoder", dtype=torch.float32).eval()
    unet = diffusers.UNet2DConditionModel.from_pretrained(d / "unet", torch_dtype=torch.float32).eval()
    vae = None
    if "vae" in index and (d / "vae").is_dir():
        vae = diffusers.AutoencoderKL.from_pretrained(d / "vae", torch_dtype=torch.float32).eval()
    t_read = time.perf_counter()

    if bert:
        mask_t = torch.tensor(tok_mask, dtype=torch.long) if tok_mask is not None else None
        if mask_t is None:
            mask_t = (ids_t != (text.config.pad_token_id or 0)).long()
    context_dim = unet.config.cross_attention_dim
    x1 = torch.randn(1, *shape)
    x2 = torch.randn(2, *shape)
    z = torch.randn(1, *shape) if vae is not None else None
    t = torch.tensor(args.timestep, dtype=torch.float32)
    ctx1 = torch.zeros(1, len(ids), context_dim)

    TextEncoder, Unet, VaeDecoder = adapters(torch)
    with torch.no_grad():
        text_in = (ids_t, mask_t) if bert else (ids_t,)
        text_ov = ov.convert_model(TextEncoder(text, bert), example_input=text_in)
        unet_ov = ov.convert_model(Unet(unet), example_input=(x1, t, ctx1))
        vae_ov = ov.convert_model(VaeDecoder(vae), example_input=(z,)) if vae is not None else None
    t_convert = time.perf_counter()

    def compile_static(model, inputs):
        model.reshape({i: ov.PartialShape(list(x.shape)) for i, x in enumerate(inputs)})
        return core.compile_model(model, "CPU", config)

    compiled = {"text": compile_static(text_ov, text_in)}
    compiled["unet"] = compile_static(unet_ov, (x1, t, ctx1))
    if vae_ov is not None:
        compiled["vae"] = compile_static(vae_ov, (z,))
    t_compile = time.perf_counter()
    del text, unet, vae, text_ov, vae_ov  # unet_ov is compiled again at batch 2
    release_freed_memory()
    load_s, load_peak = time.perf_counter() - t0, peak_bytes()
    stages.append(figures("load", [load_s], load_peak))
    log(
        f"loaded in {load_s:.2f} s: read {t_read - t0:.2f} s, "
        f"convert {t_convert - t_read:.2f} s, compile {t_compile - t_convert:.2f} s"
    )

    # What the plugin made of the config (bf16 falls back to f32 on a CPU
    # without bf16 support).
    precision = compiled["unet"].get_property(hints.inference_precision).to_string()
    threads = int(compiled["unet"].get_property(props.inference_num_threads))
    if precision != args.precision:
        log(f"asked for {args.precision}, the CPU plugin runs {precision}")

    def timed(stage, model, inputs):
        """Times `model` on `inputs`, set once on an infer request, so that
        each timed call is the compiled model alone."""
        req = compiled[model].create_infer_request()
        for i, x in enumerate(inputs):
            req.set_input_tensor(i, ov.Tensor(x.contiguous().numpy()))
        reset_peak()
        samples = time_calls(req.infer, args.warmup, args.repeats)
        stages.append(figures(stage, samples, peak_bytes()))
        log(f"{stage}: {samples}")
        return req

    req = timed("text_encode", "text", text_in)
    context = torch.from_numpy(req.get_output_tensor(0).data.copy())
    del req
    timed("denoise_b1", "unet", (x1, t, context))

    # One compiled UNet at a time, as the engine and diffusers hold one
    # UNet: each compiled model packs its own copy of the weights, so with
    # both resident every stage's memory would count the UNet twice. The
    # batch-2 compile belongs to loading: its seconds are added to load's
    # sample, its peak to load's peak.
    del compiled["unet"]
    release_freed_memory()
    reset_peak()
    t0 = time.perf_counter()
    compiled["unet"] = compile_static(unet_ov, (x2, t, ctx1.repeat(2, 1, 1)))
    compile_b2_s = time.perf_counter() - t0
    del unet_ov
    release_freed_memory()
    peaks = [p for p in (load_peak, peak_bytes()) if p is not None]
    stages[0] = figures("load", [load_s + compile_b2_s], max(peaks) if peaks else None)
    log(f"compiled the UNet at batch 2 in {compile_b2_s:.2f} s (added to load)")
    timed("denoise_b2", "unet", (x2, t, context.repeat(2, 1, 1)))
    if "vae" in compiled:
        timed("decode", "vae", (z,))

    report = {
        "library": f"openvino {importlib.metadata.version('openvino')} {precision} (cpu)",
        "device": "cpu",
        "threads": threads,
        "memory": method,
        "token_ids_match": token_ids_match,
        "stages": stages,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
