//! The `info` of a txt2img or img2img response: a JSON *string*, as the web
//! UI sends it, describing what was made (seeds, sampler, model and its
//! hash, one infotext per image), plus an `easel` object with the jobs and
//! stored images behind it (`GET /v1/images/{id}` has each one's record).

use chrono::Utc;
use easel_core::{GenerationParams, SamplerKind, ScheduleKind};
use easel_store::{Image, Job};
use serde_json::{Value, json};

use crate::sdapi::{names, short_hash};

/// What a task did.
pub struct Made<'a> {
    /// The parameters of its first job (all jobs share them but the seed).
    pub params: &'a GenerationParams,
    /// Images per job.
    pub batch_size: u32,
    /// Its jobs, in order (skipped and interrupted ones included).
    pub jobs: &'a [Job],
    /// The stored images, in order.
    pub images: &'a [Image],
    /// The model's content hash, when known.
    pub model_hash: Option<&'a str>,
    /// Whether it was interrupted.
    pub interrupted: bool,
}

/// The A1111 infotext of one stored image (what its PNG's `parameters`
/// chunk says). `Size` is the generated size, as the web UI writes it:
/// the file may be larger (small outputs are enlarged for the watermark).
pub fn infotext(image: &Image) -> String {
    easel_media::GenerationInfo {
        prompt: image.prompt.clone(),
        negative_prompt: image.negative_prompt.clone(),
        steps: image.steps,
        sampler: image.sampler.parse().unwrap_or(SamplerKind::Euler),
        schedule: image.schedule.parse().unwrap_or(ScheduleKind::Default),
        cfg_scale: image.guidance,
        seed: image.seed,
        width: image.params.size.width,
        height: image.params.size.height,
        model_hash: image.model_hash.clone(),
        model: image.model.clone(),
        denoising_strength: image.params.strength,
        clip_skip: image.params.clip_skip,
        loras: image.params.loras.clone(),
    }
    .to_a1111(true)
}

/// The `info` string.
pub fn info(made: &Made<'_>) -> String {
    let p = made.params;
    let seeds: Vec<u64> = made.images.iter().map(|i| i.seed).collect();
    let first_seed = seeds.first().copied().unwrap_or(p.seed);
    let sampler = p.sampler.map(names::sampler_name);
    let mut extra = serde_json::Map::new();
    if p.schedule != ScheduleKind::Default {
        extra.insert(
            "Schedule type".into(),
            json!(names::scheduler_name(p.schedule)),
        );
    }
    let value = json!({
        "prompt": p.prompt,
        "all_prompts": made.images.iter().map(|i| i.prompt.clone()).collect::<Vec<_>>(),
        "negative_prompt": p.negative_prompt,
        "all_negative_prompts": made.images.iter().map(|i| i.negative_prompt.clone()).collect::<Vec<_>>(),
        "seed": first_seed,
        "all_seeds": seeds,
        "subseed": first_seed,
        "all_subseeds": seeds,
        "subseed_strength": 0,
        "width": p.size.width,
        "height": p.size.height,
        "sampler_name": sampler.or_else(|| made.images.first().and_then(|i| i.sampler.parse().ok()).map(names::sampler_name)),
        "cfg_scale": p.guidance_scale,
        "steps": p.steps,
        "batch_size": made.batch_size,
        "restore_faces": false,
        "face_restoration_model": Value::Null,
        "sd_model_name": p.model,
        "sd_model_hash": made.model_hash.map(short_hash),
        "sd_vae_name": Value::Null,
        "sd_vae_hash": Value::Null,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": p.strength,
        "extra_generation_params": extra,
        "index_of_first_image": 0,
        "infotexts": made.images.iter().map(infotext).collect::<Vec<_>>(),
        "styles": [],
        "job_timestamp": made.jobs.first().map_or_else(Utc::now, |j| j.created_at).format("%Y%m%d%H%M%S").to_string(),
        "clip_skip": p.clip_skip.unwrap_or(1),
        "is_using_inpainting_conditioning": false,
        "version": concat!("easel-", env!("CARGO_PKG_VERSION")),
        "easel": {
            "job_ids": made.jobs.iter().map(|j| j.id.to_string()).collect::<Vec<_>>(),
            "image_ids": made.images.iter().map(|i| i.id.to_string()).collect::<Vec<_>>(),
            "interrupted": made.interrupted,
        },
    });
    value.to_string()
}
