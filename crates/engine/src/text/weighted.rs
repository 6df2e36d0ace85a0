//! Weighted, chunked prompt encoding: AUTOMATIC1111's "emphasis"
//! (`sd_hijack_clip.py`'s `process_tokens` with `EmphasisOriginal`,
//! described at
//! <https://github.com/AUTOMATIC1111/stable-diffusion-webui/wiki/Features#attentionemphasis>).
//!
//! A parsed prompt ([`easel_core::PromptPart`]s) is tokenised span by span:
//!
//! - CLIP: into 75-token chunks ([`super::chunks`]), each encoded on its own
//!   as 77 tokens; the chunks' hidden states are concatenated along the
//!   sequence (`[B, 77·k, D]`). Rows of one batch are padded to the same
//!   chunk count with the empty prompt's chunk, as A1111's "pad prompt and
//!   negative prompt to the same length" option does (A1111's default
//!   instead runs the two in separate UNet calls; one doubled batch needs
//!   one length). More than [`MAX_CHUNKS`] chunks are cut with a warning.
//! - BERT (the bundled model): one sequence of its fixed length (32),
//!   truncated with a warning as before; `BREAK` is a space.
//!
//! Each token's hidden state is multiplied by its weight, then the whole
//! chunk (`[77, D]`, one prompt's one chunk: A1111 encodes each prompt on
//! its own) is rescaled so its mean is what it was before weighting:
//! `z·w · mean(z)/mean(z·w)`. A chunk whose weights are all 1 is left
//! exactly as encoded, so a prompt without syntax that fits one chunk gives
//! the plain encoding bit for bit. Where `mean(z·w)` is 0 the rescale
//! would divide by zero; the weighted states are then kept unscaled (A1111
//! would produce NaN).

use candle_core::Tensor;
use easel_core::PromptPart;

use super::chunks::{Chunk, MAX_CHUNKS, Piece};
use super::{Network, TextEncoder};
use crate::error::{EngineError, Result};

/// One prompt's chunks and its truncation warning.
#[derive(Debug, Clone)]
pub(crate) struct Tokenized {
    /// At least one chunk; exactly one for BERT.
    pub chunks: Vec<Chunk>,
    /// Set when tokens were dropped.
    pub warning: Option<String>,
}

/// Which hidden states a CLIP encoder gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    /// The final layer norm of the last layer run (SD 1.x/2.x), with this
    /// clip skip (1 = every layer).
    Last {
        /// A1111's clip skip, at least 1.
        clip_skip: usize,
    },
    /// The states entering the last layer, no final norm (SDXL).
    Penultimate,
}

/// Weighted embeddings of a batch.
pub(crate) struct WeightedEmbeddings {
    /// `[B, L·k, D]`: `k` chunks of the encoder's length `L` side by side.
    pub hidden: Tensor,
    /// CLIP with projection: the pooled embedding of each prompt's first
    /// chunk, `[B, P]` (A1111 takes it there, before weighting).
    pub pooled: Option<Tensor>,
}

