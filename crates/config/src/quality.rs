//! The quality score of every image (`[quality]`): the quality SLI behind
//! `easel_image_quality_score` and each image record's `quality_score`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Scoring every image against its prompt (`[quality]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityConfig {
    /// Score every image: the cosine of the scorer's image and prompt
    /// embeddings, recorded on the image and in the metrics, never a gate.
    /// Default: `true`. Env: `EASEL_QUALITY__ENABLED`.
    pub enabled: bool,
    /// One scorer folder for every model: a Hugging Face CLIP folder
    /// (`config.json` with `model_type: "clip"`, `model.safetensors`,
    /// `tokenizer.json`) or an Easel scorer. Default: unset, which scores
    /// each model's images with the scorer in its own `scorer/` folder (the
    /// bundled model ships one); a model without one is not scored. A
    /// configured folder that does not load is a startup error.
    /// Env: `EASEL_QUALITY__SCORER`.
    pub scorer: Option<PathBuf>,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            scorer: None,
        }
    }
}
