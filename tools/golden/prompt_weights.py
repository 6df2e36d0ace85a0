#!/usr/bin/env python3
"""Reference for AUTOMATIC1111-style prompt weights, BREAK, 75-token chunks
and clip skip, on the tiny fixture models.

Run by developers, not by CI (it needs torch and transformers):

    .venv/bin/python tools/golden/prompt_weights.py

Written from A1111's documented behaviour (wiki "Features": attention /
emphasis, BREAK, infinite prompt length, clip skip), not from its code:

- parsing: `(x)` ×1.1, `[x]` ×1/1.1, `(x:w)` ×w, nesting multiplies, `\\(`
  `\\)` `\\[` `\\]` `\\\\` literal, a lone backslash dropped, unmatched closers
  literal, unclosed openers apply to the rest, `BREAK` (whole upper-case
  word, surrounding whitespace dropped) a chunk break even inside brackets
  (the engine's one documented deviation), equal neighbours merged;
- chunking: 75 tokens per chunk plus start/end, the comma backtrack of 20
  tokens, BREAK closes the chunk, padding with the end token then the pad
  token after the first end token;
- encoding: each chunk through transformers' CLIPTextModel, SD 1.x at the
  last layer (or `final_layer_norm(hidden_states[-clip_skip])`), SDXL at
  `hidden_states[-2]` of both encoders with the second's pooled output of
  the first chunk; every token's state times its weight, then the chunk
  rescaled to its unweighted mean; chunks concatenated along the sequence,
  prompts of one batch padded with the empty prompt's chunk.

Writes crates/engine/tests/fixtures/golden/prompt-weights.safetensors (the
conditioning tensors) and prompt-weights.json (the parse results, the
cases and the versions); `crates/engine/tests/prompt_weights.rs` compares.
"""

import json
import pathlib
import re

import torch
import transformers
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = ROOT / "crates/engine/tests/fixtures"
OUT = FIX / "golden"

CHUNK = 75
BACKTRACK = 20

# One token of the grammar, in priority order: escape, lone backslash,
# openers, a weight close, closers, a text run, a lone colon.
GRAMMAR = re.compile(
    r"\\[()\[\]\\]"
    r"|\\"
    r"|[(\[]"
    r"|:\s*([+-]?[.\d]+)\s*\)"
    r"|[)\]]"
    r"|[^\\()\[\]:]+"
    r"|:"
)
BREAK_WORD = re.compile(r"\s*\bBREAK\b\s*")


def parse(prompt):
    """[[text, weight], ...] with None for a break."""
    parts = []
    stacks = {"(": [], "[": []}
    factor = {"(": 1.1, "[": 1 / 1.1}

    def scale(start, k):
        for p in parts[start:]:
            if p is not None:
                p[1] *= k

    for m in GRAMMAR.finditer(prompt):
        tok, number = m.group(0), m.group(1)
        if tok.startswith("\\"):
            parts.append([tok[1:], 1.0])
        elif tok in ("(", "["):
            stacks[tok].append(len(parts))
        elif number is not None and stacks["("]:
            scale(stacks["("].pop(), float(number))
        elif tok == ")" and stacks["("]:
            scale(stacks["("].pop(), factor["("])
        elif tok == "]" and stacks["["]:
            scale(stacks["["].pop(), factor["["])
        else:
            for i, piece in enumerate(BREAK_WORD.split(tok)):
                if i:
                    parts.append(None)
                parts.append([piece, 1.0])
    for opener in ("(", "["):
        for start in stacks[opener]:
            scale(start, factor[opener])
    if not parts:
        parts = [["", 1.0]]
    merged = []
    for p in parts:
        if p is not None and merged and merged[-1] is not None and merged[-1][1] == p[1]:
            merged[-1][0] += p[0]
        else:
            merged.append(p)
    return merged


def chunks_of(parts, tokenizer):
    """[(ids, weights)], each 77 long."""
    vocab = tokenizer.get_vocab()
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    pad = vocab[tokenizer.pad_token]
    comma = vocab.get(",</w>")
    done, cur = [], []
    state = {"comma": None}

    def close():
        n = CHUNK - len(cur)
        ids = [bos] + [t for t, _ in cur] + [eos] + [pad] * n
        ws = [1.0] + [w for _, w in cur] + [1.0] * (n + 1)
        done.append((ids, ws))
        cur.clear()
        state["comma"] = None

    for part in parts:
        if part is None:
            close()
            continue
        text, weight = part
        for t in tokenizer(text, add_special_tokens=False)["input_ids"]:
            if t == comma:
                state["comma"] = len(cur)
            elif len(cur) == CHUNK and state["comma"] is not None and CHUNK - state["comma"] <= BACKTRACK:
                moved = cur[state["comma"] + 1 :]
                del cur[state["comma"] + 1 :]
                close()
                cur.extend(moved)
            if len(cur) == CHUNK:
                close()
            cur.append((t, weight))
    if cur or not done:
        close()
    return done


