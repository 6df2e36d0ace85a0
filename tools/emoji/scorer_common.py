"""The easel-emoji quality scorer, shared by train_scorer.py, export_scorer.py
and scorer_golden.py (and mirrored in Rust by crates/engine/src/score/).

The scorer is this domain's CLIP score: an image encoder and a text encoder
that map into one 384-wide space, where the cosine similarity of an image and
a caption says how well the image shows the caption.

Text side (frozen, no weights of its own): the bundled model's MiniLM
(``text_encoder/`` + ``tokenizer/``), run exactly as for conditioning (32
tokens, attention mask on real tokens, ``token_type_ids`` = 0), then the
sentence-transformers pooling of all-MiniLM-L6-v2: the MEAN of
``last_hidden_state`` over the positions whose attention mask is 1 ([CLS] and
[SEP] included, padding excluded), then L2-normalised.

Image side (trained here): 32x32 RGB in [-1, 1] (``x = rgb / 127.5 - 1``) ->
six 3x3 convolutions (padding 1, strides 1, 2, 1, 2, 1, 2; channels 32, 64,
64, 128, 128, 256), each followed by GroupNorm(8 groups, eps 1e-5) and SiLU
-> mean over the 4x4 positions -> Linear(256, 384) -> L2-normalised.

Score = cosine similarity of the two normalised embeddings, in [-1, 1].
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

EMBED_DIM = 384
IMAGE_SIZE = 32
CHANNELS = (32, 64, 64, 128, 128, 256)
STRIDES = (1, 2, 1, 2, 1, 2)
GROUPS = 8
GN_EPS = 1e-5

CONFIG = {
    "architecture": "EaselEmojiScorer",
    "image_size": IMAGE_SIZE,
    "channels": list(CHANNELS),
    "strides": list(STRIDES),
    "norm_groups": GROUPS,
    "norm_eps": GN_EPS,
    "embed_dim": EMBED_DIM,
    "text_encoder": "../text_encoder",
    "tokenizer": "../tokenizer",
    "text_pooling": "masked_mean_l2",
}


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.norm = nn.GroupNorm(GROUPS, cout, eps=GN_EPS)

    def forward(self, x):
        return F.silu(self.norm(self.conv(x)))


class ImageEncoder(nn.Module):
    """[B, 3, 32, 32] in [-1, 1] -> [B, 384] L2-normalised."""

    def __init__(self):
        super().__init__()
        blocks, cin = [], 3
        for c, s in zip(CHANNELS, STRIDES):
            blocks.append(Block(cin, c, s))
            cin = c
        self.blocks = nn.ModuleList(blocks)
        self.proj = nn.Linear(cin, EMBED_DIM)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        x = x.mean(dim=(2, 3))
        return F.normalize(self.proj(x), dim=-1)


def pool_text(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of [B, L, H] over positions with mask 1, then L2-normalised."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    return F.normalize(mean, dim=-1)


@torch.no_grad()
def embed_texts(text_encoder, texts, batch: int = 128) -> torch.Tensor:
    """common.TextEncoder + captions -> [N, 384] normalised sentence embeddings."""
    out = []
    texts = list(texts)
    for i in range(0, len(texts), batch):
        ids, mask = text_encoder.ids(texts[i : i + batch])
        h = text_encoder.bert(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
        out.append(pool_text(h, mask))
    return torch.cat(out)


def to_input(rgb_uint8: torch.Tensor) -> torch.Tensor:
    """[B, H, W, 3] uint8 -> [B, 3, H, W] float in [-1, 1]."""
    return rgb_uint8.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
