//! The database row of one stored image, derived from its
//! [`crate::record::GenerationRecord`] and what post-processing measured.

use easel_store::{Job, NewImage, StageTiming};

use crate::pipeline::RenderedImage;

/// The row of `image` (its file already written under `object_key`,
/// `byte_size` bytes). Every generation field, the model's content hash
/// included, comes from the image's record, as rendered: nothing is looked
/// up again, so an eviction between render and store changes nothing.
pub(crate) fn image_row(
    job: &Job,
    image: &RenderedImage,
    object_key: String,
    byte_size: u64,
    cost: f64,
) -> NewImage {
    let mut timings = vec![
        timing("text_encode", image.timings.text_encode_s),
        timing("denoise", image.timings.denoise_s),
        timing("decode", image.timings.decode_s),
    ];
    timings.extend(image.post_stages.iter().map(|&(s, t)| timing(s, t)));
    let record = image.record.clone();
    NewImage {
        id: image.id,
        index_in_job: image.index,
        prompt: record.prompt,
        negative_prompt: record.negative_prompt,
        seed: record.seed,
        params: job.params.clone(),
        model: record.model,
        model_hash: record.model_hash,
        sampler: record.sampler.as_str().into(),
        schedule: record.schedule.as_str().into(),
        steps: record.steps,
        guidance: record.guidance_scale,
        width: image.width,
        height: image.height,
        format: job.options.output_format,
        byte_size,
        sha256: image.sha256.clone(),
        object_key,
        timings,
        warnings: image.warnings.clone(),
        watermark_id: record.watermark_id,
        perceptual_hash: image.perceptual_hash.clone(),
        quality_score: image.quality_score,
        device_seconds: image.device_seconds,
        cost,
        request_id: job.request_id.clone(),
        moderation: image.moderation.clone(),
        flags: image.flags.clone(),
    }
}

fn timing(stage: &str, seconds: f64) -> StageTiming {
    StageTiming {
        stage: stage.into(),
        seconds,
    }
}
