//! The generation pipeline: prompts → embeddings → sampling loop → pixels.
//!
//! Classifier-free guidance runs the unconditional and conditional passes
//! as one doubled batch (`[uncond, cond]`, as diffusers does) inside the
//! network closure handed to the sampler, and combines the network outputs
//! `u + g·(c − u)`; since x̂₀ is affine in the network output, this equals
//! guiding x̂₀ and works for ε- and v-prediction alike. At guidance ≤ 1 the
//! unconditional pass is skipped.
//!
//! Batches: each network runs once for the whole batch. The text encoder
//! takes every prompt of the batch in one call; the UNet takes the batch
//! in one call per network evaluation, with guidance as `2·B` rows
//! `[uncond_0 … uncond_{B−1}, cond_0 … cond_{B−1}]` (diffusers' order,
//! `torch.cat([negative, positive])`, so one `narrow` splits the halves);
//! the VAE encodes and decodes in calls of as many images as fit
//! `vae::ACTIVATION_BUDGET_BYTES` (1 GiB of estimated activations): a
//! whole batch at small sizes, one image per call for SD 1.5 at 512 × 512
//! (an estimated 1 GiB of decoder activations an image), so a batch's
//! decode peak stays within about the budget, or one image's decode where
//! that is larger, whatever the batch size. The UNet is not split: its
//! activations at SD sizes are a few MiB a row, and the fused attention
//! builds no score matrix.
//!
//! The price: candle's matmuls and the engine's kernels split their work
//! by problem size, so an image computed in a batch and alone differs in
//! the last float bits. The rule (issue 14, point 6, replacing issue 2's
//! "a batch equals its requests run one at a time, bit for bit"): an
//! image's final latents in a batch stay within **1e-3 absolute** of the
//! same request alone (relative to the largest latent value where that
//! exceeds 1, as in the random-weight test fixtures). Measured for a
//! batch of 3 against each request alone (`src/pipeline/batch_tests.rs`,
//! which asserts the rule; figures in `docs/performance.md`): the bundled
//! model at its defaults 1.4e-5 with identical 8-bit pixels; the tiny
//! SD 1/2/XL fixtures 1.3e-5 to 1.1e-4 on latents up to 45 (img2img
//! 1.1e-5), identical pixels; the tiny pixel fixture 0.11 on values up to
//! 9e4 (1.2e-6 relative), one 8-bit value in 2,304 off by 2. What still
//! holds bit for bit: the same request alone twice, and the same batch
//! twice, give identical pixels.
//!
//! Randomness: image `i` draws everything from row `i` of the noise source
//! (its own seeded generator in [`crate::Model::generate`]). The first draw
//! is the initial noise; image-to-image on a latent model then draws the
//! VAE posterior sample, and an inpainting UNet the masked image's.
//!
//! Inpainting (a request with a [`crate::Mask`], or any request on a model
//! whose UNet takes a mask and a masked image as extra channels) lives in
//! `inpaint`: latent blending after each step for ordinary UNets, extra
//! UNet input channels for inpainting UNets. `start` builds a run's
//! starting point (text-to-image, image-to-image, inpainting) and what
//! inpainting adds to the loop. A batch without masks on an ordinary UNet
//! computes exactly what it computed before masks existed.

use std::time::Instant;

use candle_core::Tensor;
use easel_core::{SamplerKind, ScheduleKind};

use crate::error::{EngineError, Result};
use crate::model::Architecture;
use crate::model::Model;
use crate::preview::{self, PreviewKind};
use crate::request::{
    CancelToken, GeneratedImage, ImageRequest, Progress, ProgressSink, StageTimings,
};
use crate::sampling::{self, ModelDenoiser, NoiseSchedule, NoiseSource};
use crate::unet::Added;

mod inpaint;
mod start;

use inpaint::Inpaint;
use start::Start;

/// What every request of a batch shares, checked.
struct BatchKey {
    width: u32,
    height: u32,
    steps: usize,
    guidance: f32,
    sampler: SamplerKind,
    schedule: ScheduleKind,
    strength: Option<f32>,
    /// The clip skip the text encoder uses (1 = last layer), and the
    /// warning when the model ignores the one asked for.
    clip_skip: (usize, Option<String>),
}

