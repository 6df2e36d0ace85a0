#!/usr/bin/env python3
"""Builds tiny LoRAs for the tiny-sd1 fixture and diffusers' outputs with them.

Run by developers, not by CI (it needs torch, diffusers, transformers, peft),
after make_models.py has built models/tiny-sd1 and golden/tiny-sd1:

    .venv/bin/python tools/golden/lora.py

It writes, under crates/engine/tests/fixtures/:

- loras/tiny-sd1-peft.safetensors: a PEFT LoRA saved by diffusers'
  `save_lora_weights` (keys `unet.….lora_A.weight`, `text_encoder.…`),
  rank 4 with lora_alpha 8 (so its scale 2 is read from the
  `lora_adapter_metadata` diffusers writes), on the attention projections,
  the feed-forward, proj_in/proj_out (1x1 convolutions), a resnet's conv1
  (3x3, LoCon) and time_emb_proj, and on every text-encoder projection.
- loras/tiny-sd1-kohya.safetensors: a kohya/A1111 LoRA written here with
  kohya's key names (`lora_unet_…​.lora_down.weight`, `lora_te_…`), rank 2
  and alpha 3 per module (scale 1.5), on a different set of layers,
  including 3x3 and 1x1 convolutions.
- golden/tiny-sd1-lora.safetensors (+ .json): for `peft` at 0.8, `kohya` at
  0.8 and both (`peft` 0.8 + `kohya` 0.5), the text embeddings of the two
  golden prompts and one UNet call on the inputs of golden/tiny-sd1 (its
  `unet_x`, timestep and base text embeddings as context, so the UNet is
  checked apart from the text encoder).

The references come from diffusers' own loading (`load_lora_weights`, then
`set_adapters` with the weights, unfused). As a check that diffusers applied
every key (it skips what it cannot convert with only a warning), each
reference is also computed from a pipeline whose weights were merged here by
the formula W + w * alpha / rank * up @ down, and the two must agree.
"""

import copy
import json
import pathlib

import torch
from safetensors.torch import load_file, save_file

import diffusers
import peft
import transformers
import transformers.integrations.peft
from diffusers import StableDiffusionPipeline
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

# transformers 5.24 asks for peft >= 0.22, which is not published yet (0.21.2
# is the newest); its LoRA path works with 0.21 for the CLIP layers used
# here, and every reference is checked against the formula below anyway.
transformers.integrations.peft.check_peft_version = lambda min_version: None

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = ROOT / "crates/engine/tests/fixtures"
MODEL = FIX / "models/tiny-sd1"
LORAS = FIX / "loras"
GOLDEN = FIX / "golden"

PROMPTS = ["a red apple", "grinning face with big eyes"]
CASES = {
    "peft": [("peft", 0.8)],
    "kohya": [("kohya", 0.8)],
    "both": [("peft", 0.8), ("kohya", 0.5)],
}

PEFT_UNET_TARGETS = [
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "ff.net.0.proj",
    "ff.net.2",
    "proj_in",
    "proj_out",
    "down_blocks.0.resnets.0.conv1",
    "time_emb_proj",
]
PEFT_TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]

# (module, kind) for the kohya LoRA; kind: linear, conv1x1 or conv3x3.
KOHYA_UNET = [
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", "linear"),
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", "linear"),
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0", "linear"),
    ("mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj", "linear"),
    ("up_blocks.1.attentions.1.transformer_blocks.0.attn1.to_v", "linear"),
    ("up_blocks.1.attentions.0.proj_in", "conv1x1"),
    ("mid_block.attentions.0.proj_out", "conv1x1"),
    ("up_blocks.1.resnets.0.conv_shortcut", "conv1x1"),
    ("mid_block.resnets.1.conv2", "conv3x3"),
    ("up_blocks.0.resnets.1.conv1", "conv3x3"),
    ("down_blocks.1.resnets.0.time_emb_proj", "linear"),
]
KOHYA_TEXT = [
    "text_model.encoder.layers.0.self_attn.q_proj",
    "text_model.encoder.layers.0.self_attn.out_proj",
    "text_model.encoder.layers.1.mlp.fc1",
    "text_model.encoder.layers.1.self_attn.v_proj",
]
KOHYA_RANK, KOHYA_ALPHA = 2, 3.0
PEFT_RANK, PEFT_ALPHA = 4, 8.0


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def load_pipe():
    pipe = StableDiffusionPipeline.from_pretrained(
        MODEL, safety_checker=None, requires_safety_checker=False
    )
    pipe.unet.eval()
    pipe.text_encoder.eval()
    return pipe