impl TextEncoder {
    /// Tokenises one parsed prompt (see the module docs).
    pub(crate) fn tokenize_parts(&self, parts: &[PromptPart]) -> Result<Tokenized> {
        match &self.network {
            Network::Clip(_) => {
                let specials = self.tokenizer.clip_specials().ok_or_else(|| {
                    EngineError::Tokenizer(
                        "the CLIP tokenizer lacks <|startoftext|> or <|endoftext|>".into(),
                    )
                })?;
                let pieces = parts
                    .iter()
                    .map(|p| match p {
                        PromptPart::Text(s) => {
                            Ok(Piece::Span(self.tokenizer.span_ids(&s.text)?, s.weight))
                        }
                        PromptPart::Break => Ok(Piece::Break),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mut chunks = specials.split(&pieces);
                let mut warning = None;
                if chunks.len() > MAX_CHUNKS {
                    let dropped: u32 = chunks[MAX_CHUNKS..]
                        .iter()
                        .map(|c| c.mask.iter().sum::<u32>() - 2)
                        .sum();
                    warning = Some(format!(
                        "prompt truncated to {MAX_CHUNKS} chunks of {} tokens ({} chunks, \
                         {dropped} tokens were dropped)",
                        specials.chunk_len,
                        chunks.len() - MAX_CHUNKS
                    ));
                    chunks.truncate(MAX_CHUNKS);
                }
                Ok(Tokenized { chunks, warning })
            }
            Network::Bert(_) => {
                let spans: Vec<(&str, f32)> = parts
                    .iter()
                    .map(|p| match p {
                        PromptPart::Text(s) => (s.text.as_str(), s.weight),
                        PromptPart::Break => (" ", 1.0),
                    })
                    .collect();
                let t = self.tokenizer.encode_weighted(&spans)?;
                Ok(Tokenized {
                    chunks: vec![Chunk {
                        ids: t.ids,
                        weights: t.weights,
                        mask: t.mask,
                    }],
                    warning: t.warning,
                })
            }
        }
    }

    /// Encodes tokenised prompts, each padded to `count` chunks with the
    /// empty prompt's chunk, in one encoder call of `B·count` rows.
    pub(crate) fn encode_tokenized(
        &self,
        prompts: &[Tokenized],
        count: usize,
        layer: Layer,
    ) -> Result<WeightedEmbeddings> {
        let (b, l) = (prompts.len(), self.tokenizer.max_len());
        let empty = match &self.network {
            Network::Clip(_) => self.tokenizer.clip_specials().map(|s| s.empty()),
            Network::Bert(_) => None,
        };
        let mut rows: Vec<&Chunk> = Vec::with_capacity(b * count);
        for p in prompts {
            for c in 0..count {
                match p.chunks.get(c).or(empty.as_ref()) {
                    Some(chunk) => rows.push(chunk),
                    None => {
                        return Err(EngineError::Tokenizer(
                            "a BERT prompt is one sequence; it cannot be padded to more".into(),
                        ));
                    }
                }
            }
        }
        let n = rows.len();
        let ids: Vec<u32> = rows.iter().flat_map(|c| c.ids.iter().copied()).collect();
        let ids = Tensor::from_vec(ids, (n, l), &self.device)?;
        let (z, pooled) = match &self.network {
            Network::Clip(m) => {
                let eos = self.tokenizer.token_id("<|endoftext|>").unwrap_or(u32::MAX);
                let (clip_skip, penultimate) = match layer {
                    Layer::Last { clip_skip } => (clip_skip, false),
                    Layer::Penultimate => (1, true),
                };
                let out = m.forward(&ids, eos, clip_skip)?;
                let z = if penultimate {
                    out.penultimate
                } else {
                    out.last
                };
                (z, out.pooled)
            }
            Network::Bert(m) => {
                let mask: Vec<u32> = rows.iter().flat_map(|c| c.mask.iter().copied()).collect();
                let mask = Tensor::from_vec(mask, (n, l), &self.device)?;
                (m.forward(&ids, &mask)?, None)
            }
        };
        let z = if rows.iter().all(|c| c.is_plain()) {
            z
        } else {
            emphasize(&z, &rows)?
        };
        let d = z.dim(2)?;
        let hidden = if count == 1 {
            z
        } else {
            z.reshape((b, count * l, d))?
        };
        let pooled = match pooled {
            Some(p) if count > 1 => {
                let w = p.dim(1)?;
                Some(p.reshape((b, count, w))?.narrow(1, 0, 1)?.squeeze(1)?)
            }
            other => other,
        };
        Ok(WeightedEmbeddings { hidden, pooled })
    }
}

/// `z·w · mean(z)/mean(z·w)` per row (`z` is `[N, L, D]`, one row per
/// chunk); plain rows come back exactly as they were.
fn emphasize(z: &Tensor, rows: &[&Chunk]) -> Result<Tensor> {
    let (n, l, _) = z.dims3()?;
    let weights: Vec<f32> = rows
        .iter()
        .flat_map(|c| c.weights.iter().copied())
        .collect();
    let w = Tensor::from_vec(weights, (n, l, 1), z.device())?;
    let before = z.flatten_from(1)?.mean(1)?.to_vec1::<f32>()?;
    let weighted = z.broadcast_mul(&w)?;
    let after = weighted.flatten_from(1)?.mean(1)?.to_vec1::<f32>()?;
    let ratio: Vec<f32> = rows
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(c, (b, a))| {
            let r = b / a;
            if c.is_plain() || !r.is_finite() {
                1.0
            } else {
                r
            }
        })
        .collect();
    let ratio = Tensor::from_vec(ratio, (n, 1, 1), z.device())?;
    Ok(weighted.broadcast_mul(&ratio)?)
}
