//! The generation record written into every image file: the A1111-style
//! `parameters` text that image tools already read (built by the media
//! crate), and Easel's own JSON record.

use easel_core::{GenerationParams, SamplerKind};
use easel_engine::ModelInfo;
use easel_media::{GenerationInfo, Metadata};

/// Easel's record of one image, as JSON: every parameter, the model's name
/// and content hash, and this image's seed and sampler.
pub fn easel_json(
    params: &GenerationParams,
    info: &ModelInfo,
    seed: u64,
    sampler: SamplerKind,
) -> serde_json::Value {
    serde_json::json!({
        "generator": "easel",
        "version": env!("CARGO_PKG_VERSION"),
        "prompt": params.prompt,
        "negative_prompt": params.negative_prompt,
        "seed": seed,
        "steps": params.steps,
        "guidance_scale": params.guidance_scale,
        "sampler": sampler.as_str(),
        "schedule": params.schedule.as_str(),
        "strength": params.strength,
        "width": params.size.width,
        "height": params.size.height,
        "model": info.name,
        "model_hash": info.content_hash,
        "architecture": info.architecture,
    })
}

/// The metadata written into one image file, with Easel's record as built
/// by [`easel_json`].
pub fn for_image(
    params: &GenerationParams,
    info: &ModelInfo,
    seed: u64,
    sampler: SamplerKind,
) -> Metadata {
    let record = easel_json(params, info, seed, sampler);
    for_image_with(params, info, seed, sampler, record, true)
}

/// The metadata written into one image file, with a given JSON record;
/// `include_prompt` false leaves the prompt and negative prompt out of the
/// `parameters` text (the caller leaves them out of `record`).
pub fn for_image_with(
    params: &GenerationParams,
    info: &ModelInfo,
    seed: u64,
    sampler: SamplerKind,
    record: serde_json::Value,
    include_prompt: bool,
) -> Metadata {
    Metadata::builder()
        .generation(GenerationInfo {
            prompt: params.prompt.clone(),
            negative_prompt: params.negative_prompt.clone(),
            steps: params.steps,
            sampler,
            schedule: params.schedule,
            cfg_scale: params.guidance_scale,
            seed,
            width: params.size.width,
            height: params.size.height,
            model_hash: info.content_hash.clone(),
            model: info.name.clone(),
            denoising_strength: params.strength,
        })
        .record(record)
        .include_prompt(include_prompt)
        .build()
}