def text_module(te, name):
    """A text-encoder module by its `text_model.`-prefixed path, whether or
    not this transformers version nests the model under `text_model`."""
    mods = dict(te.named_modules())
    return mods.get(name) or mods[name.removeprefix("text_model.")]


# ---------------------------------------------------------------- LoRAs


def make_peft(pipe):
    """A PEFT LoRA with random A and B, saved by diffusers."""
    g = torch.Generator().manual_seed(11)
    unet, te = copy.deepcopy(pipe.unet), copy.deepcopy(pipe.text_encoder)
    unet_cfg = LoraConfig(
        r=PEFT_RANK, lora_alpha=PEFT_ALPHA, target_modules=PEFT_UNET_TARGETS, init_lora_weights=False
    )
    text_cfg = LoraConfig(
        r=PEFT_RANK, lora_alpha=PEFT_ALPHA, target_modules=PEFT_TEXT_TARGETS, init_lora_weights=False
    )
    unet.add_adapter(unet_cfg)
    te.add_adapter(text_cfg)
    with torch.no_grad():
        for model in (unet, te):
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
    path = LORAS / "tiny-sd1-peft.safetensors"
    StableDiffusionPipeline.save_lora_weights(
        LORAS,
        unet_lora_layers=get_peft_model_state_dict(unet),
        text_encoder_lora_layers=get_peft_model_state_dict(te),
        weight_name=path.name,
        unet_lora_adapter_metadata=unet_cfg.to_dict(),
        text_encoder_lora_adapter_metadata=text_cfg.to_dict(),
    )
    return path


def make_kohya():
    """A kohya LoRA with kohya's key names, written directly."""
    g = torch.Generator().manual_seed(12)
    pipe = load_pipe()
    unet_mods = dict(pipe.unet.named_modules())
    sd = {}

    def add(prefix, module, weight_shape, kind):
        out, cin = weight_shape[0], weight_shape[1]
        r = KOHYA_RANK
        if kind == "linear":
            down, up = (r, cin), (out, r)
        elif kind == "conv1x1":
            down, up = (r, cin, 1, 1), (out, r, 1, 1)
        else:
            down, up = (r, cin, 3, 3), (out, r, 1, 1)
        key = prefix + module.replace(".", "_")
        sd[f"{key}.lora_down.weight"] = 0.15 * torch.randn(down, generator=g)
        sd[f"{key}.lora_up.weight"] = 0.15 * torch.randn(up, generator=g)
        sd[f"{key}.alpha"] = torch.tensor(KOHYA_ALPHA)

    for module, kind in KOHYA_UNET:
        add("lora_unet_", module, unet_mods[module].weight.shape, kind)
    for module in KOHYA_TEXT:
        add("lora_te_", module, text_module(pipe.text_encoder, module).weight.shape, "linear")
    path = LORAS / "tiny-sd1-kohya.safetensors"
    save_file(sd, path, metadata={"ss_network_module": "networks.lora"})
    return path


# ---------------------------------------------------------------- merging here


