//! Sentence embeddings from a BERT-family encoder, computed exactly as
//! sentence-transformers computes them for all-MiniLM-L6-v2
//! (`Transformer` → `Pooling(mean)` → `Normalize`):
//!
//! 1. tokenise with the folder's `tokenizer.json` (`[CLS] text [SEP]`),
//!    truncated to `max_seq_length` tokens (specials included), padded to
//!    the longest text of the batch, attention mask 1 on real tokens;
//! 2. run BERT (`token_type_ids` = 0) to `last_hidden_state` `[B, L, H]`;
//! 3. average it over the masked-in positions
//!    (<https://github.com/UKPLab/sentence-transformers/blob/v3.0.1/sentence_transformers/models/Pooling.py#L185-L205>);
//! 4. divide by the L2 norm (`torch.nn.functional.normalize`, eps 1e-12).
//!
//! Unlike the UNet conditioning ([`super::TextEncoder`], 32 fixed tokens,
//! no pooling), nothing here depends on the tokenizer's `model_max_length`:
//! the whole prompt up to `max_seq_length` counts. Padding to the batch's
//! longest text (not a fixed 128 as MiniLM's `tokenizer.json` asks) keeps a
//! one-prompt embedding at a few milliseconds.
//!
//! Two folder layouts load:
//! - a diffusers folder (`model_index.json`) whose `text_encoder/` is BERT,
//!   with `tokenizer/tokenizer.json` (the bundled `models/easel-emoji`);
//! - a bare sentence-transformers folder: `config.json`,
//!   `model.safetensors`, `tokenizer.json` and, optionally,
//!   `sentence_bert_config.json` (its `max_seq_length`).

use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use serde_json::Value;
use tokenizers::{Tokenizer, TruncationParams};

use super::TextFamily;
use super::bert::{self, BertEncoder};
use crate::error::{EngineError, Result};
use crate::loader::{ModelFolder, WeightStore, read_json, select_device};
use crate::model::DeviceChoice;

/// all-MiniLM-L6-v2's `max_seq_length` (its `sentence_bert_config.json`),
/// used when the folder does not say: the diffusers folder's tokenizer
/// config holds the UNet's 32, which is not the sentence encoder's limit.
pub const DEFAULT_MAX_SEQ_LENGTH: usize = 256;

/// A BERT sentence encoder: texts in, unit-length mean-pooled embeddings
/// out. `Send + Sync`; see the module docs for the computation.
pub struct SentenceEncoder {
    tokenizer: Tokenizer,
    model: BertEncoder,
    device: Device,
    max_seq_length: usize,
    dim: usize,
}

impl SentenceEncoder {
    /// Loads a diffusers folder with a BERT `text_encoder/` or a bare
    /// sentence-transformers folder (see the module docs).
    pub fn load(dir: &Path, device: DeviceChoice) -> Result<Self> {
        let device = select_device(device)?;
        if !dir.is_dir() {
            return Err(EngineError::MissingFile {
                path: dir.to_path_buf(),
            });
        }
        let diffusers = dir.join("model_index.json").is_file();
        let (component, tokenizer_path) = if diffusers {
            ("text_encoder", dir.join("tokenizer").join("tokenizer.json"))
        } else {
            ("", dir.join("tokenizer.json"))
        };
        let folder = ModelFolder {
            root: dir.to_path_buf(),
            index: Value::Null,
        };
        if super::TextEncoder::family(&folder, component)? != TextFamily::Bert {
            return Err(EngineError::UnknownArchitecture {
                detail: format!(
                    "{} is not a BERT encoder (sentence embeddings need BERT, e.g. all-MiniLM-L6-v2)",
                    folder.file(component, "config.json").display()
                ),
            });
        }
        let config_path = folder.file(component, "config.json");
        let cfg = bert::parse_config(&config_path, read_json(&config_path)?)?;
        let store = WeightStore::open(&folder.weight_files(component)?)?;
        let model =
            BertEncoder::new(store.var_builder(&device), &cfg).map_err(|e| store.explain(e))?;

        let st_config = dir.join("sentence_bert_config.json");
        let max_seq_length = if st_config.is_file() {
            let v: Value = read_json(&st_config)?;
            v.get("max_seq_length")
                .and_then(Value::as_u64)
                .ok_or_else(|| EngineError::InvalidConfig {
                    path: st_config.clone(),
                    detail: "no integer `max_seq_length`".into(),
                })? as usize
        } else {
            DEFAULT_MAX_SEQ_LENGTH
        }
        .min(cfg.max_position_embeddings)
        .max(2);

        if !tokenizer_path.is_file() {
            return Err(EngineError::MissingFile {
                path: tokenizer_path,
            });
        }
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| EngineError::InvalidConfig {
                path: tokenizer_path.clone(),
                detail: e.to_string(),
            })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_length,
                ..Default::default()
            }))
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(Self {
            tokenizer,
            model,
            device,
            max_seq_length,
            dim: cfg.hidden_size,
        })
    }

    /// Width of the embeddings (384 for MiniLM).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Tokens per text, special tokens included, beyond which a text is
    /// truncated.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Unit-length embeddings, one row of [`dim`](Self::dim) per text.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // One at a time: `encode_batch` would start a thread pool.
        let encodings = texts
            .iter()
            .map(|t| self.tokenizer.encode(*t, true))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let (b, l) = (
            encodings.len(),
            encodings.iter().map(|e| e.len()).max().unwrap_or(0),
        );
        let mut ids = vec![0u32; b * l];
        let mut mask = vec![0u32; b * l];
        for (row, enc) in encodings.iter().enumerate() {
            for (col, (&id, &m)) in enc
                .get_ids()
                .iter()
                .zip(enc.get_attention_mask())
                .enumerate()
            {
                ids[row * l + col] = id;
                mask[row * l + col] = m;
            }
        }
        let ids = Tensor::from_vec(ids, (b, l), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, l), &self.device)?;
        let hidden = self.model.forward(&ids, &mask)?; // [B, L, H]
        let m = mask.to_dtype(hidden.dtype())?.unsqueeze(D::Minus1)?;
        let sum = hidden.broadcast_mul(&m)?.sum(1)?;
        // sentence-transformers clamps the token count at 1e-9.
        let mean = sum.broadcast_div(&m.sum(1)?.clamp(1e-9, f64::MAX)?)?;
        let norm = mean
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        Ok(mean
            .broadcast_div(&norm)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?)
    }
}
