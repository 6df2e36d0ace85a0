#!/usr/bin/env python3
"""SD 2.x inpainting references for the engine's golden tests
(crates/engine/tests/inpaint.rs, the `sd2_*` tests).

Run by developers, not by CI (it needs torch and diffusers), after
make_models.py has built tiny-sd2:

    .venv/bin/python tools/golden/inpaint_sd2.py

The SD 2.x counterpart of inpaint.py, with the same inputs (init image, one
mask per image, prompts with a negative prompt, guidance, 4 steps), the
same pipeline (diffusers' StableDiffusionInpaintPipeline) and the same
conventions. tiny-sd2 is v-prediction (its scheduler config says so), and
so is every run here. It writes, under crates/engine/tests/fixtures/:

- models/tiny-sd2-inpaint/unet/  a tiny random 9-channel SD 2.x inpainting
  UNet in f16 (tiny-sd2's architecture: linear projections, per-block
  heads; latents + mask + masked-image latents in, 4 channels out) at half
  tiny-sd2's width. Only the UNet is stored: the test assembles the model
  folder from a copy of tiny-sd2 (text encoder with exact GELU, tokenizer
  padding with `!`, VAE, v-prediction scheduler) with this UNet in place
  of its own.
- golden/inpaint-sd2.safetensors + golden/inpaint-sd2.json: outputs of
  StableDiffusionInpaintPipeline:
  * blend_*: tiny-sd2 (4-channel UNet, latent blending), strength 0.75 and
    1 with Euler, and 0.75 with DPM++ 2M;
  * cond_*: the 9-channel UNet, strength 0.75 and 1;
  * cond_white_s1: the 9-channel UNet with a white mask at strength 1, the
    reference for text-to-image on an SD 2.x inpainting UNet.
  Each run's random draws are recorded as in inpaint.py (`*_noise`,
  `*_image_eps`, `*_masked_eps`).
"""

import json
import shutil

import torch
from safetensors.torch import save_file

import diffusers
import transformers
from diffusers import (
    AutoencoderKL,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    StableDiffusionInpaintPipeline,
    UNet2DConditionModel,
)

from inpaint import SIDE, STRENGTHS, masks, run
from make_models import (
    GOLDEN,
    GUIDANCE,
    MODELS,
    NEGATIVE,
    PROMPTS,
    STEPS,
    randomize,
    save_component,
    write_json,
)

NAME = "inpaint-sd2"


def tiny_sd2_inpaint_unet():
    """tiny-sd2's UNet with 9 input channels and half its width."""
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
        attention_head_dim=(2, 4),
        use_linear_projection=True,
    )


def main():
    src = MODELS / "tiny-sd2"
    text = transformers.CLIPTextModel.from_pretrained(src / "text_encoder").eval()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(src / "tokenizer")
    vae = AutoencoderKL.from_pretrained(src / "vae").eval()
    unet4 = UNet2DConditionModel.from_pretrained(src / "unet").eval()
    sched_cfg = json.loads((src / "scheduler" / "scheduler_config.json").read_text())
    assert sched_cfg["prediction_type"] == "v_prediction", sched_cfg

    torch.manual_seed(0)
    # Stored in f16 (half the bytes); the reference runs the same rounded
    # weights in f32, as the engine does.
    unet9 = randomize(tiny_sd2_inpaint_unet(), 0.1).half().float().eval()
    out = MODELS / "tiny-sd2-inpaint"
    shutil.rmtree(out, ignore_errors=True)
    save_component(unet9, out / "unet", dtype=torch.float16)

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

    m = masks(SIDE)
    processed = pipe(unet4).mask_processor.preprocess(m, height=SIDE, width=SIDE)
    assert torch.equal(processed, m), "the mask processor changed a binary mask"

    ref = {"masks": m}
    for name, s in STRENGTHS.items():
        run(pipe(unet4), ref, f"blend_{name}", m, s, four_channel=True)
        run(pipe(unet9), ref, f"cond_{name}", m, s, four_channel=False)
    run(pipe(unet9), ref, "cond_white_s1", torch.ones_like(m), 1.0, four_channel=False)
    dpm = DPMSolverMultistepScheduler.from_config(sched_cfg)
    run(pipe(unet4, dpm), ref, "blend_dpmpp_2m_s075", m, 0.75, four_channel=True)

    ref = {k: v.contiguous() for k, v in ref.items()}
    GOLDEN.mkdir(parents=True, exist_ok=True)
    save_file(ref, GOLDEN / f"{NAME}.safetensors")
    write_json(
        GOLDEN / f"{NAME}.json",
        {
            "prompts": PROMPTS,
            "negative_prompt": NEGATIVE,
            "steps": STEPS,
            "guidance_scale": GUIDANCE,
            "size": SIDE,
            "strengths": STRENGTHS,
            "sampler": "euler",
            "prediction_type": sched_cfg["prediction_type"],
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
        for f in list(out.rglob("*")) + list(GOLDEN.glob(f"{NAME}.*"))
        if f.is_file()
    }
    print(sizes, f"total {sum(sizes.values()) / 1e3:.1f} kB")


if __name__ == "__main__":
    main()
