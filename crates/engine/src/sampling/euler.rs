//! Euler's method on the probability-flow ODE dx/dσ = (x − x̂₀)/σ.
//!
//! Karras et al. 2022 (<https://arxiv.org/abs/2206.00364>), Algorithm 2 with
//! no churn; k-diffusion `sample_euler` (commit 686dbad0); diffusers 0.42.1
//! `EulerDiscreteScheduler.step` with `s_churn = 0`.

use candle_core::Tensor;

use crate::error::Result;

use super::{AfterStep, Denoiser, OnStep, Plan};

/// One network call per step: x ← x + (σ_{i+1} − σ_i)·(x − x̂₀)/σ_i.
pub(crate) fn sample(
    denoiser: &mut dyn Denoiser,
    mut x: Tensor,
    plan: &Plan,
    after_step: AfterStep<'_>,
    on_step: OnStep<'_>,
) -> Result<Tensor> {
    let steps = plan.steps();
    for (i, w) in plan.sigmas.windows(2).enumerate() {
        let (sigma, next) = (w[0], w[1]);
        let denoised = denoiser.denoise(&x, sigma)?;
        let d = ((&x - &denoised)? / sigma)?;
        x = (x + (d * (next - sigma))?)?;
        if i + 1 < steps {
            x = after_step(x, next)?;
        }
        on_step(i, &denoised)?;
    }
    Ok(x)
}
