//! Heun's second-order method: an Euler step, then the average of the slopes
//! at both ends; the step to σ = 0 stays first order.
//!
//! Karras et al. 2022 (<https://arxiv.org/abs/2206.00364>), Algorithm 1;
//! k-diffusion `sample_heun` (commit 686dbad0); diffusers 0.42.1
//! `HeunDiscreteScheduler.step`, whose timesteps repeat every sigma but the
//! first so that each second evaluation runs at σ_{i+1} and t_{i+1}.

use candle_core::Tensor;

use crate::error::Result;

use super::{AfterStep, Denoiser, OnStep, Plan};

/// Two network calls per step, one on the last.
pub(crate) fn sample(
    denoiser: &mut dyn Denoiser,
    mut x: Tensor,
    plan: &Plan,
    after_step: AfterStep<'_>,
    on_step: OnStep<'_>,
) -> Result<Tensor> {
    let clip = |t: Tensor| -> Result<Tensor> {
        Ok(match plan.rules.clip {
            Some(r) => t.clamp(-r, r)?,
            None => t,
        })
    };
    let steps = plan.steps();
    for (i, w) in plan.sigmas.windows(2).enumerate() {
        let (sigma, next) = (w[0], w[1]);
        let denoised = clip(denoiser.denoise(&x, sigma)?)?;
        let d = ((&x - &denoised)? / sigma)?;
        let dt = next - sigma;
        if next == 0.0 {
            x = (x + (d * dt)?)?;
        } else {
            // diffusers' Heun returns this Euler point as a step of its own,
            // so the caller's hook sees it too.
            let x2 = after_step((&x + (&d * dt)?)?, next)?;
            let denoised2 = clip(denoiser.denoise(&x2, next)?)?;
            let d2 = ((&x2 - &denoised2)? / next)?;
            let slope = ((d + d2)? / 2.0)?;
            x = (x + (slope * dt)?)?;
        }
        if i + 1 < steps {
            x = after_step(x, next)?;
        }
        on_step(i, &denoised)?;
    }
    Ok(x)
}
