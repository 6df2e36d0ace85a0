//! Judging generated images: how well an image shows its prompt (a CLIP-style
//! score) and whether it copies a training image (a perceptual hash).
//!
//! A [`Scorer`] maps images and texts into one embedding space; the score of
//! an image for a prompt is the cosine similarity of their unit-length
//! embeddings, in [-1, 1] (no scaling: CLIPScore's `2.5·max(cos, 0)` is left to
//! callers that want it). Two scorers implement it:
//!
//! - [`emoji`]: the bundled model's own scorer (`models/easel-emoji/scorer/`),
//!   a small CNN trained contrastively against the model's frozen MiniLM
//!   sentence embeddings (`tools/emoji/train_scorer.py`);
//! - [`clip`]: a real CLIP model (candle-transformers' CLIP text and vision
//!   towers) from a local Hugging Face `CLIPModel` folder, for operators with
//!   Stable Diffusion models.
//!
//! [`load_scorer`] picks one from the folder's `config.json`. [`phash`] is
//! the 64-bit DCT pHash of the training-set index (`index/phash.json`) and
//! the near-copy check built on it.
//!
//! # Layout
//! - [`emoji`]: the easel-emoji scorer (CNN image tower, mean-pooled MiniLM).
//! - [`clip`]: CLIP from a Hugging Face folder.
//! - [`image`]: resampling and tensor conversion shared by both.
//! - [`phash`]: perceptual hash, Hamming distance and the training-set index.

pub mod clip;
pub mod emoji;
mod image;
pub mod phash;

use std::path::Path;

use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::loader::read_json;
use crate::model::DeviceChoice;
use crate::request::RgbImage;

pub use clip::ClipScorer;
pub use emoji::EmojiScorer;
pub use phash::{PhashIndex, hamming, phash};

/// Which kind of scorer a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScorerKind {
    /// The bundled model's CNN + MiniLM scorer (`"architecture": "EaselEmojiScorer"`).
    EaselEmoji,
    /// A Hugging Face `CLIPModel` (`"model_type": "clip"`).
    Clip,
}

/// Maps images and texts into one space where cosine similarity measures
/// how well an image shows a text. Implementations are `Send + Sync` so one
/// scorer can serve several threads.
pub trait Scorer: Send + Sync {
    /// Which scorer this is.
    fn kind(&self) -> ScorerKind;

    /// Width of the embeddings.
    fn embed_dim(&self) -> usize;

    /// Unit-length embeddings of `images`, one per image. Images of any size
    /// are resampled to the scorer's input size.
    fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>>;

    /// Unit-length embeddings of `texts`, one per text.
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;

    /// Cosine similarity of `image` and `prompt`, in [-1, 1]. To score many
    /// pairs, embed once and use [`cosine`].
    fn score(&self, image: &RgbImage, prompt: &str) -> Result<f32> {
        let i = self.embed_images(std::slice::from_ref(image))?;
        let t = self.embed_texts(&[prompt])?;
        Ok(cosine(&i[0], &t[0]))
    }
}

/// Cosine similarity of two embeddings (dot product over the norms; for the
/// unit-length embeddings a [`Scorer`] returns, the dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Says which scorer `dir/config.json` describes, without loading weights.
pub fn scorer_kind(dir: &Path) -> Result<ScorerKind> {
    let path = dir.join("config.json");
    let cfg: Value = read_json(&path)?;
    let arch = cfg.get("architecture").and_then(Value::as_str);
    let model_type = cfg.get("model_type").and_then(Value::as_str);
    match (arch, model_type) {
        (Some("EaselEmojiScorer"), _) => Ok(ScorerKind::EaselEmoji),
        (_, Some("clip")) => Ok(ScorerKind::Clip),
        _ => Err(EngineError::UnknownArchitecture {
            detail: format!(
                "{} describes neither an EaselEmojiScorer nor a CLIP model (`model_type: \"clip\"`)",
                path.display()
            ),
        }),
    }
}

/// Loads the scorer in `dir` (`models/easel-emoji/scorer`, or a Hugging
/// Face CLIP folder with `config.json`, `model.safetensors` and
/// `tokenizer.json`).
pub fn load_scorer(dir: &Path, device: DeviceChoice) -> Result<Box<dyn Scorer>> {
    Ok(match scorer_kind(dir)? {
        ScorerKind::EaselEmoji => Box::new(EmojiScorer::load(dir, device)?),
        ScorerKind::Clip => Box::new(ClipScorer::load(dir, device)?),
    })
}

/// Converts a candle `[N, D]` tensor of embeddings to rows.
pub(crate) fn rows(t: &candle_core::Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(t.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)
}
