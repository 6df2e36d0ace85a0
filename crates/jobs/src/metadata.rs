//! What an image file says about how it was made, all derived from its
//! [`GenerationRecord`]: the A1111-style `parameters` text that image
//! tools already read (written by the media crate), Easel's own `easel`
//! JSON chunk (the record itself), and the C2PA claim.

use easel_core::OutputFormat;
use easel_media::{ClaimInfo, GenerationInfo, Metadata};

use crate::record::GenerationRecord;

/// The A1111 `parameters` fields of the record.
pub fn generation_info(record: &GenerationRecord) -> GenerationInfo {
    GenerationInfo {
        prompt: record.prompt.clone(),
        negative_prompt: record.negative_prompt.clone(),
        steps: record.steps,
        sampler: record.sampler,
        schedule: record.schedule,
        cfg_scale: record.guidance_scale,
        seed: record.seed,
        width: record.width,
        height: record.height,
        model_hash: record.model_hash.clone(),
        model: record.model.clone(),
        denoising_strength: record.strength,
        clip_skip: record.clip_skip,
        loras: record.loras.clone(),
    }
}

/// The metadata written into the image file: the `parameters` text and the
/// record as the `easel` JSON chunk. `include_prompt` false leaves the
/// prompt and negative prompt out of both.
pub fn for_record(record: &GenerationRecord, include_prompt: bool) -> Metadata {
    Metadata::builder()
        .generation(generation_info(record))
        .record(record.to_json())
        .include_prompt(include_prompt)
        .build()
}

/// The C2PA claim for the record's image, encoded as `format`: Easel and
/// its version as generator, the rendering model's name and content hash,
/// `<image id>.<extension>` as title, and the watermark's id as a soft
/// binding when the image carries one.
pub fn claim_info(record: &GenerationRecord, format: OutputFormat) -> ClaimInfo {
    ClaimInfo {
        generator: "Easel".into(),
        version: record.version.clone(),
        model_name: record.model.clone(),
        model_hash: record.model_hash.clone(),
        title: Some(format!("{}.{}", record.image_id, format.extension())),
        watermark_id: record.watermark_id.clone(),
    }
}
