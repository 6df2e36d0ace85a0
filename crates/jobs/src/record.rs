//! [`GenerationRecord`]: the one typed record of how an image was made,
//! built once per image when its pixels come out of the engine, from the
//! parameters, the image's own seed and sampler, and the [`ModelInfo`] of
//! the model that actually rendered it.
//!
//! Everything that describes the image is derived from it, never rebuilt
//! from other sources: the A1111 `parameters` text and the `easel` JSON
//! chunk ([`crate::metadata`]), the C2PA claim, the watermark's image tag
//! ([`GenerationRecord::image_tag`], over the canonical encoding in
//! `tag`), and the database row ([`crate::batch`]).

mod tag;
#[cfg(test)]
mod tests;

use easel_core::{GenerationParams, ImageId, SamplerKind, ScheduleKind};
use easel_engine::{Architecture, ModelInfo};
use serde::{Deserialize, Serialize};

pub use tag::TAG_ENCODING_VERSION;

/// The value of [`GenerationRecord::generator`].
pub const GENERATOR: &str = "easel";

/// How one image was made. Serialized as is, it is the `easel` JSON chunk
/// of the image file (field names are that chunk's keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRecord {
    /// Always [`GENERATOR`] (`"easel"`).
    pub generator: String,
    /// The Easel version that made the image.
    pub version: String,
    /// The id the image is stored under.
    #[serde(with = "image_id_text")]
    pub image_id: ImageId,
    /// The prompt, as given to the model.
    pub prompt: String,
    /// The negative prompt; empty when none.
    pub negative_prompt: String,
    /// This image's seed (the job's seed plus the image's index).
    pub seed: u64,
    /// Denoising steps.
    pub steps: u32,
    /// Classifier-free guidance scale.
    pub guidance_scale: f32,
    /// The sampler actually used (the model's default resolved).
    pub sampler: SamplerKind,
    /// The sigma schedule.
    pub schedule: ScheduleKind,
    /// Image-to-image strength; `None` (written as `null`) for
    /// text-to-image.
    pub strength: Option<f32>,
    /// Generated width in pixels (before any upscale for the watermark).
    pub width: u32,
    /// Generated height in pixels.
    pub height: u32,
    /// The rendering model's name.
    pub model: String,
    /// The rendering model's content hash (e.g. `blake3:…`), taken from the
    /// model that made the pixels, never looked up again later.
    pub model_hash: String,
    /// The rendering model's architecture.
    pub architecture: Architecture,
    /// The LoRAs merged into the model, with their weights and content
    /// hashes (`sha256:…`), sorted by name; empty (and left out of the
    /// JSON) for the base model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<easel_core::LoraRef>,
    /// The watermark's id ([`easel_media::WatermarkPayload::id`]) once the
    /// image is marked; `None` (and left out of the JSON) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_id: Option<String>,
    /// AUTOMATIC1111's clip skip, when one above 1 was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_skip: Option<u32>,
    /// Whether only a masked part of an initial image was redrawn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inpainted: bool,
}

impl GenerationRecord {
    /// The record of image `image_id`, rendered by `model` from `params`
    /// with this image's `seed` and the `sampler` the engine used. Not yet
    /// watermarked.
    pub fn new(
        params: &GenerationParams,
        model: &ModelInfo,
        seed: u64,
        sampler: SamplerKind,
        image_id: ImageId,
    ) -> Self {
        Self {
            generator: GENERATOR.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            image_id,
            prompt: params.prompt.clone(),
            negative_prompt: params.negative_prompt.clone(),
            seed,
            steps: params.steps,
            guidance_scale: params.guidance_scale,
            sampler,
            schedule: params.schedule,
            strength: params.strength,
            width: params.size.width,
            height: params.size.height,
            model: model.name.clone(),
            model_hash: model.content_hash.clone(),
            architecture: model.architecture,
            loras: params.loras.clone(),
            watermark_id: None,
            clip_skip: params.clip_skip.filter(|&c| c > 1),
            inpainted: params.masked,
        }
    }

    /// The `easel` JSON chunk: this record, serialized.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a generation record always serializes")
    }
}

/// [`ImageId`] as its text form (`img_…`).
mod image_id_text {
    use easel_core::ImageId;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(id: &ImageId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ImageId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}
