//! One job's work, start to finish, without any queue: engine call, then
//! post-processing ([`crate::postprocess`]: watermark, moderation,
//! encoding with metadata, signing). The worker runs it on the engine thread; `easel
//! generate` runs it directly. Synchronous and CPU-bound: never call it on
//! an async runtime's worker threads.

use easel_core::{
    GenerationParams, ImageId, Mask, OutputOptions, ParamError, RgbImage, SamplerKind,
};
use easel_engine::{CancelToken, EngineError, ImageRequest, ModelInfo, ProgressSink, StageTimings};
use easel_policy::image::ImageDecision;

use crate::models::Generator;
use crate::postprocess::{ImageInput, Outcome, PostError, PostProcess};
use crate::record::GenerationRecord;

/// Checks the limits only the model knows: its largest side and the
/// multiple its sizes must be. Called at the edge, before the job is stored.
pub fn check_for_model(params: &GenerationParams, info: &ModelInfo) -> Result<(), ParamError> {
    let size = params.size;
    let multiple = info.size_multiple.max(1);
    for (field, v) in [("width", size.width), ("height", size.height)] {
        if v > info.max_side || v % multiple != 0 {
            return Err(ParamError::new(
                "size",
                "invalid_size",
                format!(
                    "{field} {v} is not valid for model `{}`: it must be a multiple of {multiple} \
                     and at most {}",
                    info.name, info.max_side
                ),
            ));
        }
    }
    Ok(())
}

/// An image-to-image job's input: the initial image (at the output size,
/// or at its own with an `inpaint_area`)
/// and, for inpainting, its mask (white: redraw).
#[derive(Debug, Clone, PartialEq)]
pub struct InitInput {
    /// The initial image.
    pub image: RgbImage,
    /// The inpainting mask, when the job has one.
    pub mask: Option<Mask>,
}

impl From<RgbImage> for InitInput {
    fn from(image: RgbImage) -> Self {
        Self { image, mask: None }
    }
}

/// The engine requests of a job: one per image, image `i` with seed `seed + i`.
/// With an [`inpaint_area`](GenerationParams::inpaint_area) the engine
/// gets that region of the initial image and mask, at the job's size.
pub fn image_requests(
    params: &GenerationParams,
    init: Option<&InitInput>,
) -> Result<Vec<ImageRequest>, RenderError> {
    let start = match (init, params.strength) {
        (Some(init), Some(strength)) => {
            let (image, mask) = match params.inpaint_area {
                Some(area) => crate::inpaint_area::engine_input(init, area, params.size)
                    .map_err(|e| RenderError::Post(e.into()))?,
                None => (init.image.clone(), init.mask.clone()),
            };
            Some((image, strength, mask))
        }
        _ => None,
    };
    Ok((0..params.n)
        .map(|i| ImageRequest {
            prompt: params.prompt.clone(),
            negative_prompt: params.negative_prompt.clone(),
            size: params.size,
            steps: params.steps,
            guidance_scale: params.guidance_scale,
            seed: params.image_seed(i),
            sampler: params.sampler,
            schedule: params.schedule,
            clip_skip: params.clip_skip,
            init_image: start.as_ref().map(|(image, s, _)| (image.clone(), *s)),
            mask: start.as_ref().and_then(|(_, _, mask)| mask.clone()),
        })
        .collect())
}

