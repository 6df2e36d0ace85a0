//! The generation pipeline: prompts → embeddings → sampling loop → pixels.
//!
//! Classifier-free guidance runs the unconditional and conditional passes
//! as one doubled batch (`[uncond, cond]`, as diffusers does) inside the
//! network closure handed to the sampler, and combines the network outputs
//! `u + g·(c − u)`; since x̂₀ is affine in the network output, this equals
//! guiding x̂₀ and works for ε- and v-prediction alike. At guidance ≤ 1 the
//! unconditional pass is skipped.
//!
//! Batches: the networks (text encoder, UNet, VAE) run one image at a time
//! inside a batch, while the sampler steps the whole batch. candle's CPU
//! matmul and convolution kernels block their work by problem size, so the
//! same image computed in a batch of 3 and alone differs in the last float
//! bits and, after rounding, in a few 8-bit pixels; per-image network calls
//! make a batch give exactly the pixels of the same requests run one at a
//! time (issue 2, point 5). On 2 CPU cores batching brings no throughput
//! (batch 2 costs twice batch 1, see MODELS.md), so nothing is lost there;
//! a GPU path that wants real batching would trade this guarantee away.
//!
//! Randomness: image `i` draws everything from row `i` of the noise source
//! (its own seeded generator in [`crate::Model::generate`]). The first draw
//! is the initial noise; image-to-image on a latent model then draws the
//! VAE posterior sample.

use std::time::Instant;

use candle_core::Tensor;
use easel_core::{SamplerKind, ScheduleKind};

use crate::error::{EngineError, Result};
use crate::model::Architecture;
use crate::model::Model;
use crate::preview::{self, PreviewKind};
use crate::request::{
    CancelToken, GeneratedImage, ImageRequest, Progress, ProgressSink, RgbImage, StageTimings,
};
use crate::sampling::{self, ModelDenoiser, NoiseSchedule, NoiseSource};
use crate::unet::Added;

/// What every request of a batch shares, checked.
struct BatchKey {
    width: u32,
    height: u32,
    steps: usize,
    guidance: f32,
    sampler: SamplerKind,
    schedule: ScheduleKind,
    strength: Option<f32>,
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
        let same = r.size == first.size
            && r.steps == first.steps
            && r.guidance_scale.to_bits() == first.guidance_scale.to_bits()
            && r.sampler == first.sampler
            && r.schedule == first.schedule
            && r.init_image.as_ref().map(|(_, s)| s.to_bits()) == strength.map(f32::to_bits);
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
    })
}

/// One image's conditioning: rows `[uncond, cond]` (or `[cond]`).
struct Cond {
    context: Tensor,
    pooled: Option<Tensor>,
    time_ids: Option<Tensor>,
}

/// Text conditioning of `prompts`: the UNet's context `[B, L, D]`, SDXL's
/// pooled embeddings `[B, P]`, and a truncation warning per prompt. Rows
/// flagged in `zero` are all zeros (SDXL's empty negative prompt).
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

