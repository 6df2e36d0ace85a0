//! The responsible-generation sections: `[moderation]` (prompt policy,
//! image moderation, near-copy check) and `[provenance]` (watermark, C2PA,
//! file metadata). Every default is listed in `docs/configuration.md`.

use std::path::PathBuf;

use easel_policy::image::ImageThresholds;
use easel_policy::prompt::PromptPolicyConfig;
use serde::{Deserialize, Serialize};

/// Moderation of prompts and images (`[moderation]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModerationConfig {
    /// Check every prompt against `[moderation.prompt]` before a job is
    /// stored; a blocked prompt gets 400 `prompt_rejected`. Default: `true`.
    /// Env: `EASEL_MODERATION__PROMPT_ENABLED`.
    pub prompt_enabled: bool,
    /// The MiniLM sentence encoder of the semantic filter: a diffusers
    /// folder whose `text_encoder/` is all-MiniLM-L6-v2, or a
    /// sentence-transformers folder. Default: `models/easel-emoji` (the
    /// bundled model's own encoder). Unset or a missing folder turns the
    /// semantic filter off (terms and patterns still apply) with a warning.
    /// Env: `EASEL_MODERATION__SEMANTIC_MODEL`.
    pub semantic_model: Option<PathBuf>,
    /// Blocked terms, patterns and disallowed concepts with thresholds.
    /// Default: the shipped list, documented in `docs/moderation.md`.
    pub prompt: PromptPolicyConfig,
    /// The open_nsfw ONNX model of image moderation. Default:
    /// `models/open-nsfw/open_nsfw.onnx` (shipped). Unset turns image
    /// moderation off. Env: `EASEL_MODERATION__IMAGE_MODEL`.
    pub image_model: Option<PathBuf>,
    /// Flag and block thresholds of the image's NSFW probability.
    /// Env: `EASEL_MODERATION__IMAGE__FLAG`, `EASEL_MODERATION__IMAGE__BLOCK`.
    pub image: ImageThresholds,
    /// The thresholds of a request that asks for `moderation: "low"`
    /// (OpenAI's "less restrictive filtering"); the prompt policy is not
    /// relaxed. Default: unset, which refuses `low` with 400
    /// `unsupported_parameter`: relaxing moderation is the operator's call.
    /// Env: `EASEL_MODERATION__IMAGE_LOW__FLAG`, `EASEL_MODERATION__IMAGE_LOW__BLOCK`.
    pub image_low: Option<ImageThresholds>,
    /// Flag an output whose pHash is within this many bits (of 64) of a
    /// training image in the model's `index/phash.json`; unset turns the
    /// check off. Default: 2 (`NEAR_COPY_BITS`, measured on the bundled model; see
    /// its README). Env: `EASEL_MODERATION__NEAR_COPY_MAX_DISTANCE`.
    pub near_copy_max_distance: Option<u32>,
}

impl Default for ModerationConfig {
    fn default() -> Self {
        Self {
            prompt_enabled: true,
            semantic_model: Some(PathBuf::from("models/easel-emoji")),
            prompt: PromptPolicyConfig::default(),
            image_model: Some(PathBuf::from(easel_policy::image::DEFAULT_NSFW_MODEL)),
            image: ImageThresholds::default(),
            image_low: None,
            near_copy_max_distance: Some(easel_engine::score::phash::NEAR_COPY_BITS),
        }
    }
}

/// Provenance written into every image (`[provenance]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvenanceConfig {
    /// Embed the invisible watermark. Images smaller than the watermark's
    /// minimum side are upscaled (nearest neighbour, integer factor) first.
    /// Default: `true`. Env: `EASEL_PROVENANCE__WATERMARK`.
    pub watermark: bool,
    /// This server's 16-bit tag in every watermark. Default: unset, which
    /// uses a random tag generated on first start and kept in
    /// `<data_dir>/server-tag`. Env: `EASEL_PROVENANCE__SERVER_TAG`.
    pub server_tag: Option<u16>,
    /// Sign every image with C2PA Content Credentials. Default: `true`.
    /// Env: `EASEL_PROVENANCE__C2PA`.
    pub c2pa: bool,
    /// PEM certificate chain (end-entity first, then intermediates/CA) to
    /// sign with. Default: unset, which generates a private CA and a signing
    /// certificate in `<data_dir>/c2pa/` on first start and reuses them.
    /// Env: `EASEL_PROVENANCE__CERTIFICATE`.
    pub certificate: Option<PathBuf>,
    /// PEM private key of `certificate`; required with it.
    /// Env: `EASEL_PROVENANCE__PRIVATE_KEY`.
    pub private_key: Option<PathBuf>,
    /// Write the prompt and negative prompt into the file's metadata (the
    /// `parameters` text and the `easel` record). Default: `true`; turn off
    /// where prompts are private. The database record keeps them either way.
    /// Env: `EASEL_PROVENANCE__INCLUDE_PROMPT`.
    pub include_prompt: bool,
}

impl Default for ProvenanceConfig {
    fn default() -> Self {
        Self {
            watermark: true,
            server_tag: None,
            c2pa: true,
            certificate: None,
            private_key: None,
            include_prompt: true,
        }
    }
}