/// One encoded image, ready to store.
#[derive(Debug, Clone)]
pub struct RenderedImage {
    /// The id to store it under (also in its metadata and C2PA title).
    pub id: ImageId,
    /// Position in the job (0-based).
    pub index: u32,
    /// The seed that made it (the same as `record.seed`).
    pub seed: u64,
    /// The sampler actually used (the same as `record.sampler`).
    pub sampler: SamplerKind,
    /// How it was made, with the rendering model's name and content hash
    /// and the watermark's id: the source of its metadata, C2PA claim,
    /// watermark tag and database row.
    pub record: GenerationRecord,
    /// Width in pixels of the file (after any upscale for the watermark).
    pub width: u32,
    /// Height in pixels of the file.
    pub height: u32,
    /// The encoded file.
    pub bytes: Vec<u8>,
    /// Lower-case hex SHA-256 of `bytes`.
    pub sha256: String,
    /// Engine stage timings of the call that made it.
    pub timings: StageTimings,
    /// This image's share of the engine call's device time: the call's
    /// stages divided by the images it made (what the image is charged).
    pub device_seconds: f64,
    /// Seconds per post-processing stage, in order.
    pub post_stages: Vec<(&'static str, f64)>,
    /// The generated image's pHash (16 hex digits), when checked.
    pub perceptual_hash: Option<String>,
    /// Moderation and near-copy results, when any ran.
    pub moderation: Option<serde_json::Value>,
    /// Flags raised by post-processing.
    pub flags: Vec<String>,
    /// How well the image shows its prompt (cosine in [-1, 1]), when scored.
    pub quality_score: Option<f32>,
    /// Non-fatal notes from the engine.
    pub warnings: Vec<String>,
}

/// One job's part of a batch: its parameters, delivery and initial image.
#[derive(Debug, Clone, Copy)]
pub struct BatchPart<'a> {
    /// What to generate.
    pub params: &'a GenerationParams,
    /// How to encode it.
    pub output: &'a OutputOptions,
    /// Image-to-image: the initial image, already at `params.size`, and
    /// its inpainting mask.
    pub init_image: Option<&'a InitInput>,
    /// The job's `job.run` span: its post-processing is traced under it,
    /// and the first part's span is the parent of the shared engine call.
    /// `None`: under whatever span is current.
    pub span: Option<&'a tracing::Span>,
}

