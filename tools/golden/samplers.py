#!/usr/bin/env python3
"""Golden fixtures for the engine's samplers, from diffusers' own scheduler classes.

Run by developers, not CI (needs torch and diffusers; checked with diffusers 0.42.1):

    python tools/golden/samplers.py [--out crates/engine/tests/fixtures/samplers]

Writes two JSON files that crates/engine/tests/samplers.rs checks against:

- schedules.json: for 6 scheduler configs (SD-like, cosine, zero-SNR) x every sampler x every
  schedule it supports x a few step counts: the timesteps and sigmas that
  diffusers' `set_timesteps` produces, and `init_noise_sigma`.
- loops.json: full sampling loops of 6 steps on a [2, 3, 4, 4] tensor from a
  fixed initial noise, for 4 configs, with the analytic network
      out = tanh(0.5 * x_in) + 0.1 * t / 1000
  (read as eps or v by the config), for every sampler x schedule x config;
  plus an image-to-image loop (strength 0.5) per sampler. Ancestral and LCM
  loops draw their per-step noise from a seeded torch generator; every draw
  diffusers makes is recorded so the Rust side can replay it.

How each (sampler, schedule) pair maps to diffusers:
- euler, heun, dpmpp_2m: EulerDiscreteScheduler, HeunDiscreteScheduler,
  DPMSolverMultistepScheduler (algorithm_type dpmsolver++, order 2), with
  use_karras_sigmas / use_exponential_sigmas for the karras / exponential
  schedules.
- euler_ancestral: EulerAncestralDiscreteScheduler. It has no Karras or
  exponential option, so for those schedules its sigmas and timesteps are
  replaced by those of EulerDiscreteScheduler with that option, after
  set_timesteps (what k-diffusion's "Euler a Karras" does); its own step()
  then runs unchanged.
- ddim: DDIMScheduler (eta 0); lcm: LCMScheduler. Default schedule only: the
  engine rejects the others at plan time.
"""

import argparse
import inspect
import json
import os

import diffusers
import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LCMScheduler,
)
import diffusers.schedulers.scheduling_euler_ancestral_discrete as euler_a_module
import diffusers.schedulers.scheduling_lcm as lcm_module

SD_BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")

CONFIGS = {
    # SD 1.5's scheduler config (leading spacing, offset 1, last DDIM step to alpha_0).
    "sd15_eps_leading": dict(
        SD_BETAS, prediction_type="epsilon", timestep_spacing="leading", steps_offset=1,
        set_alpha_to_one=False, clip_sample=False,
    ),
    # A v-prediction model with linspace spacing.
    "v_linspace": dict(
        SD_BETAS, prediction_type="v_prediction", timestep_spacing="linspace", steps_offset=0,
        set_alpha_to_one=True, clip_sample=False,
    ),
    # Trailing spacing (SD-Turbo style), 6 steps do not divide 1000.
    "eps_trailing": dict(
        SD_BETAS, prediction_type="epsilon", timestep_spacing="trailing", steps_offset=0,
        set_alpha_to_one=True, clip_sample=False,
    ),
    # Ends above zero (Euler, DPM++ 2M: final_sigmas_type; DDIM: alpha_0) and
    # clamps x0 (DDIM, LCM, Heun: clip_sample), with linspace spacing.
    "eps_linspace_sigma_min_clip": dict(
        SD_BETAS, prediction_type="epsilon", timestep_spacing="linspace", steps_offset=0,
        set_alpha_to_one=False, clip_sample=True, clip_sample_range=1.0, final_sigmas_type="sigma_min",
    ),
}

# Checked for timesteps and sigmas only: their sigma_max is in the thousands,
# where a full f32 loop cannot be compared at a fixed absolute tolerance.
SCHEDULE_ONLY_CONFIGS = {
    "cosine_eps_linspace": dict(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
        timestep_spacing="linspace", steps_offset=0, set_alpha_to_one=True, clip_sample=False,
    ),
    "zero_snr_v_trailing": dict(
        SD_BETAS, prediction_type="v_prediction", timestep_spacing="trailing", steps_offset=0,
        rescale_betas_zero_snr=True, set_alpha_to_one=True, clip_sample=False,
    ),
}

