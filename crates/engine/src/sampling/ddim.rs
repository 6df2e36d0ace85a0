//! Deterministic DDIM (η = 0).
//!
//! Song et al. 2021 (<https://arxiv.org/abs/2010.02502>), eq. 12 with σ_t = 0;
//! diffusers 0.42.1 `DDIMScheduler.step` with `eta=0`. In k-diffusion scaling
//! the update is x ← x̂₀ + σ_prev·ε̂ with ε̂ = (x − x̂₀)/σ, i.e. an Euler step;
//! what makes it DDIM is where it lands: diffusers steps from t to
//! t − ⌊T/steps⌋ (or to ᾱ = 1, or ᾱ₀, past the start), which for linspace and
//! trailing spacing is not the next timestep of the run. The variance-
//! preserving sample is then evaluated at the next timestep as it is, which in
//! this scaling means multiplying x by sqrt(1 + σ_next²)/sqrt(1 + σ_prev²).
//! `clip_sample` clamps x̂₀ but not ε̂, as diffusers does by default.

use candle_core::Tensor;

use crate::error::Result;

use super::{AfterStep, Denoiser, OnStep, Plan};

/// One network call per step.
pub(crate) fn sample(
    denoiser: &mut dyn Denoiser,
    mut x: Tensor,
    plan: &Plan,
    after_step: AfterStep<'_>,
    on_step: OnStep<'_>,
) -> Result<Tensor> {
    for i in 0..plan.steps() {
        let (sigma, next) = (plan.sigmas[i], plan.sigmas[i + 1]);
        let land = plan.rules.landing[i];
        let denoised = denoiser.denoise(&x, sigma)?;
        let eps = ((&x - &denoised)? / sigma)?;
        let x0 = match plan.rules.clip {
            Some(r) => denoised.clamp(-r, r)?,
            None => denoised.clone(),
        };
        x = (x0 + (eps * land)?)?;
        if land != next {
            x = (x * ((1.0 + next * next).sqrt() / (1.0 + land * land).sqrt()))?;
        }
        if i + 1 < plan.steps() {
            x = after_step(x, next)?;
        }
        on_step(i, &denoised)?;
    }
    Ok(x)
}