fn check(model: &Model, requests: &[ImageRequest]) -> Result<BatchKey> {
    let first = requests.first().ok_or(EngineError::EmptyBatch)?;
    let info = model.info();
    let (width, height) = (first.size.width, first.size.height);
    let m = info.size_multiple;
    if width == 0 || height == 0 || width % m != 0 || height % m != 0 {
        return Err(EngineError::InvalidSize {
            width,
            height,
            detail: format!("width and height must be positive multiples of {m}"),
        });
    }
    if width > info.max_side || height > info.max_side {
        return Err(EngineError::InvalidSize {
            width,
            height,
            detail: format!(
                "this model accepts at most {} pixels per side",
                info.max_side
            ),
        });
    }
    if first.steps == 0 {
        return Err(EngineError::ZeroSteps);
    }
    if !first.guidance_scale.is_finite() {
        return Err(EngineError::NonFiniteGuidance(first.guidance_scale));
    }
    let strength = first.init_image.as_ref().map(|(_, s)| *s);
    if let Some(s) = strength
        && !(s.is_finite() && (0.0..=1.0).contains(&s))
    {
        return Err(EngineError::InvalidStrength(s));
    }
    for (i, r) in requests.iter().enumerate() {
        if let Some(mask) = &r.mask {
            if r.init_image.is_none() {
                return Err(EngineError::MaskWithoutInitImage);
            }
            if (mask.width(), mask.height()) != (width, height) {
                return Err(EngineError::MaskSize {
                    width,
                    height,
                    found_w: mask.width(),
                    found_h: mask.height(),
                });
            }
        }
        let same = r.size == first.size
            && r.steps == first.steps
            && r.guidance_scale.to_bits() == first.guidance_scale.to_bits()
            && r.sampler == first.sampler
            && r.schedule == first.schedule
            && r.init_image.as_ref().map(|(_, s)| s.to_bits()) == strength.map(f32::to_bits)
            && r.clip_skip == first.clip_skip;
        if !same {
            return Err(EngineError::IncompatibleBatch(format!(
                "request {i} differs from request 0"
            )));
        }
        if let Some((img, _)) = &r.init_image
            && (img.width != width
                || img.height != height
                || img.pixels.len() != (width * height * 3) as usize)
        {
            return Err(EngineError::InitImageSize {
                width,
                height,
                found_w: img.width,
                found_h: img.height,
            });
        }
    }
    let schedule = match first.schedule {
        ScheduleKind::Default => model.scheduler.default_schedule(),
        other => other,
    };
    Ok(BatchKey {
        width,
        height,
        steps: first.steps as usize,
        guidance: first.guidance_scale,
        sampler: first.sampler.unwrap_or(model.info().default_sampler),
        schedule,
        strength,
        clip_skip: conditioning::resolve_clip_skip(model, first.clip_skip)?,
    })
}

/// The batch's conditioning, one row per UNet input row: with guidance
/// `2·B` rows `[uncond_0 … uncond_{B−1}, cond_0 … cond_{B−1}]`, without it
/// `B` rows `[cond_0 … cond_{B−1}]`.
struct Cond {
    /// The UNet's context `[rows, L, D]`.
    context: Tensor,
    /// SDXL's pooled text embeddings `[rows, P]` and time ids `[rows, 6]`.
    added: Option<(Tensor, Tensor)>,
}

/// Plain text conditioning of `prompts`, without prompt syntax, each
/// truncated to one sequence (diffusers' encoding; the pipeline uses
/// [`conditioning::weighted_condition`], which equals this bit for bit on a
/// prompt without syntax that fits one chunk): the UNet's context
/// `[B, L, D]`, SDXL's pooled embeddings `[B, P]`, and a truncation warning
/// per prompt. Rows flagged in `zero` are all zeros (SDXL's empty negative
/// prompt).
///
/// SDXL conditions on both encoders' penultimate hidden states side by side
/// and on the second encoder's projected pooled output, as diffusers'
/// `StableDiffusionXLPipeline.encode_prompt` with `clip_skip=None`.
pub(crate) fn condition(
    model: &Model,
    prompts: &[&str],
    zero: &[bool],
) -> Result<(Tensor, Option<Tensor>, Vec<Option<String>>)> {
    let first = model.text.encode(prompts)?;
    let (context, pooled, warnings) = match &model.text2 {
        None => (first.hidden, None, first.warnings),
        Some(text2) => {
            let second = text2.encode(prompts)?;
            let context = Tensor::cat(&[&first.penultimate, &second.penultimate], 2)?;
            let warnings = first
                .warnings
                .into_iter()
                .zip(second.warnings)
                .map(|(a, b)| a.or(b))
                .collect();
            (context, second.pooled, warnings)
        }
    };
    if !zero.iter().any(|&z| z) {
        return Ok((context, pooled, warnings));
    }
    let keep: Vec<f32> = zero.iter().map(|&z| if z { 0.0 } else { 1.0 }).collect();
    let keep = Tensor::from_vec(keep, zero.len(), context.device())?;
    let context = context.broadcast_mul(&keep.reshape((zero.len(), 1, 1))?)?;
    let pooled = match pooled {
        Some(p) => Some(p.broadcast_mul(&keep.reshape((zero.len(), 1))?)?),
        None => None,
    };
    Ok((context, pooled, warnings))
}