CLASSES = {
    "euler": EulerDiscreteScheduler,
    "euler_ancestral": EulerAncestralDiscreteScheduler,
    "heun": HeunDiscreteScheduler,
    "dpmpp_2m": DPMSolverMultistepScheduler,
    "ddim": DDIMScheduler,
    "lcm": LCMScheduler,
}
SCHEDULES = ["default", "karras", "exponential"]
SUPPORTED = {s: SCHEDULES for s in ["euler", "euler_ancestral", "heun", "dpmpp_2m"]}
SUPPORTED.update(ddim=["default"], lcm=["default"])

# Schedulers checked with rescale_betas_zero_snr: Heun's class lacks the option,
# and DDIM's and LCM's keep alpha_cumprod = 0 at t = T-1 (sigma = inf; the engine,
# like Euler's class, uses 2**-24 there).
ZERO_SNR_OK = {"euler", "euler_ancestral", "dpmpp_2m"}

SHAPE = [2, 3, 4, 4]
LOOP_STEPS = 6
IMG2IMG_STRENGTH = 0.5


def make(sampler, schedule, cfg, steps, strength=1.0):
    """A diffusers scheduler of the sampler's class with set_timesteps done."""
    opts = dict(cfg)
    if schedule != "default" and sampler != "euler_ancestral":
        opts["use_karras_sigmas"] = schedule == "karras"
        opts["use_exponential_sigmas"] = schedule == "exponential"
    sch = CLASSES[sampler].from_config(opts)
    if sampler == "lcm":
        sch.set_timesteps(steps, strength=strength)
    else:
        sch.set_timesteps(steps)
    if sampler == "euler_ancestral" and schedule != "default":
        # The ancestral class always ends at zero; so must the donor.
        donor = make("euler", schedule, dict(cfg, final_sigmas_type="zero"), steps)
        sch.sigmas = donor.sigmas.clone()
        sch.timesteps = donor.timesteps.clone()
    return sch


def per_step(sampler, sch):
    """(timesteps, sigmas) with one entry per network timestep (Heun's repeats removed)."""
    ts = [float(t) for t in sch.timesteps]
    ac = sch.alphas_cumprod.double()
    if sampler == "heun":
        ts = [ts[0]] + ts[1::2]
        sig = sch.sigmas.tolist()
        sig = [sig[0]] + sig[1:-1:2] + [sig[-1]]
    elif sampler in ("euler", "euler_ancestral", "dpmpp_2m"):
        sig = sch.sigmas.tolist()
    else:  # ddim, lcm: sigmas of the training table at the timesteps
        sig = [float(((1 - ac[int(t)]) / ac[int(t)]).sqrt()) for t in ts]
    return ts, sig


def init_noise_sigma(sampler, sch):
    """diffusers' init_noise_sigma, in k-diffusion scaling (x = x0 + sigma * eps)."""
    s = float(sch.init_noise_sigma)
    if sampler in ("ddim", "dpmpp_2m", "lcm"):
        # These start from the variance-preserving latent (sigma_vp = 1).
        ts, sig = per_step(sampler, sch)
        return float(np.sqrt(sig[0] ** 2 + 1.0))
    return s


def net(x_in, t):
    return torch.tanh(0.5 * x_in) + 0.1 * float(t) / 1000.0


class Recorder:
    """Wraps a scheduler module's randn_tensor and keeps every draw."""

    def __init__(self):
        self.draws = []
        self.saved = {}

    def __enter__(self):
        for mod in (euler_a_module, lcm_module):
            orig = mod.randn_tensor
            self.saved[mod] = orig

            def wrapped(*a, _orig=orig, **k):
                out = _orig(*a, **k)
                self.draws.append(out.clone())
                return out

            mod.randn_tensor = wrapped
        return self

    def __exit__(self, *exc):
        for mod, orig in self.saved.items():
            mod.randn_tensor = orig


