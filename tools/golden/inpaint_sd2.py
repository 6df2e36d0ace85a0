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

import transformers
from diffusers import (
    AutoencoderKL,
    UNet2DConditionModel,
)

from inpaint import SIDE, save_references, sd_pipe_builder, standard_cases
from make_models import MODELS, randomize, save_component

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

    pipe = sd_pipe_builder(vae, text, tokenizer, sched_cfg)

    ref = standard_cases(pipe, unet4, unet9, sched_cfg, SIDE)
    save_references(ref, NAME, out, SIDE, {"prediction_type": sched_cfg["prediction_type"]})


if __name__ == "__main__":
    main()