/// The text conditioning of a whole batch in one encoder call per text
/// encoder (see [`Cond`] for the row order), prompts in A1111's syntax
/// ([`conditioning`]), with each image's truncation and clip-skip warnings.
fn encode_batch(
    model: &Model,
    requests: &[ImageRequest],
    key: &BatchKey,
    guided: bool,
) -> Result<(Cond, Vec<Vec<String>>)> {
    let b = requests.len();
    let mut prompts: Vec<&str> = Vec::with_capacity(2 * b);
    let mut zero: Vec<bool> = Vec::with_capacity(2 * b);
    if guided {
        // diffusers' SDXL `force_zeros_for_empty_prompt`: no negative
        // prompt means zero embeddings, not the encoding of "".
        for r in requests {
            prompts.push(r.negative_prompt.as_str());
            zero.push(model.force_zeros_for_empty_prompt && r.negative_prompt.is_empty());
        }
    }
    for r in requests {
        prompts.push(r.prompt.as_str());
        zero.push(false);
    }
    let (context, pooled, warns) =
        conditioning::weighted_condition(model, &prompts, &zero, key.clip_skip.0)?;
    // Row `j` is image `j mod B`'s negative prompt when guided and `j < B`,
    // else its prompt: an image's negative-prompt warning comes first.
    let mut warnings: Vec<Vec<String>> = vec![key.clip_skip.1.iter().cloned().collect(); b];
    for (j, w) in warns.into_iter().enumerate() {
        if let Some(w) = w {
            let which = if guided && j < b {
                "negative prompt"
            } else {
                "prompt"
            };
            warnings[j % b].push(format!("{which}: {w}"));
        }
    }
    let added = match pooled {
        Some(pooled) => {
            // (original size, crop top-left, target size), as diffusers'
            // `_get_add_time_ids` with no cropping.
            let (h, w) = (key.height as f32, key.width as f32);
            let row = [h, w, 0.0, 0.0, h, w];
            let rows: Vec<f32> = (0..prompts.len()).flat_map(|_| row).collect();
            let time_ids = Tensor::from_vec(rows, (prompts.len(), 6), &model.device)?;
            Some((pooled, time_ids))
        }
        None => None,
    };
    Ok((Cond { context, added }, warnings))
}

/// What the denoising part of a batch produced, before decoding.
pub(crate) struct Denoised {
    /// The final latents `[B, C, h, w]` (the pixels in [-1, 1] for a
    /// pixel-space model).
    pub latents: Tensor,
    /// Each image's truncation warnings.
    pub warnings: Vec<Vec<String>>,
    /// The sampler used.
    pub sampler: SamplerKind,
    /// Seconds spent encoding text.
    pub text_encode_s: f64,
    /// Seconds spent in the sampling loop (and the init image's encode).
    pub denoise_s: f64,
}