def run_loop(sampler, schedule, cfg, noise, strength=None, x0=None):
    steps = LOOP_STEPS
    sch = make(sampler, schedule, cfg, steps, strength=strength if sampler == "lcm" and strength else 1.0)
    timesteps = sch.timesteps
    if strength is None:
        x = noise * sch.init_noise_sigma
    else:
        # diffusers' img2img pipelines: get_timesteps(), then add_noise at the first timestep.
        init_timestep = min(int(steps * strength), steps)
        t_start = max(steps - init_timestep, 0)
        timesteps = sch.timesteps[t_start * sch.order:]
        if hasattr(sch, "set_begin_index"):
            sch.set_begin_index(t_start * sch.order)
        x = sch.add_noise(x0, noise, timesteps[:1])
    gen = torch.Generator().manual_seed(1234)
    with Recorder() as rec:
        for t in timesteps:
            x_in = sch.scale_model_input(x, t)
            out = net(x_in, t)
            kw = dict(generator=gen) if "generator" in inspect.signature(sch.step).parameters else {}
            x = sch.step(out, t, x, **kw).prev_sample
    return x, rec.draws


def flat(t):
    return [float(v) for v in t.detach().to(torch.float32).flatten().tolist()]


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.normpath(os.path.join(here, "../../crates/engine/tests/fixtures/samplers")))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)

    schedules = []
    for cname, cfg in {**CONFIGS, **SCHEDULE_ONLY_CONFIGS}.items():
        for sampler, kinds in SUPPORTED.items():
            if cname in SCHEDULE_ONLY_CONFIGS and sampler not in ZERO_SNR_OK and "zero_snr" in cname:
                continue
            for schedule in kinds:
                for steps in [1, 4, 6, 7, 25]:
                    sch = make(sampler, schedule, cfg, steps)
                    ts, sig = per_step(sampler, sch)
                    schedules.append(dict(
                        config=cname, sampler=sampler, schedule=schedule, steps=steps,
                        timesteps=ts, sigmas=sig, init_noise_sigma=init_noise_sigma(sampler, sch),
                    ))

    g = torch.Generator().manual_seed(0)
    noise = torch.randn(SHAPE, generator=g, dtype=torch.float32)
    x0 = torch.randn(SHAPE, generator=g, dtype=torch.float32) * 0.5
    loops = []
    for cname, cfg in CONFIGS.items():
        for sampler, kinds in SUPPORTED.items():
            for schedule in kinds:
                out, draws = run_loop(sampler, schedule, cfg, noise)
                loops.append(dict(config=cname, sampler=sampler, schedule=schedule, steps=LOOP_STEPS,
                                  strength=None, draws=[flat(d) for d in draws], output=flat(out)))
    for sampler in CLASSES:
        cfg = CONFIGS["sd15_eps_leading"]
        out, draws = run_loop(sampler, "default", cfg, noise, strength=IMG2IMG_STRENGTH, x0=x0)
        loops.append(dict(config="sd15_eps_leading", sampler=sampler, schedule="default", steps=LOOP_STEPS,
                          strength=IMG2IMG_STRENGTH, draws=[flat(d) for d in draws], output=flat(out)))

    meta = dict(diffusers_version=diffusers.__version__, torch_version=torch.__version__,
                network="tanh(0.5 * x_in) + 0.1 * t / 1000", shape=SHAPE)
    configs = {k: dict(v, _class_name="EulerDiscreteScheduler") for k, v in CONFIGS.items()}
    all_configs = {k: dict(v, _class_name="EulerDiscreteScheduler") for k, v in {**CONFIGS, **SCHEDULE_ONLY_CONFIGS}.items()}
    with open(os.path.join(args.out, "schedules.json"), "w") as f:
        json.dump(dict(meta=meta, configs=all_configs, schedules=schedules), f, separators=(",", ":"))
    with open(os.path.join(args.out, "loops.json"), "w") as f:
        json.dump(dict(meta=meta, configs=configs, noise=flat(noise), x0=flat(x0), loops=loops), f,
                  separators=(",", ":"))
    print(f"{len(schedules)} schedules, {len(loops)} loops -> {args.out}")


if __name__ == "__main__":
    main()
