//! What the engine is asked to do and what it returns.
//!
//! A call to [`crate::Model::generate`] takes a slice of [`ImageRequest`]s
//! that share one *batch key* (size, steps, sampler, schedule, guidance,
//! strength, clip skip) and returns one [`GeneratedImage`] per request, in
//! order (an inpainting mask is the request's own, not part of the key).
//! Each request carries its own seed: the engine gives every image its own
//! random generator, so its noise never depends on what else shared the
//! batch, and its pixels match the same request run alone within the
//! batching tolerance of the pipeline (one forward pass per batch; see
//! `pipeline`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use easel_core::{Mask, RgbImage};
use easel_core::{SamplerKind, ScheduleKind, Size};

/// One image to generate.
#[derive(Debug, Clone)]
pub struct ImageRequest {
    /// The prompt, in AUTOMATIC1111's syntax (`(word:1.2)`, `[word]`,
    /// `BREAK`; see [`easel_core::prompt`]) with any `<lora:…>` tags
    /// already removed ([`easel_core::extract_lora_tags`]).
    pub prompt: String,
    /// The negative prompt ("" for none), in the same syntax.
    pub negative_prompt: String,
    /// Output size.
    pub size: Size,
    /// Denoising steps (at least 1).
    pub steps: u32,
    /// Classifier-free guidance scale; at or below 1.0 no unconditional pass is run.
    pub guidance_scale: f32,
    /// Seed of this image's own generator.
    pub seed: u64,
    /// Sampler; `None` uses the model folder's scheduler config.
    pub sampler: Option<SamplerKind>,
    /// Sigma schedule.
    pub schedule: ScheduleKind,
    /// AUTOMATIC1111's "Clip skip": `Some(2)` conditions on the text
    /// encoder's penultimate layer (then its final layer norm), and so on;
    /// `None` (the default) and `Some(1)` use the last layer. Accepted in
    /// `1..=12` and up to the encoder's layer count; it applies to SD 1.x
    /// only and is ignored, with a warning, elsewhere (as A1111 does). Part
    /// of the batch key.
    pub clip_skip: Option<u32>,
    /// Image-to-image: the initial image (resized to `size` by the caller) and strength in [0, 1].
    pub init_image: Option<(RgbImage, f32)>,
    /// Inpainting: which pixels of `init_image` to repaint (1.0/255), and
    /// which to keep (0), at `size`. Needs `init_image`. Per request: a
    /// batch may mix masks and unmasked requests. Default `None`: the whole
    /// image is repainted (plain image-to-image).
    pub mask: Option<Mask>,
}

/// Wall-clock time spent in each engine stage, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimings {
    /// Tokenising and encoding prompts.
    pub text_encode_s: f64,
    /// The whole denoising loop.
    pub denoise_s: f64,
    /// Decoding latents to pixels (0 for pixel-space models).
    pub decode_s: f64,
}

/// One generated image with what is needed to record it.
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    /// The pixels.
    pub image: RgbImage,
    /// The seed that made it.
    pub seed: u64,
    /// The sampler actually used (the model default resolved).
    pub sampler: SamplerKind,
    /// Non-fatal notes, e.g. "prompt truncated to 8 chunks of 75 tokens" or an
    /// ignored clip skip.
    pub warnings: Vec<String>,
    /// Timings of the call this image was part of.
    pub timings: StageTimings,
}

/// Progress of a running generation, reported after every step.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Steps completed (1-based).
    pub step: u32,
    /// Total steps of this call.
    pub total: u32,
    /// Cheap previews (one per image), when asked for at this step.
    pub previews: Option<Vec<RgbImage>>,
}

/// Receives progress; returns whether a preview is wanted at the next step.
pub trait ProgressSink {
    /// Called after each denoising step.
    fn on_step(&mut self, progress: Progress);
    /// Whether the caller wants previews at step `step` (default: never).
    fn wants_preview(&self, _step: u32) -> bool {
        false
    }
}

/// A sink that ignores progress.
impl ProgressSink for () {
    fn on_step(&mut self, _progress: Progress) {}
}

impl<F: FnMut(Progress)> ProgressSink for F {
    fn on_step(&mut self, progress: Progress) {
        self(progress)
    }
}

/// Cooperative cancellation, checked between denoising steps. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst)
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
