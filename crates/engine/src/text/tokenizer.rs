//! Prompt tokenisation to a fixed length.
//!
//! A diffusers `tokenizer/` folder holds either a `tokenizer.json` (the
//! bundled MiniLM model) or CLIP's `vocab.json` + `merges.txt` (Stable
//! Diffusion folders). For the latter we build the same fast tokenizer that
//! transformers' `convert_slow_tokenizer.CLIPConverter` builds
//! (<https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/convert_slow_tokenizer.py#L1072>):
//! NFC, whitespace runs to one space, lowercase; CLIP's split regex; byte-level
//! mapping; BPE with an `</w>` end-of-word suffix; `<|startoftext|> … <|endoftext|>`.
//!
//! Every prompt becomes exactly `max_len` ids (`model_max_length` from
//! `tokenizer_config.json`): truncated with a warning, as diffusers does,
//! then padded with the pad token. The attention mask marks real tokens.

use std::path::Path;

use serde_json::{Value, json};
use tokenizers::Tokenizer;

use super::chunks::Specials;
use crate::error::{EngineError, Result};
use crate::loader::read_json;

/// CLIP's pre-tokenisation pattern, as in the reference `SimpleTokenizer`.
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// Token ids of a batch of prompts, all of the same length.
#[derive(Debug, Clone)]
pub(crate) struct TokenBatch {
    /// `ids[i]` has exactly `max_len` entries.
    pub ids: Vec<Vec<u32>>,
    /// 1 for real tokens, 0 for padding; same shape as `ids`.
    pub mask: Vec<Vec<u32>>,
    /// Per prompt, a warning when it was truncated.
    pub warnings: Vec<Option<String>>,
}

/// One prompt's fixed-length tokens with per-token weights.
#[derive(Debug, Clone)]
pub(crate) struct WeightedTokens {
    /// Exactly `max_len` ids.
    pub ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub mask: Vec<u32>,
    /// Each token's weight (1 on specials and padding).
    pub weights: Vec<f32>,
    /// The truncation warning, if any.
    pub warning: Option<String>,
}

/// A tokenizer that pads and truncates to one fixed length.
pub(crate) struct PromptTokenizer {
    inner: Tokenizer,
    max_len: usize,
    pad_id: u32,
}

impl PromptTokenizer {
    /// Loads `dir` (a `tokenizer/` folder). `position_limit` is the text
    /// encoder's number of positions, which caps `model_max_length` (some
    /// configs store a huge sentinel meaning "no limit").
    pub(crate) fn load(dir: &Path, position_limit: usize) -> Result<Self> {
        let config_path = dir.join("tokenizer_config.json");
        let config: Value = if config_path.is_file() {
            read_json(&config_path)?
        } else {
            Value::Null
        };
        let json_path = dir.join("tokenizer.json");
        let mut inner = if json_path.is_file() {
            Tokenizer::from_file(&json_path).map_err(|e| EngineError::InvalidConfig {
                path: json_path.clone(),
                detail: e.to_string(),
            })?
        } else {
            clip_from_vocab(dir)?
        };
        // MiniLM's tokenizer.json pads every input to 128; we pad ourselves.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let max_len = config
            .get("model_max_length")
            .and_then(Value::as_f64)
            .filter(|&v| v >= 2.0 && v <= position_limit as f64)
            .map(|v| v as usize)
            .unwrap_or(position_limit);
        let pad_token = token_name(config.get("pad_token"))
            .or_else(|| {
                let map: Value = read_json(&dir.join("special_tokens_map.json")).ok()?;
                token_name(map.get("pad_token"))
            })
            .or_else(|| inner.get_padding().map(|p| p.pad_token.clone()));
        let pad_id = pad_token
            .as_deref()
            .and_then(|t| inner.token_to_id(t))
            .or_else(|| inner.token_to_id("<|endoftext|>"))
            .or_else(|| inner.token_to_id("[PAD]"))
            .unwrap_or(0);
        Ok(Self {
            inner,
            max_len,
            pad_id,
        })
    }

