#!/usr/bin/env python3
"""Inpainting references for the engine's golden tests (crates/engine/tests/inpaint.rs).

Run by developers, not by CI (it needs torch and diffusers), after
make_models.py has built tiny-sd1:

    .venv/bin/python tools/golden/inpaint.py

It writes, under crates/engine/tests/fixtures/:

- models/tiny-sd1-inpaint/unet/  a tiny random 9-channel inpainting UNet in f16
  (latents + mask + masked-image latents in, 4 channels out). Only the UNet
  is stored: the test assembles the model folder from a copy of tiny-sd1
  (text encoder, tokenizer, VAE, scheduler) with this UNet in place of its
  own, which keeps the fixtures small.
- golden/inpaint.safetensors + golden/inpaint.json: outputs of diffusers'
  StableDiffusionInpaintPipeline for fixed inputs (init image, one mask per
  image, prompts with a negative prompt, guidance, 4 Euler steps):
  * blend_*: tiny-sd1 (4-channel UNet, latent blending), strength 0.75 and
    1 with Euler, and 0.75 with Heun, DPM++ 2M and DDIM (the latter with
    `set_alpha_to_one=False`, so that its last step ends above σ = 0, and
    `clip_sample=False`, as the Euler config it is made from implies);
  * cond_*: the 9-channel UNet, strength 0.75 and 1;
  * cond_white_*: the 9-channel UNet with a white mask at strength 1, the
    reference for text-to-image on an inpainting UNet.
  Each run's random draws are recorded (`*_noise` is the initial noise,
  `*_image_eps` the init image's VAE posterior draw, `*_masked_eps` the
  masked image's) so that the engine can replay them in its own order.
"""

import json
import shutil

import torch
from safetensors.torch import save_file

import diffusers
import transformers
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    StableDiffusionInpaintPipeline,
    UNet2DConditionModel,
)
from diffusers.models.autoencoders import vae as vae_module
from diffusers.pipelines.stable_diffusion import pipeline_stable_diffusion_inpaint as inpaint_module

from make_models import (
    GOLDEN,
    GUIDANCE,
    MODELS,
    NEGATIVE,
    PROMPTS,
    STEPS,
    gradient,
    randomize,
    save_component,
    write_json,
)

SIDE = 16
STRENGTHS = {"s075": 0.75, "s1": 1.0}


