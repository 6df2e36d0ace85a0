//! One job's work, start to finish, without any queue: engine call, then
//! encoding with metadata. The worker runs it on the engine thread; `easel
//! generate` runs it directly. Synchronous and CPU-bound: never call it on
//! an async runtime's worker threads.

use std::time::Instant;

use easel_core::{GenerationParams, OutputOptions, ParamError, RgbImage, SamplerKind};
use easel_engine::{CancelToken, EngineError, ImageRequest, ModelInfo, ProgressSink, StageTimings};
use sha2::Digest as _;

use crate::models::Generator;

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

/// The engine requests of a job: one per image, image `i` with seed `seed + i`.
pub fn image_requests(
    params: &GenerationParams,
    init_image: Option<&RgbImage>,
) -> Vec<ImageRequest> {
    (0..params.n)
        .map(|i| ImageRequest {
            prompt: params.prompt.clone(),
            negative_prompt: params.negative_prompt.clone(),
            size: params.size,
            steps: params.steps,
            guidance_scale: params.guidance_scale,
            seed: params.image_seed(i),
            sampler: params.sampler,
            schedule: params.schedule,
            init_image: match (init_image, params.strength) {
                (Some(image), Some(strength)) => Some((image.clone(), strength)),
                _ => None,
            },
        })
        .collect()
}

/// One encoded image, ready to store.
#[derive(Debug, Clone)]
pub struct RenderedImage {
    /// Position in the job (0-based).
    pub index: u32,
    /// The seed that made it.
    pub seed: u64,
    /// The sampler actually used.
    pub sampler: SamplerKind,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The encoded file.
    pub bytes: Vec<u8>,
    /// Lower-case hex SHA-256 of `bytes`.
    pub sha256: String,
    /// Engine stage timings of the call that made it.
    pub timings: StageTimings,
    /// Seconds spent encoding this image.
    pub encode_s: f64,
    /// Non-fatal notes from the engine.
    pub warnings: Vec<String>,
}

/// Runs the engine for every image of the job and encodes the results with
/// their generation metadata.
pub fn render(
    model: &dyn Generator,
    params: &GenerationParams,
    output: &OutputOptions,
    init_image: Option<&RgbImage>,
    progress: &mut dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<Vec<RenderedImage>, RenderError> {
    let requests = image_requests(params, init_image);
    let generated = model.generate(&requests, progress, cancel)?;
    let info = model.info();
    generated
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let started = Instant::now();
            let metadata = crate::metadata::for_image(params, info, g.seed, g.sampler);
            let bytes = easel_media::encode(
                &g.image,
                output.output_format,
                output.output_compression,
                &metadata,
            )?;
            let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
            Ok(RenderedImage {
                index: i as u32,
                seed: g.seed,
                sampler: g.sampler,
                width: g.image.width,
                height: g.image.height,
                bytes,
                sha256,
                timings: g.timings,
                encode_s: started.elapsed().as_secs_f64(),
                warnings: g.warnings,
            })
        })
        .collect()
}

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The engine failed (or was cancelled).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Encoding failed.
    #[error(transparent)]
    Encode(#[from] easel_media::MediaError),
}

impl RenderError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            RenderError::Engine(e) => e.code(),
            RenderError::Encode(e) => e.code(),
        }
    }

    /// Whether it was a cancellation.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, RenderError::Engine(EngineError::Cancelled))
    }
}