/// Runs one batch. See the module docs.
pub(crate) fn run(
    model: &Model,
    requests: &[ImageRequest],
    noise: &mut dyn NoiseSource,
    progress: &mut dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<Vec<GeneratedImage>> {
    let key = check(model, requests)?;
    if cancel.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    let b = requests.len();
    let guided = key.guidance > 1.0;
    let pixel_space = model.vae.is_none();
    let preview_kind = match model.info().architecture {
        Architecture::Pixel => PreviewKind::Pixels,
        Architecture::Sdxl => PreviewKind::SdxlLatent,
        Architecture::Sd1 | Architecture::Sd2 => PreviewKind::SdLatent,
    };

    // Each stage is a span (`engine.text_encode`, `engine.denoise`,
    // `engine.decode`) under the caller's current span.
    // 1. Text, one image at a time (see "Batches" in the module docs).
    let stage = tracing::info_span!("engine.text_encode", images = b).entered();
    let t0 = Instant::now();
    let mut conds = Vec::with_capacity(b);
    let mut warnings: Vec<Vec<String>> = vec![Vec::new(); b];
    for (i, r) in requests.iter().enumerate() {
        let (prompts, zero): (Vec<&str>, Vec<bool>) = if guided {
            // diffusers' SDXL `force_zeros_for_empty_prompt`: no negative
            // prompt means zero embeddings, not the encoding of "".
            let zero_neg = model.force_zeros_for_empty_prompt && r.negative_prompt.is_empty();
            (
                vec![r.negative_prompt.as_str(), r.prompt.as_str()],
                vec![zero_neg, false],
            )
        } else {
            (vec![r.prompt.as_str()], vec![false])
        };
        let (context, pooled, warns) = condition(model, &prompts, &zero)?;
        for (j, w) in warns.iter().enumerate() {
            if let Some(w) = w {
                let which = if guided && j == 0 {
                    "negative prompt"
                } else {
                    "prompt"
                };
                warnings[i].push(format!("{which}: {w}"));
            }
        }
        let time_ids = match pooled {
            Some(_) => {
                // (original size, crop top-left, target size), as diffusers'
                // `_get_add_time_ids` with no cropping.
                let (h, w) = (key.height as f32, key.width as f32);
                let row = [h, w, 0.0, 0.0, h, w];
                let rows: Vec<f32> = (0..prompts.len()).flat_map(|_| row).collect();
                Some(Tensor::from_vec(rows, (prompts.len(), 6), &model.device)?)
            }
            None => None,
        };
        conds.push(Cond {
            context,
            pooled,
            time_ids,
        });
    }
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
    let scale = model.vae.as_ref().map_or(1, |v| v.config.scale_factor());
    let channels = model.unet.config.in_channels;
    let shape = [
        channels,
        key.height as usize / scale,
        key.width as usize / scale,
    ];
    let init_noise = noise.sample(&shape)?;
    let x_init = match key.strength {
        None => (init_noise * plan.init_noise_sigma)?,
        Some(_) => {
            let images: Vec<&RgbImage> = requests
                .iter()
                .map(|r| &r.init_image.as_ref().expect("checked: all img2img").0)
                .collect();
            let pixels = preview::from_rgb(&images, &model.device)?;
            let x0 = match &model.vae {
                None => pixels,
                Some(vae) => {
                    let mut means = Vec::with_capacity(b);
                    let mut stds = Vec::with_capacity(b);
                    for i in 0..b {
                        let (m, s) = vae.encode(&pixels.narrow(0, i, 1)?)?;
                        means.push(m);
                        stds.push(s);
                    }
                    let (mean, std) = (Tensor::cat(&means, 0)?, Tensor::cat(&stds, 0)?);
                    let eps = noise.sample(&mean.dims()[1..])?;
                    (mean + (std * eps)?)?
                }
            };
            (x0 + (init_noise * plan.sigmas[0])?)?
        }
    };

    // 3. Sampling.
    let total = plan.steps() as u32;
    let x = if total == 0 {
        x_init
    } else {
        let unet = &model.unet;
        let guidance = key.guidance as f64;
        let net = |x: &Tensor, t: f64| -> Result<Tensor> {
            let mut outs = Vec::with_capacity(b);
            for (i, c) in conds.iter().enumerate() {
                let xi = x.narrow(0, i, 1)?;
                let added = match (&c.pooled, &c.time_ids) {
                    (Some(text_embeds), Some(time_ids)) => Some(Added {
                        text_embeds,
                        time_ids,
                    }),
                    _ => None,
                };
                let added = added.as_ref();
                outs.push(if guided {
                    let out = unet.forward(&Tensor::cat(&[&xi, &xi], 0)?, t, &c.context, added)?;
                    let uncond = out.narrow(0, 0, 1)?;
                    let cond = out.narrow(0, 1, 1)?;
                    (&uncond + ((&cond - &uncond)? * guidance)?)?
                } else {
                    unet.forward(&xi, t, &c.context, added)?
                });
            }
            Ok(Tensor::cat(&outs, 0)?)
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
        sampling::sample(
            key.sampler,
            &mut denoiser,
            x_init,
            &plan,
            noise,
            &mut on_step,
        )?
    };
    let denoise_s = t1.elapsed().as_secs_f64();
    drop(stage);

    // 4. Decode.
    let stage = tracing::info_span!("engine.decode", images = b).entered();
    let t2 = Instant::now();
    let mut images = Vec::with_capacity(b);
    for i in 0..b {
        images.extend(preview::to_rgb(&model.decode(&x.narrow(0, i, 1)?)?)?);
    }
    let decode_s = if pixel_space {
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
            sampler: key.sampler,
            warnings,
            timings,
        })
        .collect())
}