def manual_updates(path):
    """(component, module path, update) for every module of a LoRA file,
    update = alpha / rank * up @ down shaped like the weight."""
    sd = load_file(path)
    out = []
    if any(k.startswith("lora_") for k in sd):
        table = {
            "lora_unet_": ("unet", [m for m, _ in KOHYA_UNET]),
            "lora_te_": ("text_encoder", KOHYA_TEXT),
        }
        for prefix, (component, modules) in table.items():
            for m in modules:
                key = prefix + m.replace(".", "_")
                down, up = sd[f"{key}.lora_down.weight"], sd[f"{key}.lora_up.weight"]
                scale = float(sd[f"{key}.alpha"]) / down.shape[0]
                out.append((component, m, scale * product(up, down)))
    else:
        for key in sd:
            if not key.endswith(".lora_A.weight"):
                continue
            component, _, rest = key.partition(".")
            m = rest.removesuffix(".lora_A.weight")
            down, up = sd[key], sd[key.replace("lora_A", "lora_B")]
            out.append((component, m, PEFT_ALPHA / down.shape[0] * product(up, down)))
    return out


def product(up, down):
    """up @ down, the convolution (kxk then 1x1) as one kernel."""
    if down.dim() == 2:
        return up @ down
    r = down.shape[0]
    flat = up.reshape(up.shape[0], r) @ down.reshape(r, -1)
    return flat.reshape(up.shape[0], *down.shape[1:])


@torch.no_grad()
def merged_pipe(entries, paths):
    pipe = load_pipe()
    for name, weight in entries:
        for component, m, update in manual_updates(paths[name]):
            if component == "unet":
                module = dict(pipe.unet.named_modules())[m]
            else:
                module = text_module(pipe.text_encoder, m)
            module.weight += weight * update.reshape(module.weight.shape)
    return pipe


# ---------------------------------------------------------------- references


@torch.no_grad()
def outputs(pipe, base):
    ids = pipe.tokenizer(
        PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids
    emb = pipe.text_encoder(ids)[0].float()
    x, ctx = base["unet_x"], base["text_emb"][:2]
    unet = pipe.unet(x, torch.tensor(500.0), encoder_hidden_states=ctx).sample
    return emb, unet


def main():
    LORAS.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    paths = {"peft": make_peft(load_pipe()), "kohya": make_kohya()}
    base = load_file(GOLDEN / "tiny-sd1.safetensors")

    pipe = load_pipe()
    for name, path in paths.items():
        pipe.load_lora_weights(path, adapter_name=name)
    ref = {}
    for case, entries in CASES.items():
        pipe.set_adapters([n for n, _ in entries], adapter_weights=[w for _, w in entries])
        emb, unet = outputs(pipe, base)
        m_emb, m_unet = outputs(merged_pipe(entries, paths), base)
        for what, a, b in (("text", emb, m_emb), ("unet", unet, m_unet)):
            diff = (a - b).abs().max().item()
            assert diff < 2e-5, f"{case} {what}: diffusers and the formula differ by {diff}"
        base_emb, base_unet = base["text_emb"][:2], base["unet_out"]
        print(
            f"{case}: LoRA moves text by {(emb - base_emb).abs().max():.3f}, "
            f"UNet by {(unet - base_unet).abs().max():.3f}"
        )
        ref[f"{case}_text_emb"] = emb
        ref[f"{case}_unet_out"] = unet
    ref = {k: v.contiguous() for k, v in ref.items()}
    save_file(ref, GOLDEN / "tiny-sd1-lora.safetensors")
    write_json(
        GOLDEN / "tiny-sd1-lora.json",
        {
            "model": "tiny-sd1",
            "prompts": PROMPTS,
            "unet_timestep": 500.0,
            "unet_inputs": "golden/tiny-sd1.safetensors: unet_x, text_emb[:2]",
            "loras": {n: f"loras/{p.name}" for n, p in paths.items()},
            "cases": {c: [{"lora": n, "weight": w} for n, w in e] for c, e in CASES.items()},
            "versions": {
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "transformers": transformers.__version__,
                "peft": peft.__version__,
            },
        },
    )
    total = sum(f.stat().st_size for f in [*LORAS.iterdir(), GOLDEN / "tiny-sd1-lora.safetensors"])
    print(f"LoRA fixtures: {total / 1e3:.1f} kB")


if __name__ == "__main__":
    main()