def encode(model, tokenizer, prompts, layer, count=None):
    """[B, 77*k, D] and the pooled output of the first chunks (or None).
    layer: ("last", clip_skip) or ("penultimate",)."""
    per_prompt = [chunks_of(parse(p), tokenizer) for p in prompts]
    k = count or max(len(c) for c in per_prompt)
    empty = chunks_of([["", 1.0]], tokenizer)[0]
    rows = [c[i] if i < len(c) else empty for c in per_prompt for i in range(k)]
    ids = torch.tensor([r[0] for r in rows])
    w = torch.tensor([r[1] for r in rows], dtype=torch.float32)
    out = model(input_ids=ids, output_hidden_states=True)
    if layer[0] == "penultimate":
        z = out.hidden_states[-2]
    elif layer[1] == 1:
        z = out.last_hidden_state
    else:
        # transformers 5 flattens CLIPTextModel (no `text_model`).
        z = model.final_layer_norm(out.hidden_states[-layer[1]])
    before = z.mean(dim=(1, 2), keepdim=True)
    z = z * w[:, :, None]
    after = z.mean(dim=(1, 2), keepdim=True)
    z = z * (before / after)
    z = z.reshape(len(prompts), k * ids.shape[1], -1)
    pooled = getattr(out, "text_embeds", None)
    if pooled is not None:
        pooled = pooled.reshape(len(prompts), k, -1)[:, 0]
    return z, pooled


def chunk_count(prompts, tokenizers):
    return max(len(chunks_of(parse(p), t)) for p in prompts for t in tokenizers)


LONG = "a red apple, the sun in the sky, " * 8
CASES = {
    "plain": "a red apple",
    "weighted": "a (red:1.5) apple, [green] tree",
    "nested": "((a red apple)) on [[the (hill:0.5)]]",
    "escaped": "a \\(red\\) apple (blue:.8) \\[water\\] \\\\",
    "break": "a red apple BREAK (blue: 1.2 ) water",
    "long": LONG,
    "long_weighted": "(" + LONG + ":1.3) [big dog] BREAK a (house:0.7)",
    "empty": "",
}
SKIP2 = ["plain", "weighted"]
SD1_BATCH = ["a (red) apple", LONG]
SDXL_CASES = ["weighted", "long_weighted"]
# Parse-only cases: the grammar's corners.
PARSE_ONLY = [
    "an (important) word",
    "(unbalanced",
    "\\(literal\\]",
    "(unnecessary)(parens)",
    "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
    "((a))",
    "[[a]]",
    "((a:1.5))",
    "[(a:2)]",
    "(a [b] c)",
    "(a:.5)",
    "(a: 1.2 )",
    "(a:-1)",
    "(a:+2.)",
    "(a:1.5 b)",
    "(a:1e3)",
    "a:1.5)",
    "[a:1.5)",
    "[a:1.5]",
    "time: 10:30",
    "a ) b ]",
    "a (b",
    "[a (b",
    "((a) b",
    "a\\b",
    "a\\\\b",
    "a\\",
    "a BREAK b",
    "BREAK",
    "a BREAK BREAK b",
    "a,BREAK,b",
    "aBREAK b BREAKS",
    "a break b",
    "(a BREAK b)",
    "(a)(b) (c)",
    "a (b:1) c",
    "()",
    "",
]


def parts_json(parts):
    return ["BREAK" if p is None else [p[0], p[1]] for p in parts]


def main():
    tensors, cases = {}, []
    sd1 = FIX / "models/tiny-sd1"
    tok = transformers.CLIPTokenizer.from_pretrained(sd1 / "tokenizer")
    text = transformers.CLIPTextModel.from_pretrained(sd1 / "text_encoder").eval()
    xl = FIX / "models/tiny-sdxl"
    tok1 = transformers.CLIPTokenizer.from_pretrained(xl / "tokenizer")
    tok2 = transformers.CLIPTokenizer.from_pretrained(xl / "tokenizer_2")
    text1 = transformers.CLIPTextModel.from_pretrained(xl / "text_encoder").eval()
    text2 = transformers.CLIPTextModelWithProjection.from_pretrained(xl / "text_encoder_2").eval()
    with torch.no_grad():
        for name, prompt in CASES.items():
            tensors[f"sd1.{name}"], _ = encode(text, tok, [prompt], ("last", 1))
            if name in SKIP2:
                tensors[f"sd1.{name}.skip2"], _ = encode(text, tok, [prompt], ("last", 2))
        tensors["sd1.batch"], _ = encode(text, tok, SD1_BATCH, ("last", 1))
        for name in SDXL_CASES:
            prompts = [CASES[name]]
            k = chunk_count(prompts, [tok1, tok2])
            a, _ = encode(text1, tok1, prompts, ("penultimate",), k)
            b, pooled = encode(text2, tok2, prompts, ("penultimate",), k)
            tensors[f"sdxl.{name}"] = torch.cat([a, b], dim=2)
            tensors[f"sdxl.{name}.pooled"] = pooled
    for name, prompt in CASES.items():
        cases.append({"name": name, "prompt": prompt, "parts": parts_json(parse(prompt))})
    parse_only = [{"prompt": p, "parts": parts_json(parse(p))} for p in PARSE_ONLY]
    tensors = {k: v.float().contiguous() for k, v in tensors.items()}
    save_file(tensors, OUT / "prompt-weights.safetensors")
    meta = {
        "cases": cases,
        "skip2": SKIP2,
        "sd1_batch": SD1_BATCH,
        "sdxl_cases": SDXL_CASES,
        "parse_only": parse_only,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    (OUT / "prompt-weights.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    size = sum(v.numel() * 4 for v in tensors.values())
    print(f"{len(tensors)} tensors, {size} bytes")


if __name__ == "__main__":
    main()
