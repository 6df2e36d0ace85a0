#!/usr/bin/env python3
"""Builds the full-size Stable Diffusion 1.5 architecture with random weights.

For benchmarks only (`easel bench engine`, docs/performance.md): the shapes
and therefore the cost of SD 1.5 without downloading its weights. Everything
is built from config alone, with diffusers'/transformers' own default
initialisation (seeded), and saved in diffusers layout, f32 (about 4.3 GB):

    .venv/bin/python tools/bench/make_sd15_random.py [OUT]   # default .cache/sd15-random

Never put the output inside the repository.

- text_encoder/: CLIP ViT-L/14 text transformer (12 layers, width 768,
  quick GELU), 123 M parameters.
- tokenizer/: the real CLIP BPE (all 48,894 merges of open_clip's
  bpe_simple_vocab_16e6, 49,408 ids), built by tools/golden/make_models.py's
  `clip_tokenizer_files`, so token ids are those of real SD 1.5.
- unet/: UNet2DConditionModel with SD 1.5's config (320/640/1280/1280
  channels, 2 layers per block, 8 heads, cross-attention 768), 860 M.
- vae/: AutoencoderKL with SD 1.5's config (128/256/512/512), 84 M.
- scheduler/: SD 1.5's PNDM scheduler config.
"""

import pathlib
import sys

import torch
import diffusers
import transformers
from diffusers import AutoencoderKL, UNet2DConditionModel

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "golden"))
from make_models import clip_tokenizer_files, write_json  # noqa: E402

# runwayml/stable-diffusion-v1-5 unet/config.json, vae/config.json,
# text_encoder/config.json and scheduler/scheduler_config.json, key for key
# where they affect the architecture.
UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    block_out_channels=[320, 640, 1280, 1280],
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
)
VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512],
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)
SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": diffusers.__version__,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/sd15-random")
    repo = pathlib.Path(__file__).resolve().parents[2]
    if out.resolve().is_relative_to(repo):
        sys.exit(f"{out} is inside the repository; write the model elsewhere")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    vocab_size = clip_tokenizer_files(out / "tokenizer", 49152 - 256 - 2, "<|endoftext|>")
    assert vocab_size == 49408, vocab_size
    tcfg = transformers.CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=768,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=1,
    )
    for name, build in [
        ("text_encoder", lambda: transformers.CLIPTextModel(tcfg)),
        ("unet", lambda: UNet2DConditionModel(**UNET)),
        ("vae", lambda: AutoencoderKL(**VAE)),
    ]:
        model = build().eval()
        params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {params / 1e6:.1f} M parameters", flush=True)
        model.save_pretrained(out / name, safe_serialization=True)
        del model
    write_json(out / "scheduler" / "scheduler_config.json", SCHEDULER)
    write_json(
        out / "model_index.json",
        {
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": diffusers.__version__,
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "scheduler": ["diffusers", "PNDMScheduler"],
            "safety_checker": [None, None],
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
