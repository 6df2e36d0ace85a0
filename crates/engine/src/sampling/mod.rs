//! Samplers and sigma schedules, golden-tested against diffusers 0.42.1.
//!
//! The design follows k-diffusion (`k_diffusion/sampling.py` and
//! `external.py`, <https://github.com/crowsonkb/k-diffusion>, commit
//! 686dbad0f39640ea25c8a8c6a6e56bb40eacefa2): the network is wrapped once as
//! a [`Denoiser`] (x in k-diffusion scaling x = x₀ + σ·ε, σ → x̂₀), and every
//! sampler is a small function over the sigmas of a [`Plan`], with any
//! multistep state a local variable. Randomness is an argument
//! ([`NoiseSource`]), one generator per image ([`SeededNoise`]).
//!
//! Where the samplers live in diffusers' variance-preserving space (DDIM,
//! DPM++ 2M, LCM) they are rewritten in this scaling; [`plan`] reproduces each
//! diffusers scheduler's own timesteps, sigmas and starting noise level, so
//! that a run matches the reference up to float rounding.
//!
//! Using it, for text-to-image:
//! ```ignore
//! let plan = sampling::plan(&cfg, sampler, schedule, steps)?;
//! let mut noise = SeededNoise::new(&seeds, &device);
//! let x = (noise.sample(&[4, h / 8, w / 8])? * plan.init_noise_sigma)?;
//! let mut den = ModelDenoiser::new(NoiseSchedule::from_config(&cfg)?, cfg.prediction(), &plan, net);
//! let latents = sampling::sample(sampler, &mut den, x, &plan, &mut noise, &mut on_step)?;
//! ```
//!
//! # Layout
//! - [`config`]: `scheduler_config.json` as data; the folder's default sampler and schedule.
//! - [`noise_schedule`]: betas → ᾱ → σ; σ ↔ t.
//! - `spacing`: the training timesteps a run visits, per diffusers scheduler family.
//! - [`schedules`]: Karras and exponential sigma schedules.
//! - `plan`: [`plan`] and [`plan_img2img`] build a [`Plan`]; impossible combinations fail there.
//! - [`denoiser`]: the [`Denoiser`] trait and [`ModelDenoiser`] (ε, v, x₀ networks).
//! - [`noise`]: [`NoiseSource`], [`SeededNoise`], [`ReplayNoise`].
//! - `euler`, `euler_ancestral`, `heun`, `dpmpp_2m`, `ddim`, `lcm`: one sampler each.

pub mod config;
pub mod denoiser;
pub mod noise;
pub mod noise_schedule;
pub mod schedules;

mod ddim;
mod dpmpp_2m;
mod euler;
mod euler_ancestral;
mod heun;
mod lcm;
mod plan;
mod spacing;

use candle_core::Tensor;
use easel_core::SamplerKind;

use crate::error::{EngineError, Result};

pub use config::{BetaSchedule, FinalSigmas, Prediction, SchedulerConfig};
pub use denoiser::{Denoiser, ModelDenoiser};
pub use noise::{NoiseSource, ReplayNoise, SeededNoise};
pub use noise_schedule::NoiseSchedule;
pub use plan::{KARRAS_RHO, Plan, plan, plan_img2img};

/// The per-step callback, called after each step's update with the step
/// index (0-based) and that step's x̂₀ estimate (Heun: of its first
/// evaluation; LCM: the boundary-condition estimate). Returning an error (the
/// pipeline returns `EngineError::Cancelled`) stops the run between steps.
pub type OnStep<'a> = &'a mut dyn FnMut(usize, &Tensor) -> Result<()>;

/// A hook on the sampler's state: called with x (k-diffusion scaling) and
/// the noise level σ it is now at, after every step's update but the last
/// (and, for Heun, also on the Euler point of each second-order step, which
/// diffusers' `HeunDiscreteScheduler` returns as a step of its own); the run
/// continues from what it returns. Inpainting blends the kept region back
/// in here (see `pipeline::inpaint`); [`sample`] passes x through.
pub type AfterStep<'a> = &'a mut dyn FnMut(Tensor, f64) -> Result<Tensor>;

/// Runs `kind` over `plan` from `x` and returns the final latent, as
/// diffusers' scheduler loop would hand it to the decoder.
///
/// `x` is the starting point in k-diffusion scaling: `noise *
/// plan.init_noise_sigma` for text-to-image, `x0 + noise * plan.sigmas[0]`
/// for image-to-image. `noise` is drawn from only by Euler ancestral and LCM.
/// For DDIM and DPM++ 2M with a final sigma above zero, the result is the
/// variance-preserving latent x / sqrt(σ_last² + 1), which is what diffusers
/// returns.
pub fn sample(
    kind: SamplerKind,
    denoiser: &mut dyn Denoiser,
    x: Tensor,
    plan: &Plan,
    noise: &mut dyn NoiseSource,
    on_step: OnStep<'_>,
) -> Result<Tensor> {
    sample_with(kind, denoiser, x, plan, noise, &mut |x, _| Ok(x), on_step)
}

/// [`sample`] with a hook on x after each step (see [`AfterStep`]).
pub fn sample_with(
    kind: SamplerKind,
    denoiser: &mut dyn Denoiser,
    x: Tensor,
    plan: &Plan,
    noise: &mut dyn NoiseSource,
    after_step: AfterStep<'_>,
    on_step: OnStep<'_>,
) -> Result<Tensor> {
    if kind != plan.sampler {
        return Err(EngineError::UnsupportedSampler {
            sampler: kind.to_string(),
            detail: format!("the plan was made for `{}`", plan.sampler),
        });
    }
    let x = match kind {
        SamplerKind::Euler => euler::sample(denoiser, x, plan, after_step, on_step)?,
        SamplerKind::EulerAncestral => {
            euler_ancestral::sample(denoiser, x, plan, noise, after_step, on_step)?
        }
        SamplerKind::Heun => heun::sample(denoiser, x, plan, after_step, on_step)?,
        SamplerKind::DpmPp2m => dpmpp_2m::sample(denoiser, x, plan, after_step, on_step)?,
        SamplerKind::Ddim => ddim::sample(denoiser, x, plan, after_step, on_step)?,
        SamplerKind::Lcm => lcm::sample(denoiser, x, plan, noise, after_step, on_step)?,
    };
    let last = plan.sigmas[plan.sigmas.len() - 1];
    if plan.rules.vp_output && last > 0.0 {
        Ok((x / (last * last + 1.0).sqrt())?)
    } else {
        Ok(x)
    }
}
