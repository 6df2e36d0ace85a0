//! Text encoders: a prompt becomes the `encoder_hidden_states` the UNet
//! attends to.
//!
//! - [`tokenizer`]: fixed-length tokenisation with truncation warnings.
//! - [`chunks`]: AUTOMATIC1111's 75-token chunks of a weighted prompt.
//! - [`weighted`]: weighted (A1111 "emphasis"), chunked encoding of parsed
//!   prompts, the pipeline's path; [`TextEncoder::encode`] is the plain one
//!   (one truncated sequence, diffusers' encoding), which it equals bit for
//!   bit on a prompt without syntax that fits one chunk.
//! - [`clip`]: CLIP's text transformer (Stable Diffusion), with clip skip.
//! - [`bert`]: BERT-family sentence encoders (the bundled model).
//! - [`sentence`]: mean-pooled, unit-length sentence embeddings (the prompt policy).

pub(crate) mod bert;
pub(crate) mod chunks;
pub(crate) mod clip;
pub(crate) mod sentence;
pub(crate) mod tokenizer;
pub(crate) mod weighted;

use std::sync::Arc;

use candle_core::{Device, Tensor};
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::loader::lora::Overlay;
use crate::loader::{ModelFolder, WeightStore, read_json};
use bert::BertEncoder;
use clip::{ClipTextConfig, ClipTextModel};
use tokenizer::PromptTokenizer;

/// Which family a text encoder belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextFamily {
    /// CLIP text transformer with this activation.
    Clip {
        /// Whether it uses exact GELU (OpenCLIP, SD 2.x) rather than quick GELU.
        exact_gelu: bool,
        /// Its width.
        hidden: usize,
    },
    /// A BERT-family sentence encoder.
    Bert,
}

enum Network {
    Clip(ClipTextModel),
    Bert(BertEncoder),
}

/// A tokenizer plus the network that embeds its tokens.
pub(crate) struct TextEncoder {
    tokenizer: PromptTokenizer,
    network: Network,
    family: TextFamily,
    device: Device,
    width: usize,
    pooled: Option<usize>,
    /// Bytes of weights loaded.
    pub weight_bytes: u64,
}

/// Prompt embeddings with a warning per prompt that was truncated.
pub(crate) struct Embeddings {
    /// `[B, L, H]`.
    pub hidden: Tensor,
    /// CLIP: the hidden states entering the last layer (SDXL's choice);
    /// BERT: the same as `hidden`.
    pub penultimate: Tensor,
    /// CLIP with projection: the pooled, projected embedding `[B, P]`.
    pub pooled: Option<Tensor>,
    /// Per prompt, the truncation warning if any.
    pub warnings: Vec<Option<String>>,
}

