#!/usr/bin/env python3
"""SDXL inpainting references for the engine's golden tests
(crates/engine/tests/inpaint.rs, the `sdxl_*` tests).

Run by developers, not by CI (it needs torch and diffusers), after
make_models.py has built tiny-sdxl:

    .venv/bin/python tools/golden/inpaint_sdxl.py

The SDXL counterpart of inpaint.py, with the same inputs (init image, one
mask per image, prompts with a negative prompt, guidance, 4 steps) and the
same conventions. It writes, under crates/engine/tests/fixtures/:

- models/tiny-sdxl-inpaint/unet/  a tiny random 9-channel SDXL inpainting
  UNet in f16 (tiny-sdxl's architecture: `text_time` added conditioning,
  per-block transformer depth, 64-wide context; latents + mask +
  masked-image latents in, 4 channels out). Only the UNet is stored: the
  test assembles the model folder from a copy of tiny-sdxl (two text
  encoders and tokenizers, VAE, scheduler) with this UNet in place of its
  own.
- golden/inpaint-sdxl.safetensors + golden/inpaint-sdxl.json: outputs of
  diffusers' StableDiffusionXLInpaintPipeline (`requires_aesthetics_score`
  off, as SDXL base and its inpainting model ship; time ids from the
  requested size):
  * blend_*: tiny-sdxl (4-channel UNet, latent blending), strength 0.75 and
    1 with Euler, and 0.75 with DPM++ 2M (a variance-preserving scheduler);
  * cond_*: the 9-channel UNet, strength 0.75 and 1;
  * cond_white_s1: the 9-channel UNet with a white mask at strength 1, the
    reference for text-to-image on an SDXL inpainting UNet.
  Each run's random draws are recorded as in inpaint.py (`*_noise`,
  `*_image_eps`, `*_masked_eps`).
"""

import json
import shutil

import torch

import diffusers
import transformers
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionXLInpaintPipeline,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion_xl import (
    pipeline_stable_diffusion_xl_inpaint as inpaint_module,
)

from inpaint import SIDE, save_references, standard_cases
from make_models import MODELS, randomize, save_component

NAME = "inpaint-sdxl"

# The pipeline moves the VAE to f32 around every encode (`force_upcast`, a
# no-op here, all in f32) and diffusers warns each time.
diffusers.utils.logging.set_verbosity_error()


def tiny_sdxl_inpaint_unet():
    """tiny-sdxl's UNet with 9 input channels and half its width."""
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=9,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        norm_num_groups=4,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8,
    )


def main():
    src = MODELS / "tiny-sdxl"
    text = transformers.CLIPTextModel.from_pretrained(src / "text_encoder").eval()
    text2 = transformers.CLIPTextModelWithProjection.from_pretrained(src / "text_encoder_2").eval()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(src / "tokenizer")
    tokenizer2 = transformers.CLIPTokenizer.from_pretrained(src / "tokenizer_2")
    vae = AutoencoderKL.from_pretrained(src / "vae").eval()
    unet4 = UNet2DConditionModel.from_pretrained(src / "unet").eval()
    sched_cfg = json.loads((src / "scheduler" / "scheduler_config.json").read_text())
    index = json.loads((src / "model_index.json").read_text())

    torch.manual_seed(0)
    # Stored in f16 (half the bytes); the reference runs the same rounded
    # weights in f32, as the engine does.
    unet9 = randomize(tiny_sdxl_inpaint_unet(), 0.1).half().float().eval()
    out = MODELS / "tiny-sdxl-inpaint"
    shutil.rmtree(out, ignore_errors=True)
    save_component(unet9, out / "unet", dtype=torch.float16)

    def pipe(unet, scheduler=None):
        p = StableDiffusionXLInpaintPipeline(
            vae=vae,
            text_encoder=text,
            text_encoder_2=text2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer2,
            unet=unet,
            scheduler=scheduler or EulerDiscreteScheduler.from_config(sched_cfg),
            requires_aesthetics_score=False,
            force_zeros_for_empty_prompt=index["force_zeros_for_empty_prompt"],
        )
        p.set_progress_bar_config(disable=True)
        return p

    ref = standard_cases(pipe, unet4, unet9, sched_cfg, SIDE, pipeline_module=inpaint_module)
    save_references(ref, NAME, out, SIDE)


if __name__ == "__main__":
    main()