/// Runs one batch. See the module docs.
pub(crate) fn run(
    model: &Model,
    requests: &[ImageRequest],
    noise: &mut dyn NoiseSource,
    progress: &mut dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<Vec<GeneratedImage>> {
    let Denoised {
        latents,
        warnings,
        sampler,
        text_encode_s,
        denoise_s,
    } = denoise(model, requests, noise, progress, cancel)?;

    // Decoding, in calls of at most `vae::ACTIVATION_BUDGET_BYTES` of
    // activations (see "Batches" in the module docs).
    let b = requests.len();
    let stage = tracing::info_span!("engine.decode", images = b).entered();
    let t2 = Instant::now();
    let images = match &model.vae {
        None => preview::to_rgb(&latents)?,
        Some(vae) => {
            let (_, _, h, w) = latents.dims4()?;
            let per_call = vae.decode_images_per_call(h, w);
            let mut images = Vec::with_capacity(b);
            for start in (0..b).step_by(per_call) {
                let chunk = latents.narrow(0, start, per_call.min(b - start))?;
                images.extend(preview::to_rgb(&vae.decode(&chunk)?)?);
            }
            images
        }
    };
    let decode_s = if model.vae.is_none() {
        0.0
    } else {
        t2.elapsed().as_secs_f64()
    };
    drop(stage);
    let timings = StageTimings {
        text_encode_s,
        denoise_s,
        decode_s,
    };
    Ok(images
        .into_iter()
        .zip(requests)
        .zip(warnings)
        .map(|((image, r), warnings)| GeneratedImage {
            image,
            seed: r.seed,
            sampler,
            warnings,
            timings,
        })
        .collect())
}

/// Text encoding and the sampling loop of one batch: everything but the
/// decode.
pub(crate) fn denoise(
    model: &Model,
    requests: &[ImageRequest],
    noise: &mut dyn NoiseSource,
    progress: &mut dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<Denoised> {
    let key = check(model, requests)?;
    if cancel.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    let b = requests.len();
    let guided = key.guidance > 1.0;
    let preview_kind = match model.info().architecture {
        Architecture::Pixel => PreviewKind::Pixels,
        Architecture::Sdxl => PreviewKind::SdxlLatent,
        Architecture::Sd1 | Architecture::Sd2 => PreviewKind::SdLatent,
    };

    // Each stage is a span (`engine.text_encode`, `engine.denoise`,
    // `engine.decode`) under the caller's current span.
    // 1. Text: every prompt of the batch in one encoder call.
    let stage = tracing::info_span!("engine.text_encode", images = b).entered();
    let t0 = Instant::now();
    let (cond, warnings) = encode_batch(model, requests, &key, guided)?;
    let text_encode_s = t0.elapsed().as_secs_f64();
    drop(stage);

    // 2. Plan and initial state.
    let stage = tracing::info_span!("engine.denoise", images = b, steps = key.steps).entered();
    let t1 = Instant::now();
    let plan = match key.strength {
        Some(s) => {
            sampling::plan_img2img(&model.scheduler, key.sampler, key.schedule, key.steps, s)?
        }
        None => sampling::plan(&model.scheduler, key.sampler, key.schedule, key.steps)?,
    };
    let Start { x_init, inpaint } = start::start(model, requests, &key, &plan, noise)?;

    // 3. Sampling: one UNet call per network evaluation for the whole
    // batch, `2·B` rows when guided.
    let total = plan.steps() as u32;
    let latents = if total == 0 {
        x_init
    } else {
        let unet = &model.unet;
        let guidance = key.guidance as f64;
        let added = cond.added.as_ref().map(|(text_embeds, time_ids)| Added {
            text_embeds,
            time_ids,
        });
        let condition = match &inpaint {
            Some(Inpaint::Condition(extra)) => Some(extra),
            _ => None,
        };
        let net = |x: &Tensor, t: f64| -> Result<Tensor> {
            let with_extra;
            let x = match condition {
                Some(extra) => {
                    with_extra = Tensor::cat(&[x, extra], 1)?;
                    &with_extra
                }
                None => x,
            };
            if guided {
                let rows = Tensor::cat(&[x, x], 0)?;
                let out = unet.forward(&rows, t, &cond.context, added.as_ref())?;
                let uncond = out.narrow(0, 0, b)?;
                let cond = out.narrow(0, b, b)?;
                Ok((&uncond + ((&cond - &uncond)? * guidance)?)?)
            } else {
                unet.forward(x, t, &cond.context, added.as_ref())
            }
        };
        let schedule = NoiseSchedule::from_config(&model.scheduler)?;
        let prediction = model.scheduler.prediction();
        let mut denoiser = ModelDenoiser::new(schedule, prediction, &plan, net);
        let mut on_step = |i: usize, x0: &Tensor| -> Result<()> {
            let step = i as u32 + 1;
            let previews = if progress.wants_preview(step) {
                Some(preview::preview(x0, preview_kind)?)
            } else {
                None
            };
            progress.on_step(Progress {
                step,
                total,
                previews,
            });
            if cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            Ok(())
        };
        match &inpaint {
            Some(Inpaint::Blend(blend)) => sampling::sample_with(
                key.sampler,
                &mut denoiser,
                x_init,
                &plan,
                noise,
                &mut |x, sigma| blend.after_step(x, sigma),
                &mut on_step,
            )?,
            _ => sampling::sample(
                key.sampler,
                &mut denoiser,
                x_init,
                &plan,
                noise,
                &mut on_step,
            )?,
        }
    };
    let latents = match &inpaint {
        Some(Inpaint::Blend(blend)) => blend.finish(&latents)?,
        _ => latents,
    };
    let denoise_s = t1.elapsed().as_secs_f64();
    drop(stage);
    Ok(Denoised {
        latents,
        warnings,
        sampler: key.sampler,
        text_encode_s,
        denoise_s,
    })
}

pub(crate) mod conditioning;

#[cfg(test)]
mod batch_tests;