/// Runs the engine for every image of the job and post-processes the
/// results.
pub fn render(
    model: &dyn Generator,
    post: &PostProcess,
    params: &GenerationParams,
    output: &OutputOptions,
    init_image: Option<&InitInput>,
    progress: &mut dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<Vec<RenderedImage>, RenderError> {
    let part = BatchPart {
        params,
        output,
        init_image,
        span: None,
    };
    render_batch(model, post, &[part], progress, cancel)?
        .pop()
        .expect("one result per part")
}

/// Runs several jobs that share a batching key (model, size, steps,
/// guidance, sampler, schedule, strength) in **one** engine call, then
/// post-processes each job's images. The engine's per-image seeds make every image
/// identical to the same job run alone.
///
/// The outer error is the engine's (the whole batch failed or was
/// cancelled); the inner ones are per job (post-processing one job's
/// images, or moderation rejecting one of them).
pub fn render_batch(
    model: &dyn Generator,
    post: &PostProcess,
    parts: &[BatchPart<'_>],
    progress: &mut dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<Vec<Result<Vec<RenderedImage>, RenderError>>, RenderError> {
    let mut requests: Vec<ImageRequest> = Vec::new();
    for p in parts {
        requests.extend(image_requests(p.params, p.init_image)?);
    }
    let info = model.info();
    // One engine call for the batch: traced under its first job, linked
    // from the others (a span has one parent).
    let first = parts
        .first()
        .and_then(|p| p.span.cloned())
        .unwrap_or_else(tracing::Span::current);
    let engine = tracing::info_span!(
        parent: &first,
        "engine.generate",
        model = %info.name,
        images = requests.len(),
        jobs = parts.len(),
    );
    for companion in parts.iter().skip(1).filter_map(|p| p.span) {
        engine.follows_from(companion);
    }
    let result = engine.in_scope(|| model.generate(&requests, progress, cancel));
    // The batch's activation buffers, kept by the allocator for reuse across
    // steps, are free now: hand them back so an idle worker does not hold
    // its last peak (easel_engine::alloc).
    easel_engine::alloc::release_free_memory();
    let mut generated = result?.into_iter();
    Ok(parts
        .iter()
        .map(|part| {
            let mine: Vec<_> = generated.by_ref().take(part.params.n as usize).collect();
            let job = part.span.cloned().unwrap_or_else(tracing::Span::current);
            let span = tracing::info_span!(parent: &job, "postprocess", images = mine.len());
            span.in_scope(|| finish_job(post, info, part, mine, requests.len()))
        })
        .collect())
}

fn finish_job(
    post: &PostProcess,
    info: &ModelInfo,
    part: &BatchPart<'_>,
    generated: Vec<easel_engine::GeneratedImage>,
    images_in_call: usize,
) -> Result<Vec<RenderedImage>, RenderError> {
    let mut out = Vec::with_capacity(generated.len());
    for (i, g) in generated.into_iter().enumerate() {
        let id = ImageId::new();
        // Built here, from the model that made these pixels: whatever
        // happens to the pool later cannot change what the image records.
        let record = GenerationRecord::new(part.params, info, g.seed, g.sampler, id);
        let image = match (part.params.inpaint_area, part.init_image) {
            (Some(area), Some(init)) => crate::inpaint_area::paste(init, area, &g.image)
                .map_err(|e| RenderError::Post(e.into()))?,
            _ => g.image,
        };
        let input = ImageInput {
            image,
            record,
            output: part.output,
            model_dir: &info.path,
        };
        let done = match post.process(input)? {
            Outcome::Ready(done) => done,
            Outcome::Blocked(decision) => {
                return Err(RenderError::Rejected {
                    index: i as u32,
                    decision,
                });
            }
        };
        out.push(RenderedImage {
            id,
            index: i as u32,
            seed: g.seed,
            sampler: g.sampler,
            width: done.width,
            height: done.height,
            bytes: done.bytes,
            sha256: done.sha256,
            device_seconds: (g.timings.text_encode_s + g.timings.denoise_s + g.timings.decode_s)
                / images_in_call.max(1) as f64,
            timings: g.timings,
            post_stages: done.stages,
            record: done.record,
            perceptual_hash: done.perceptual_hash,
            quality_score: done.quality_score,
            moderation: done.moderation,
            flags: done.flags,
            warnings: g.warnings,
        });
    }
    Ok(out)
}

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The engine failed (or was cancelled).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Post-processing (watermark, moderation model, encoding, signing)
    /// failed.
    #[error(transparent)]
    Post(#[from] PostError),
    /// Image moderation blocked image `index`: the job is rejected and none
    /// of its images is stored.
    #[error(
        "image {index} was rejected by image moderation (score {:.3} ≥ block threshold {:.3})",
        decision.nsfw_score,
        decision.block_threshold
    )]
    Rejected {
        /// The blocked image's position in the job.
        index: u32,
        /// The moderation decision.
        decision: ImageDecision,
    },
}

impl RenderError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            RenderError::Engine(e) => e.code(),
            RenderError::Post(e) => e.code(),
            RenderError::Rejected { .. } => "image_rejected",
        }
    }

    /// Whether it was a cancellation.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, RenderError::Engine(EngineError::Cancelled))
    }
}

#[cfg(test)]
mod tests {
    use easel_core::OutputFormat;
    use easel_engine::Progress;
    use sha2::Digest as _;

    use super::*;
    use crate::testing::{FakeModel, fake_info as info, fake_params as params};

    #[test]
    fn each_image_gets_seed_plus_its_index() {
        let seeds: Vec<u64> = image_requests(&params("16x16", 3), None)
            .unwrap()
            .iter()
            .map(|r| r.seed)
            .collect();
        assert_eq!(seeds, [10, 11, 12]);
    }

    #[test]
    fn sizes_the_model_cannot_make_are_refused_before_queueing() {
        assert!(check_for_model(&params("32x32", 1), &info()).is_ok());
        let err = check_for_model(&params("24x16", 1), &info()).unwrap_err();
        assert_eq!((err.field, err.code), ("size", "invalid_size"));
        assert!(err.message.contains("multiple of 16"), "{err}");
        let err = check_for_model(&params("128x16", 1), &info()).unwrap_err();
        assert!(err.message.contains("at most 64"), "{err}");
    }

