//! Stand-ins shared by the crate's unit tests: a model that makes flat
//! grey images without an engine, and parameters for it.

use std::path::PathBuf;

use easel_core::{GenerationParams, OutputOptions, RawParams, RgbImage, SamplerKind, Size, Tier};
use easel_engine::{
    Architecture, CancelToken, EngineError, GeneratedImage, ImageRequest, ModelInfo, Progress,
    ProgressSink, StageTimings,
};

use crate::handle::NewJob;
use crate::models::Generator;

/// The content hash of [`fake_info`]'s model.
pub(crate) const FAKE_HASH: &str = "blake3:0123456789abcdef";

/// A stand-in model: flat grey images (the grey level is the seed mod
/// 256), one progress call per step, cancellation checked between steps
/// as the engine does.
pub(crate) struct FakeModel(pub(crate) ModelInfo);

impl Generator for FakeModel {
    fn info(&self) -> &ModelInfo {
        &self.0
    }

    fn generate(
        &self,
        requests: &[ImageRequest],
        progress: &mut dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<Vec<GeneratedImage>, EngineError> {
        let steps = requests[0].steps;
        for step in 1..=steps {
            if cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            progress.on_step(Progress {
                step,
                total: steps,
                previews: None,
            });
        }
        Ok(requests
            .iter()
            .map(|r| GeneratedImage {
                image: RgbImage {
                    width: r.size.width,
                    height: r.size.height,
                    pixels: vec![(r.seed % 256) as u8; (r.size.width * r.size.height * 3) as usize],
                },
                seed: r.seed,
                sampler: r.sampler.unwrap_or(SamplerKind::Euler),
                warnings: Vec::new(),
                timings: StageTimings::default(),
            })
            .collect())
    }
}

/// The fake model's description: `fake`, hash [`FAKE_HASH`], sizes a
/// multiple of 16 up to 64.
pub(crate) fn fake_info() -> ModelInfo {
    ModelInfo {
        name: "fake".into(),
        path: PathBuf::from("fake"),
        architecture: Architecture::Pixel,
        content_hash: FAKE_HASH.into(),
        default_size: Size::new(16, 16).unwrap(),
        max_side: 64,
        size_multiple: 16,
        default_steps: 3,
        default_guidance: 5.0,
        default_sampler: SamplerKind::Euler,
        weight_bytes: 0,
        inpainting: false,
    }
}

/// Parameters for the fake model: "a red apple", seed 10.
pub(crate) fn fake_params(size: &str, n: i64) -> GenerationParams {
    let info = fake_info();
    GenerationParams::validate(
        RawParams {
            model: "fake".into(),
            prompt: "a red apple".into(),
            size: Some(size.into()),
            n: Some(n),
            seed: Some(10),
            ..Default::default()
        },
        info.default_size,
        info.default_steps,
        info.default_guidance,
        || unreachable!(),
    )
    .unwrap()
}

/// A batch job of `n` fake-model images of `size`, with nothing optional set.
pub(crate) fn fake_job(size: &str, n: i64) -> NewJob {
    NewJob {
        params: fake_params(size, n),
        output: OutputOptions::default(),
        tier: Tier::Batch,
        project: easel_core::ProjectId::default_project(),
        user_id: None,
        end_user: None,
        idempotency_key: None,
        init_image: None,
        mask: None,
        timeout: None,
        policy: None,
        request_id: None,
        trace_parent: None,
    }
}
