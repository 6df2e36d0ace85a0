//! BERT-family sentence encoders (all-MiniLM-L6-v2 in the bundled model),
//! through `candle_transformers::models::bert`, which matches a float64
//! reference within 2e-7 and accepts weights with or without the `bert.`
//! prefix.
//!
//! The UNet is conditioned on the whole last hidden state `[B, L, H]` (no
//! pooling), computed with the attention mask so padding does not leak
//! into the real tokens.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde_json::Value;

use crate::error::{EngineError, Result};

/// Parses a BERT `config.json`, filling the fields transformers leaves out
/// when they hold their defaults.
pub(crate) fn parse_config(path: &std::path::Path, mut v: Value) -> Result<Config> {
    if let Value::Object(o) = &mut v {
        let defaults = [
            ("hidden_act", Value::from("gelu")),
            ("hidden_dropout_prob", Value::from(0.1)),
            ("max_position_embeddings", Value::from(512)),
            ("type_vocab_size", Value::from(2)),
            ("initializer_range", Value::from(0.02)),
            ("layer_norm_eps", Value::from(1e-12)),
            ("pad_token_id", Value::from(0)),
            ("classifier_dropout", Value::Null),
            ("model_type", Value::from("bert")),
        ];
        for (k, d) in defaults {
            o.entry(k).or_insert(d);
        }
    }
    serde_json::from_value(v).map_err(|e| EngineError::InvalidConfig {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// A BERT encoder returning its last hidden state.
pub(crate) struct BertEncoder {
    model: BertModel,
}

impl BertEncoder {
    /// Builds from weights.
    pub(crate) fn new(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        Ok(Self {
            model: BertModel::load(vb, cfg)?,
        })
    }

    /// `ids` and `mask` are `[B, L]` u32; returns `[B, L, H]`.
    pub(crate) fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let token_types = ids.zeros_like()?;
        self.model.forward(ids, &token_types, Some(mask))
    }
}