def masks(side):
    """Image 0 repaints its left half, image 1 its top half plus one pixel
    (the bottom-right one, which no latent pixel samples, but which the
    masked image of a 9-channel UNet loses). Recorded as `masks`."""
    m = torch.zeros((2, 1, side, side))
    m[0, :, :, : side // 2] = 1.0
    m[1, :, : side // 2, :] = 1.0
    m[1, :, side - 1, side - 1] = 1.0
    return m


def tiny_inpaint_unet():
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=9,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=4,
        attention_head_dim=2,
    )


class Draws:
    """Records every standard-normal draw of the pipeline (whose module is
    `pipeline_module`: SD 1.x's by default, or SDXL's) and the VAE, in
    order, tagged by who drew it."""

    def __init__(self, pipeline_module=inpaint_module):
        self.draws = []
        self.pipeline_module = pipeline_module
        self.orig = pipeline_module.randn_tensor

    def __enter__(self):
        def tagged(tag):
            def draw(*args, **kwargs):
                t = self.orig(*args, **kwargs)
                self.draws.append((tag, t.clone()))
                return t

            return draw

        self.pipeline_module.randn_tensor = tagged("noise")
        vae_module.randn_tensor = tagged("vae")
        return self

    def __exit__(self, *exc):
        self.pipeline_module.randn_tensor = self.orig
        vae_module.randn_tensor = self.orig


@torch.no_grad()
def run(pipe, ref, key, mask, strength, four_channel, pipeline_module=inpaint_module):
    """Runs `pipe` on the two reference requests and records its output and
    every random draw under `key`; `pipeline_module` is the module whose
    `randn_tensor` the pipeline calls."""
    init = (gradient(SIDE) / 255.0).unsqueeze(0).repeat(2, 1, 1, 1)
    with Draws(pipeline_module) as d:
        out = pipe(
            prompt=PROMPTS,
            negative_prompt=[NEGATIVE] * 2,
            image=init,
            mask_image=mask,
            height=SIDE,
            width=SIDE,
            strength=strength,
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE,
            generator=torch.Generator().manual_seed(11),
            output_type="pt",
        ).images.float()
    tags = [t for t, _ in d.draws]
    # diffusers draws the init image's posterior (unless a 9-channel UNet
    # runs at strength 1), then the noise, then the masked image's posterior
    # (used by 9-channel UNets only).
    want = (["vae"] if four_channel or strength < 1.0 else []) + ["noise", "vae"]
    assert tags == want, (key, tags)
    vae_draws = [t for tag, t in d.draws if tag == "vae"]
    ref[f"{key}_noise"] = next(t for tag, t in d.draws if tag == "noise")
    if four_channel or strength < 1.0:
        ref[f"{key}_image_eps"] = vae_draws[0]
    if not four_channel:
        ref[f"{key}_masked_eps"] = vae_draws[-1]
    ref[f"{key}_image"] = out



def sd_pipe_builder(vae, text, tokenizer, sched_cfg):
    """`pipe(unet, scheduler=None)`: an SD 1.x/2.x inpainting pipeline on these
    components, Euler from `sched_cfg` unless another scheduler is given."""

    def pipe(unet, scheduler=None):
        p = StableDiffusionInpaintPipeline(
            vae=vae,
            text_encoder=text,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler or EulerDiscreteScheduler.from_config(sched_cfg),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        p.set_progress_bar_config(disable=True)
        return p

    return pipe


def standard_cases(pipe, unet4, unet9, sched_cfg, side, pipeline_module=inpaint_module):
    """The runs the SD 2.x and SDXL scripts share: latent blending with the
    4-channel UNet at every strength, the 9-channel UNet at every strength
    and with a white mask at strength 1, and DPM++ 2M blending at 0.75.
    `pipe(unet, scheduler=None)` builds the pipeline; its draws are recorded
    through `pipeline_module`. Returns the references."""

    def run_one(p, ref, key, mask, strength, four_channel):
        run(p, ref, key, mask, strength, four_channel, pipeline_module=pipeline_module)

    m = masks(side)
    processed = pipe(unet4).mask_processor.preprocess(m, height=side, width=side)
    assert torch.equal(processed, m), "the mask processor changed a binary mask"

    ref = {"masks": m}
    for name, s in STRENGTHS.items():
        run_one(pipe(unet4), ref, f"blend_{name}", m, s, four_channel=True)
        run_one(pipe(unet9), ref, f"cond_{name}", m, s, four_channel=False)
    run_one(pipe(unet9), ref, "cond_white_s1", torch.ones_like(m), 1.0, four_channel=False)
    dpm = DPMSolverMultistepScheduler.from_config(sched_cfg)
    run_one(pipe(unet4, dpm), ref, "blend_dpmpp_2m_s075", m, 0.75, four_channel=True)
    return {k: v.contiguous() for k, v in ref.items()}


def save_references(ref, name, model_dir, side, extra=None):
    """Writes golden/<name>.safetensors and its JSON (the inputs' settings,
    `extra` after the sampler, then the library versions), and prints the
    fixtures' sizes."""
    GOLDEN.mkdir(parents=True, exist_ok=True)
    save_file(ref, GOLDEN / f"{name}.safetensors")
    write_json(
        GOLDEN / f"{name}.json",
        {
            "prompts": PROMPTS,
            "negative_prompt": NEGATIVE,
            "steps": STEPS,
            "guidance_scale": GUIDANCE,
            "size": side,
            "strengths": STRENGTHS,
            "sampler": "euler",
            **(extra or {}),
            "versions": {
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "transformers": transformers.__version__,
            },
        },
    )
    print({k: tuple(v.shape) for k, v in ref.items()})
    sizes = {
        str(f.relative_to(GOLDEN.parent)): f.stat().st_size
        for f in list(model_dir.rglob("*")) + list(GOLDEN.glob(f"{name}.*"))
        if f.is_file()
    }
    print(sizes, f"total {sum(sizes.values()) / 1e3:.1f} kB")


def main():
    src = MODELS / "tiny-sd1"
    text = transformers.CLIPTextModel.from_pretrained(src / "text_encoder").eval()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(src / "tokenizer")
    vae = AutoencoderKL.from_pretrained(src / "vae").eval()
    unet4 = UNet2DConditionModel.from_pretrained(src / "unet").eval()
    sched_cfg = json.loads((src / "scheduler" / "scheduler_config.json").read_text())

    torch.manual_seed(0)
    # Stored in f16 (half the bytes); the reference runs the same rounded
    # weights in f32, as the engine does.
    unet9 = randomize(tiny_inpaint_unet(), 0.1).half().float().eval()
    out = MODELS / "tiny-sd1-inpaint"
    shutil.rmtree(out, ignore_errors=True)
    save_component(unet9, out / "unet", dtype=torch.float16)

    pipe = sd_pipe_builder(vae, text, tokenizer, sched_cfg)

    m = masks(SIDE)
    processed = pipe(unet4).mask_processor.preprocess(m, height=SIDE, width=SIDE)
    assert torch.equal(processed, m), "the mask processor changed a binary mask"

    ref = {"masks": m}
    for name, s in STRENGTHS.items():
        run(pipe(unet4), ref, f"blend_{name}", m, s, four_channel=True)
        run(pipe(unet9), ref, f"cond_{name}", m, s, four_channel=False)
    run(pipe(unet9), ref, "cond_white_s1", torch.ones_like(m), 1.0, four_channel=False)
    others = {
        "heun": HeunDiscreteScheduler.from_config(sched_cfg),
        "dpmpp_2m": DPMSolverMultistepScheduler.from_config(sched_cfg),
        "ddim": DDIMScheduler.from_config(sched_cfg, set_alpha_to_one=False, clip_sample=False),
    }
    for name, scheduler in others.items():
        run(pipe(unet4, scheduler), ref, f"blend_{name}_s075", m, 0.75, four_channel=True)

    ref = {k: v.contiguous() for k, v in ref.items()}
    save_references(ref, "inpaint", out, SIDE)


if __name__ == "__main__":
    main()
