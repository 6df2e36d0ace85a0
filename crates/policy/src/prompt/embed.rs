//! Sentence embeddings for the semantic filter: the [`Embedder`] seam and
//! [`MiniLmEmbedder`], all-MiniLM-L6-v2 run by the engine's
//! [`SentenceEncoder`](easel_engine::SentenceEncoder) (mean pooling over real
//! tokens, then L2 normalisation, as sentence-transformers computes it;
//! checked against it in `tests/prompt_embed.rs`).

use std::path::Path;

use easel_engine::{DeviceChoice, SentenceEncoder};

use crate::error::PolicyError;

/// Where the bundled MiniLM lives, relative to the repository root or the
/// working directory: the easel-emoji model, whose `text_encoder/` is
/// all-MiniLM-L6-v2 (weights rounded to f16).
pub const DEFAULT_PROMPT_MODEL: &str = "models/easel-emoji";

/// Maps texts to unit-length embeddings of one fixed width, so that a dot
/// product is a cosine similarity. `Send + Sync` so one embedder serves
/// every request thread.
pub trait Embedder: Send + Sync {
    /// One embedding per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, PolicyError>;
}

/// all-MiniLM-L6-v2 on the CPU. Embedding one prompt takes a few
/// milliseconds (figures in `docs/moderation.md`).
pub struct MiniLmEmbedder {
    encoder: SentenceEncoder,
}

impl MiniLmEmbedder {
    /// Loads `model_dir`: a diffusers folder whose `text_encoder/` is a BERT
    /// sentence encoder (default: [`DEFAULT_PROMPT_MODEL`]) or a bare
    /// sentence-transformers folder (`config.json`, `model.safetensors`,
    /// `tokenizer.json`).
    pub fn load(model_dir: &Path) -> Result<Self, PolicyError> {
        let encoder = SentenceEncoder::load(model_dir, DeviceChoice::Cpu).map_err(|e| {
            PolicyError::Model {
                path: model_dir.display().to_string(),
                message: e.to_string(),
            }
        })?;
        Ok(Self { encoder })
    }

    /// Width of the embeddings (384).
    pub fn dim(&self) -> usize {
        self.encoder.dim()
    }
}

impl Embedder for MiniLmEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, PolicyError> {
        self.encoder
            .embed(texts)
            .map_err(|e| PolicyError::Inference(format!("MiniLM: {e}")))
    }
}
