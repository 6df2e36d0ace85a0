//! The easel-emoji scorer (`models/easel-emoji/scorer/`): this domain's CLIP
//! score, trained by `tools/emoji/train_scorer.py`; the PyTorch reference
//! is `tools/emoji/scorer_common.py`, which this file mirrors.
//!
//! - Text: the model's own MiniLM (`text_encoder/`, `tokenizer/`, named in
//!   the scorer's `config.json` relative to its folder), run exactly as for
//!   conditioning (32 tokens, attention mask on real tokens); the sentence
//!   embedding is the mean of `last_hidden_state` over the unmasked
//!   positions, L2-normalised (sentence-transformers' pooling of
//!   all-MiniLM-L6-v2). The scorer has no text weights of its own.
//! - Image: 32×32 RGB as `v / 127.5 − 1`; six 3×3 convolutions (padding 1,
//!   strides from the config), each followed by GroupNorm and SiLU; the mean
//!   over positions; a linear projection to 384; L2-normalised.
//!
//! Weights are f16 safetensors computed in f32, like the rest of the model.

use std::path::{Path, PathBuf};

use candle_core::{D, Device, Tensor};
use candle_nn::{Linear, Module};
use serde::Deserialize;

use super::image::{resize_area, to_tensor};
use super::{Scorer, ScorerKind, rows};
use crate::error::{EngineError, Result};
use crate::loader::{ModelFolder, WeightStore, read_json, select_device};
use crate::model::DeviceChoice;
use crate::ops::conv::{Conv2d, ConvParams, Padding};
use crate::ops::group_norm::GroupNorm;
use crate::request::RgbImage;
use crate::text::TextEncoder;

/// `scorer/config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct EmojiScorerConfig {
    /// Always `"EaselEmojiScorer"`.
    pub architecture: String,
    /// Input side in pixels (32).
    pub image_size: u32,
    /// Output channels of each convolution.
    pub channels: Vec<usize>,
    /// Stride of each convolution (same length as `channels`).
    pub strides: Vec<usize>,
    /// GroupNorm groups.
    pub norm_groups: usize,
    /// GroupNorm epsilon.
    pub norm_eps: f64,
    /// Embedding width (MiniLM's 384).
    pub embed_dim: usize,
    /// The text encoder folder, relative to the scorer folder (`../text_encoder`).
    pub text_encoder: String,
    /// The tokenizer folder, relative to the scorer folder (`../tokenizer`).
    pub tokenizer: String,
}

struct Block {
    conv: Conv2d,
    norm: GroupNorm,
}

/// The bundled model's scorer. See the module docs for what it computes.
pub struct EmojiScorer {
    config: EmojiScorerConfig,
    blocks: Vec<Block>,
    proj: Linear,
    text: TextEncoder,
    pad_id: u32,
    device: Device,
}

impl EmojiScorer {
    /// Loads `dir` (`models/easel-emoji/scorer`): `config.json`,
    /// `model.safetensors`, and the text encoder the config points to.
    pub fn load(dir: &Path, device: DeviceChoice) -> Result<Self> {
        let device = select_device(device)?;
        let config_path = dir.join("config.json");
        let config: EmojiScorerConfig = read_json(&config_path)?;
        let invalid = |detail: String| EngineError::InvalidConfig {
            path: config_path.clone(),
            detail,
        };
        if config.architecture != "EaselEmojiScorer" {
            return Err(invalid(format!(
                "architecture is `{}`, expected EaselEmojiScorer",
                config.architecture
            )));
        }
        if config.channels.len() != config.strides.len() || config.channels.is_empty() {
            return Err(invalid(
                "`channels` and `strides` must be non-empty and of equal length".into(),
            ));
        }
        if let Some(c) = config
            .channels
            .iter()
            .find(|&&c| c % config.norm_groups != 0)
        {
            return Err(invalid(format!(
                "{c} channels do not split into {} groups",
                config.norm_groups
            )));
        }

        let weights: Vec<PathBuf> = vec![dir.join("model.safetensors")];
        if !weights[0].is_file() {
            return Err(EngineError::MissingFile {
                path: weights[0].clone(),
            });
        }
        let store = WeightStore::open(&weights)?;
        let vb = store.var_builder(&device);
        let build = || -> candle_core::Result<(Vec<Block>, Linear)> {
            let mut blocks = Vec::new();
            let mut cin = 3;
            for (i, (&c, &s)) in config.channels.iter().zip(&config.strides).enumerate() {
                let vb = vb.pp(format!("blocks.{i}"));
                let params = ConvParams {
                    stride: s,
                    padding: Padding::uniform(1),
                };
                let conv = Conv2d::new(vb.pp("conv"), cin, c, 3, params)?;
                let norm = GroupNorm::new(vb.pp("norm"), config.norm_groups, c, config.norm_eps)?;
                blocks.push(Block { conv, norm });
                cin = c;
            }
            let proj = candle_nn::linear(cin, config.embed_dim, vb.pp("proj"))?;
            Ok((blocks, proj))
        };
        let (blocks, proj) = build().map_err(|e| store.explain(e))?;

        // The text encoder lives beside the scorer in the model folder.
        let folder = ModelFolder {
            root: dir.to_path_buf(),
            index: serde_json::Value::Null,
        };
        let text = TextEncoder::load(
            &folder,
            &config.text_encoder,
            &config.tokenizer,
            &device,
            Default::default(),
        )?;
        if text.hidden_width() != config.embed_dim {
            return Err(invalid(format!(
                "embed_dim is {} but the text encoder makes {}-wide embeddings",
                config.embed_dim,
                text.hidden_width()
            )));
        }
        // "" is [CLS] [SEP] and then padding, so its last id is the pad id.
        let pad_id = *text
            .token_ids(&[""])?
            .first()
            .and_then(|ids| ids.last())
            .ok_or_else(|| EngineError::Tokenizer("empty tokenisation of \"\"".into()))?;
        Ok(Self {
            config,
            blocks,
            proj,
            text,
            pad_id,
            device,
        })
    }

    /// The parsed `config.json`.
    pub fn config(&self) -> &EmojiScorerConfig {
        &self.config
    }

    fn image_tower(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for b in &self.blocks {
            x = b.norm.forward_silu(&b.conv.forward(&x)?)?;
        }
        let pooled = x.mean(D::Minus1)?.mean(D::Minus1)?;
        Ok(l2_normalize(&self.proj.forward(&pooled)?)?)
    }
}

/// Divides each row of `[N, D]` by its L2 norm.
fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norm)
}

impl Scorer for EmojiScorer {
    fn kind(&self) -> ScorerKind {
        ScorerKind::EaselEmoji
    }

    fn embed_dim(&self) -> usize {
        self.config.embed_dim
    }

    fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let s = self.config.image_size;
        let prepared: Vec<RgbImage> = images.iter().map(|i| resize_area(i, s)).collect();
        let x = to_tensor(&prepared, [0.5; 3], [0.5; 3], &self.device)?;
        rows(&self.image_tower(&x)?)
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let hidden = self.text.encode(texts)?.hidden; // [B, L, H]
        let ids = self.text.token_ids(texts)?;
        let (b, l) = (ids.len(), ids[0].len());
        let mask: Vec<f32> = ids
            .iter()
            .flatten()
            .map(|&id| if id == self.pad_id { 0.0 } else { 1.0 })
            .collect();
        let mask = Tensor::from_vec(mask, (b, l, 1), &self.device)?;
        let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
        let count = mask.sum(1)?.clamp(1.0, f64::MAX)?;
        rows(&l2_normalize(&sum.broadcast_div(&count)?)?)
    }
}