    /// Id of a token, if in the vocabulary.
    pub(crate) fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The fixed sequence length.
    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }

    /// Tokenises, truncates (with a warning) and pads every prompt.
    pub(crate) fn encode(&self, prompts: &[&str]) -> Result<TokenBatch> {
        let mut out = TokenBatch {
            ids: Vec::with_capacity(prompts.len()),
            mask: Vec::with_capacity(prompts.len()),
            warnings: Vec::new(),
        };
        for prompt in prompts {
            let one = self.encode_weighted(&[(*prompt, 1.0)])?;
            out.ids.push(one.ids);
            out.mask.push(one.mask);
            out.warnings.push(one.warning);
        }
        Ok(out)
    }

    /// Token ids of `text` without special tokens (one span of a weighted
    /// prompt).
    pub(crate) fn span_ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Tokenises spans each on its own, joins them, truncates (with a
    /// warning), adds the special tokens and pads to `max_len`, each token
    /// carrying its span's weight (1 on specials and padding). One span is
    /// exactly [`Self::encode`]'s tokenisation of it.
    pub(crate) fn encode_weighted(&self, spans: &[(&str, f32)]) -> Result<WeightedTokens> {
        let tk = |e: tokenizers::Error| EngineError::Tokenizer(e.to_string());
        let n_special = self.inner.get_post_processor().map_or(0, |p| {
            use tokenizers::PostProcessor;
            p.added_tokens(false)
        });
        let room = self.max_len.saturating_sub(n_special);
        let mut encodings = Vec::with_capacity(spans.len());
        let mut weights = Vec::new();
        for (text, weight) in spans {
            let enc = self.inner.encode(*text, false).map_err(tk)?;
            weights.extend(std::iter::repeat_n(*weight, enc.len()));
            encodings.push(enc);
        }
        let mut enc = if encodings.len() == 1 {
            encodings.pop().expect("one encoding")
        } else {
            tokenizers::Encoding::merge(encodings, false)
        };
        let mut warning = None;
        if enc.len() > room {
            warning = Some(format!(
                "prompt truncated to the model's {} tokens ({} tokens were dropped)",
                self.max_len,
                enc.len() - room
            ));
            enc.truncate(room, 0, tokenizers::TruncationDirection::Right);
            weights.truncate(room);
        }
        let enc = self.inner.post_process(enc, None, true).map_err(tk)?;
        let mut ids = enc.get_ids().to_vec();
        let mut prompt_weights = weights.into_iter();
        let mut weights: Vec<f32> = enc
            .get_special_tokens_mask()
            .iter()
            .map(|&special| match special {
                0 => prompt_weights.next().unwrap_or(1.0),
                _ => 1.0,
            })
            .collect();
        ids.truncate(self.max_len);
        weights.truncate(self.max_len);
        let mut mask = vec![1u32; ids.len()];
        ids.resize(self.max_len, self.pad_id);
        mask.resize(self.max_len, 0);
        weights.resize(self.max_len, 1.0);
        Ok(WeightedTokens {
            ids,
            mask,
            weights,
            warning,
        })
    }

    /// The ids a CLIP prompt is chunked with ([`super::chunks`]); `None`
    /// when the vocabulary lacks CLIP's start or end token.
    pub(crate) fn clip_specials(&self) -> Option<Specials> {
        Some(Specials {
            bos: self.token_id("<|startoftext|>")?,
            eos: self.token_id("<|endoftext|>")?,
            pad: self.pad_id,
            comma: self.token_id(",</w>"),
            chunk_len: self.max_len.checked_sub(2)?,
        })
    }
}

/// A special-token entry is either a string or `{"content": "..."}`.
fn token_name(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Builds CLIP's fast tokenizer from `vocab.json` and `merges.txt`.
fn clip_from_vocab(dir: &Path) -> Result<Tokenizer> {
    let vocab_path = dir.join("vocab.json");
    let merges_path = dir.join("merges.txt");
    let vocab: Value = read_json(&vocab_path)?;
    let merges_text =
        std::fs::read_to_string(&merges_path).map_err(|_| EngineError::MissingFile {
            path: merges_path.clone(),
        })?;
    let merges: Vec<&str> = merges_text
        .lines()
        .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
        .collect();
    let id = |t: &str| {
        vocab
            .get(t)
            .and_then(Value::as_u64)
            .ok_or_else(|| EngineError::InvalidConfig {
                path: vocab_path.clone(),
                detail: format!("CLIP vocabulary lacks the special token {t}"),
            })
    };
    let (bos, eos) = (id("<|startoftext|>")?, id("<|endoftext|>")?);
    let spec = json!({
        "version": "1.0",
        "added_tokens": [
            {"id": bos, "content": "<|startoftext|>", "single_word": false, "lstrip": false,
             "rstrip": false, "normalized": true, "special": true},
            {"id": eos, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
             "rstrip": false, "normalized": true, "special": true}
        ],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}
        ]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": CLIP_PATTERN}, "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]},
        "post_processor": {"type": "RobertaProcessing",
            "sep": ["<|endoftext|>", eos], "cls": ["<|startoftext|>", bos],
            "trim_offsets": false, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<|endoftext|>",
            "continuing_subword_prefix": "", "end_of_word_suffix": "</w>",
            "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": merges}
    });
    let bytes = serde_json::to_vec(&spec).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    Tokenizer::from_bytes(bytes).map_err(|e| EngineError::InvalidConfig {
        path: merges_path,
        detail: format!("cannot build the CLIP tokenizer: {e}"),
    })
}