    #[test]
    fn render_encodes_every_image_with_its_metadata_and_hash() {
        let model = FakeModel(info());
        let mut steps = Vec::new();
        let mut sink = |p: Progress| steps.push((p.step, p.total));
        let output = OutputOptions::default();
        let images = render(
            &model,
            &PostProcess::default(),
            &params("16x16", 2),
            &output,
            None,
            &mut sink,
            &CancelToken::new(),
        )
        .unwrap();
        assert_eq!(steps, [(1, 3), (2, 3), (3, 3)]);
        assert_eq!(images.len(), 2);
        assert_eq!((images[1].index, images[1].seed), (1, 11));
        let png = &images[0].bytes;
        assert!(png.starts_with(b"\x89PNG"));
        assert_eq!(images[0].sha256, hex::encode(sha2::Sha256::digest(png)));
        let text = easel_media::read_png_text(png).unwrap();
        let parameters = &text.iter().find(|(k, _)| k == "parameters").unwrap().1;
        assert!(parameters.contains("Seed: 10"), "{parameters}");
        let record = &text.iter().find(|(k, _)| k == "easel").unwrap().1;
        assert!(
            record.contains("\"model_hash\":\"blake3:0123456789abcdef\""),
            "{record}"
        );
        let jpeg = OutputOptions {
            output_format: OutputFormat::Jpeg,
            ..output
        };
        let images = render(
            &model,
            &PostProcess::default(),
            &params("16x16", 1),
            &jpeg,
            None,
            &mut (),
            &CancelToken::new(),
        )
        .unwrap();
        assert!(images[0].bytes.starts_with(&[0xff, 0xd8]));
    }

    #[test]
    fn a_batch_gives_each_job_the_images_it_would_get_alone() {
        let model = FakeModel(info());
        let output = OutputOptions::default();
        let (a, b) = (params("16x16", 2), {
            let mut p = params("16x16", 3);
            p.seed = 100;
            p
        });
        let parts = [
            BatchPart {
                params: &a,
                output: &output,
                init_image: None,
                span: None,
            },
            BatchPart {
                params: &b,
                output: &output,
                init_image: None,
                span: None,
            },
        ];
        let mut steps = 0;
        let mut sink = |_: Progress| steps += 1;
        let batch = render_batch(
            &model,
            &PostProcess::default(),
            &parts,
            &mut sink,
            &CancelToken::new(),
        )
        .unwrap();
        assert_eq!(steps, 3, "one engine call for the whole batch");
        let batch: Vec<Vec<RenderedImage>> = batch.into_iter().map(Result::unwrap).collect();
        for (job, alone) in [(&a, &batch[0]), (&b, &batch[1])] {
            let single = render(
                &model,
                &PostProcess::default(),
                job,
                &output,
                None,
                &mut (),
                &CancelToken::new(),
            )
            .unwrap();
            assert_eq!(single.len(), alone.len());
            // The files differ (each records its own image id); the pixels
            // must not.
            let pixels = |i: &RenderedImage| {
                easel_media::decode_untrusted(&i.bytes, &Default::default()).unwrap()
            };
            for (x, y) in single.iter().zip(alone) {
                assert_eq!((x.index, x.seed), (y.index, y.seed));
                assert_eq!(pixels(x), pixels(y));
            }
        }
        assert_eq!(batch[1][2].seed, 102);
    }

    #[test]
    fn a_cancelled_render_reports_cancellation() {
        let cancel = CancelToken::new();
        cancel.cancel();
        let err = render(
            &FakeModel(info()),
            &PostProcess::default(),
            &params("16x16", 1),
            &OutputOptions::default(),
            None,
            &mut (),
            &cancel,
        )
        .unwrap_err();
        assert!(err.is_cancelled());
        assert_eq!(err.code(), "cancelled");
    }
}