impl TextEncoder {
    /// Reads `text_encoder/config.json` and says which family it is, without
    /// loading weights.
    pub(crate) fn family(folder: &ModelFolder, component: &str) -> Result<TextFamily> {
        let path = folder.file(component, "config.json");
        let cfg: Value = read_json(&path)?;
        let model_type = cfg.get("model_type").and_then(Value::as_str).unwrap_or("");
        let arch = cfg
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or("");
        if model_type.starts_with("clip") || arch.starts_with("CLIPText") {
            let cfg: ClipTextConfig =
                serde_json::from_value(cfg).map_err(|e| EngineError::InvalidConfig {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            ClipTextModel::validate(&cfg)?;
            Ok(TextFamily::Clip {
                exact_gelu: cfg.hidden_act == "gelu",
                hidden: cfg.hidden_size,
            })
        } else if model_type == "bert" || arch.starts_with("Bert") {
            Ok(TextFamily::Bert)
        } else {
            Err(EngineError::UnknownArchitecture {
                detail: format!(
                    "{component}/config.json describes `{}` (supported text encoders: CLIP text, BERT)",
                    if arch.is_empty() { model_type } else { arch }
                ),
            })
        }
    }

    /// Loads `component` (e.g. `text_encoder`) with its tokenizer folder,
    /// adding `overlay`'s LoRA updates to its weights.
    pub(crate) fn load(
        folder: &ModelFolder,
        component: &str,
        tokenizer_dir: &str,
        device: &Device,
        overlay: Overlay,
    ) -> Result<Self> {
        let family = Self::family(folder, component)?;
        let path = folder.file(component, "config.json");
        let raw: Value = read_json(&path)?;
        let files = folder.weight_files(component)?;
        let store: Arc<WeightStore> = WeightStore::open_with_overlay(&files, overlay)?;
        let vb = store.var_builder(device);
        let mut pooled = None;
        let (network, positions, width) = match family {
            TextFamily::Clip { .. } => {
                let cfg: ClipTextConfig =
                    serde_json::from_value(raw).map_err(|e| EngineError::InvalidConfig {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                let net = ClipTextModel::new(vb, &cfg).map_err(|e| store.explain(e))?;
                if cfg
                    .architectures
                    .iter()
                    .any(|a| a.ends_with("WithProjection"))
                {
                    pooled = cfg.projection_dim;
                }
                (
                    Network::Clip(net),
                    cfg.max_position_embeddings,
                    cfg.hidden_size,
                )
            }
            TextFamily::Bert => {
                let cfg = bert::parse_config(&path, raw)?;
                let net = BertEncoder::new(vb, &cfg).map_err(|e| store.explain(e))?;
                (
                    Network::Bert(net),
                    cfg.max_position_embeddings,
                    cfg.hidden_size,
                )
            }
        };
        let tokenizer = PromptTokenizer::load(&folder.root.join(tokenizer_dir), positions)?;
        Ok(Self {
            tokenizer,
            network,
            family,
            device: device.clone(),
            width,
            pooled,
            weight_bytes: store.loaded_bytes(),
        })
    }

    /// The family of this encoder.
    #[allow(dead_code)]
    pub(crate) fn text_family(&self) -> TextFamily {
        self.family
    }

    /// Width of the pooled embedding (CLIP with projection), if any.
    pub(crate) fn pooled_width(&self) -> Option<usize> {
        self.pooled
    }

    /// Width of the embeddings.
    pub(crate) fn hidden_width(&self) -> usize {
        self.width
    }

    /// CLIP: its number of transformer layers (the largest clip skip);
    /// BERT: `None`.
    pub(crate) fn clip_layers(&self) -> Option<usize> {
        match &self.network {
            Network::Clip(m) => Some(m.num_layers()),
            Network::Bert(_) => None,
        }
    }

    /// The fixed token length.
    #[allow(dead_code)]
    pub(crate) fn max_len(&self) -> usize {
        self.tokenizer.max_len()
    }

    /// Token ids of `prompts` (for tests and tools).
    pub(crate) fn token_ids(&self, prompts: &[&str]) -> Result<Vec<Vec<u32>>> {
        Ok(self.tokenizer.encode(prompts)?.ids)
    }

    /// Embeds a batch of prompts.
    pub(crate) fn encode(&self, prompts: &[&str]) -> Result<Embeddings> {
        let batch = self.tokenizer.encode(prompts)?;
        let (b, l) = (batch.ids.len(), self.tokenizer.max_len());
        let flat = |v: &Vec<Vec<u32>>| v.iter().flatten().copied().collect::<Vec<u32>>();
        let ids = Tensor::from_vec(flat(&batch.ids), (b, l), &self.device)?;
        let (hidden, penultimate, pooled) = match &self.network {
            Network::Clip(m) => {
                let eos = self.tokenizer.token_id("<|endoftext|>").unwrap_or(u32::MAX);
                let out = m.forward(&ids, eos, 1)?;
                (out.last, out.penultimate, out.pooled)
            }
            Network::Bert(m) => {
                let mask = Tensor::from_vec(flat(&batch.mask), (b, l), &self.device)?;
                let h = m.forward(&ids, &mask)?;
                (h.clone(), h, None)
            }
        };
        Ok(Embeddings {
            hidden,
            penultimate,
            pooled,
            warnings: batch.warnings,
        })
    }
}
