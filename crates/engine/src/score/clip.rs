//! A real CLIP model as a [`Scorer`], for operators with Stable Diffusion
//! models: candle-transformers' CLIP text and vision towers
//! (`candle_transformers::models::clip`, a port of transformers'
//! `modeling_clip.py`) loaded from a local Hugging Face `CLIPModel` folder:
//! `config.json` (`model_type: "clip"`, with `text_config` and
//! `vision_config`; absent keys take transformers' defaults), `model.safetensors`
//! (`text_model.*`, `vision_model.*`, `text_projection`, `visual_projection`)
//! and `tokenizer.json`.
//!
//! Differences from transformers a caller should know:
//! - candle implements only QuickGELU, the activation of OpenAI's CLIP
//!   checkpoints; a config with another `hidden_act` is refused.
//! - candle pools the text tower at the position of the *largest* token id,
//!   which is `<|endoftext|>` in CLIP's vocabulary (as in transformers for
//!   the original configs). Each text is run on its own, unpadded, so the
//!   end token is the last position.
//! - Images are area-resampled to the square `image_size` (transformers
//!   resizes the shortest side bicubically and centre-crops, which is the
//!   same for square images up to the filter), then normalised with CLIP's
//!   mean and standard deviation.

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_transformers::models::clip::text_model::{Activation, ClipTextConfig};
use candle_transformers::models::clip::vision_model::ClipVisionConfig;
use candle_transformers::models::clip::{ClipConfig, ClipModel, div_l2_norm};
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::image::{resize_area, to_tensor};
use super::{Scorer, ScorerKind, rows};
use crate::error::{EngineError, Result};
use crate::loader::{WeightStore, read_json, select_device};
use crate::model::DeviceChoice;
use crate::request::RgbImage;

/// OpenAI CLIP's image normalisation (`OPENAI_CLIP_MEAN` / `OPENAI_CLIP_STD`
/// in transformers' `image_utils.py`).
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// `text_config` of a transformers `CLIPConfig` (defaults: `CLIPTextConfig`'s).
#[derive(Debug, Deserialize)]
#[serde(default)]
struct TextJson {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    hidden_act: String,
}

impl Default for TextJson {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
        }
    }
}

/// `vision_config` of a transformers `CLIPConfig` (defaults: `CLIPVisionConfig`'s).
#[derive(Debug, Deserialize)]
#[serde(default)]
struct VisionJson {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_channels: usize,
    image_size: usize,
    patch_size: usize,
    hidden_act: String,
}

impl Default for VisionJson {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".into(),
        }
    }
}

/// A transformers `CLIPConfig`.
#[derive(Debug, Deserialize)]
struct ClipJson {
    #[serde(default)]
    text_config: TextJson,
    #[serde(default)]
    vision_config: VisionJson,
    #[serde(default = "default_projection")]
    projection_dim: usize,
    #[serde(default = "default_logit_scale")]
    logit_scale_init_value: f32,
}

fn default_projection() -> usize {
    512
}

fn default_logit_scale() -> f32 {
    2.6592
}

/// CLIP from a Hugging Face folder (see the module docs).
pub struct ClipScorer {
    model: ClipModel,
    tokenizer: Tokenizer,
    image_size: u32,
    max_len: usize,
    embed_dim: usize,
    device: Device,
}

impl ClipScorer {
    /// Loads a `CLIPModel` folder.
    pub fn load(dir: &Path, device: DeviceChoice) -> Result<Self> {
        let device = select_device(device)?;
        let config_path = dir.join("config.json");
        let raw: ClipJson = read_json(&config_path)?;
        for (tower, act) in [
            ("text_config", &raw.text_config.hidden_act),
            ("vision_config", &raw.vision_config.hidden_act),
        ] {
            if act != "quick_gelu" {
                return Err(EngineError::InvalidConfig {
                    path: config_path.clone(),
                    detail: format!(
                        "{tower}.hidden_act is `{act}`; candle's CLIP implements only quick_gelu"
                    ),
                });
            }
        }
        let (t, v) = (&raw.text_config, &raw.vision_config);
        let config = ClipConfig {
            text_config: ClipTextConfig {
                vocab_size: t.vocab_size,
                embed_dim: t.hidden_size,
                activation: Activation::QuickGelu,
                intermediate_size: t.intermediate_size,
                max_position_embeddings: t.max_position_embeddings,
                pad_with: None,
                num_hidden_layers: t.num_hidden_layers,
                num_attention_heads: t.num_attention_heads,
                projection_dim: raw.projection_dim,
            },
            vision_config: ClipVisionConfig {
                embed_dim: v.hidden_size,
                activation: Activation::QuickGelu,
                intermediate_size: v.intermediate_size,
                num_hidden_layers: v.num_hidden_layers,
                num_attention_heads: v.num_attention_heads,
                projection_dim: raw.projection_dim,
                num_channels: v.num_channels,
                image_size: v.image_size,
                patch_size: v.patch_size,
            },
            logit_scale_init_value: raw.logit_scale_init_value,
            image_size: v.image_size,
        };
        let weights = vec![dir.join("model.safetensors")];
        if !weights[0].is_file() {
            return Err(EngineError::MissingFile {
                path: weights[0].clone(),
            });
        }
        let store = WeightStore::open(&weights)?;
        let vb = store.var_builder(&device);
        // candle draws a random class embedding when the tensor is absent;
        // a scorer must never silently run on random weights.
        let class = "vision_model.embeddings.class_embedding";
        if !vb.contains_tensor(class) {
            return Err(EngineError::MissingTensor {
                path: weights[0].clone(),
                tensor: class.into(),
            });
        }
        let model = ClipModel::new(vb, &config).map_err(|e| store.explain(e))?;
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(EngineError::MissingFile { path: tok_path });
        }
        let tokenizer =
            Tokenizer::from_file(&tok_path).map_err(|e| EngineError::InvalidConfig {
                path: tok_path.clone(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            model,
            tokenizer,
            image_size: v.image_size as u32,
            max_len: t.max_position_embeddings,
            embed_dim: raw.projection_dim,
            device,
        })
    }
}

impl Scorer for ClipScorer {
    fn kind(&self) -> ScorerKind {
        ScorerKind::Clip
    }

    fn embed_dim(&self) -> usize {
        self.embed_dim
    }

    fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let prepared: Vec<RgbImage> = images
            .iter()
            .map(|i| resize_area(i, self.image_size))
            .collect();
        let x = to_tensor(&prepared, CLIP_MEAN, CLIP_STD, &self.device)?;
        rows(&div_l2_norm(&self.model.get_image_features(&x)?)?)
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for text in texts {
            let enc = self
                .tokenizer
                .encode(*text, true)
                .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
            let mut ids = enc.get_ids().to_vec();
            if ids.len() > self.max_len {
                // Keep the end token, which the text tower pools at.
                let last = *ids.last().unwrap_or(&0);
                ids.truncate(self.max_len);
                ids[self.max_len - 1] = last;
            }
            let n = ids.len();
            let ids = Tensor::from_vec(ids, (1, n), &self.device)?;
            let e = div_l2_norm(&self.model.get_text_features(&ids)?)?;
            out.extend(rows(&e)?);
        }
        Ok(out)
    }
}
