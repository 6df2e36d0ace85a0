//! The LoRAs of a request: Easel's `loras` field and A1111's
//! `<lora:NAME:WEIGHT>` prompt tags, taken out of the prompts and resolved
//! against the server's LoRA folder.
//!
//! Tags are removed from the prompt and the negative prompt before either
//! is encoded (the text around them stays as written). With
//! `disable_extra_networks` (`/sdapi/v1`) they are removed but not applied,
//! as A1111 does. The LoRAs of the tags and of `loras` together are checked
//! and resolved by [`easel_jobs::LoraLibrary::resolve`]: a weight outside
//! −4..=4 is `invalid_lora_weight`, an unknown name `lora_not_found`, more
//! than eight `too_many_loras`.

use easel_core::{LoraRef, extract_lora_tags};
use easel_jobs::Models;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// One LoRA of a request's `loras` field.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraRequest {
    /// The LoRA's name: its file stem in the server's LoRA folder
    /// (`GET /v1/loras`).
    pub name: String,
    /// Its multiplier, from -4 to 4; default 1.
    #[serde(default)]
    pub weight: Option<f64>,
}

/// Whether a prompt's `<lora:…>` tags are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PromptTags {
    /// Removed from the prompt and applied (the default).
    #[default]
    Apply,
    /// Removed from the prompt only (`disable_extra_networks: true`).
    Strip,
}

/// The prompts without their tags, and the LoRAs asked for.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The prompt, tags removed.
    pub prompt: String,
    /// The negative prompt, tags removed.
    pub negative_prompt: Option<String>,
    /// `(name, weight)`: the tags' (unless they are only stripped), then
    /// the `loras` field's.
    pub wanted: Vec<(String, f64)>,
}

/// Takes the tags out of the prompts: the prompts without them, and the
/// LoRAs asked for, the tags' (unless `tags` is [`PromptTags::Strip`])
/// then `loras`'.
pub fn take(
    prompt: &str,
    negative_prompt: Option<&str>,
    loras: Option<&[LoraRequest]>,
    tags: PromptTags,
) -> Result<Taken, ApiError> {
    let strip = |field: &'static str, text: &str| {
        extract_lora_tags(text).map_err(|e| ApiError::invalid(e.code(), field, e.to_string()))
    };
    let (prompt, mut wanted) = strip("prompt", prompt)?;
    let negative_prompt = match negative_prompt {
        Some(text) => {
            let (text, more) = strip("negative_prompt", text)?;
            wanted.extend(more);
            Some(text)
        }
        None => None,
    };
    let mut wanted: Vec<(String, f64)> = match tags {
        PromptTags::Apply => wanted
            .into_iter()
            .map(|t| (t.name, f64::from(t.weight)))
            .collect(),
        PromptTags::Strip => Vec::new(),
    };
    for l in loras.unwrap_or_default() {
        wanted.push((l.name.clone(), l.weight.unwrap_or(1.0)));
    }
    Ok(Taken {
        prompt,
        negative_prompt,
        wanted,
    })
}

/// Resolves the wanted LoRAs against the server's folder.
pub fn resolve(models: &Models, wanted: &[(String, f64)]) -> Result<Vec<LoraRef>, ApiError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    Ok(models.loras().resolve(wanted)?)
}
