//! Euler ancestral: an Euler step down to σ_down, then fresh noise back up
//! to σ_{i+1} (η = 1).
//!
//! k-diffusion `sample_euler_ancestral` and `get_ancestral_step` (commit
//! 686dbad0); diffusers 0.42.1 `EulerAncestralDiscreteScheduler.step`:
//! σ_up = sqrt(σ_{i+1}² (σ_i² − σ_{i+1}²) / σ_i²), σ_down = sqrt(σ_{i+1}² − σ_up²).

use candle_core::Tensor;

use crate::error::Result;

use super::{AfterStep, Denoiser, NoiseSource, OnStep, Plan};

/// One network call and one noise draw per step (none on a step to σ = 0,
/// where σ_up is zero).
pub(crate) fn sample(
    denoiser: &mut dyn Denoiser,
    mut x: Tensor,
    plan: &Plan,
    noise: &mut dyn NoiseSource,
    after_step: AfterStep<'_>,
    on_step: OnStep<'_>,
) -> Result<Tensor> {
    let per_image = x.dims()[1..].to_vec();
    let steps = plan.steps();
    for (i, w) in plan.sigmas.windows(2).enumerate() {
        let (sigma, next) = (w[0], w[1]);
        let denoised = denoiser.denoise(&x, sigma)?;
        let sigma_up = (next * next * (sigma * sigma - next * next) / (sigma * sigma)).sqrt();
        let sigma_down = (next * next - sigma_up * sigma_up).sqrt();
        let d = ((&x - &denoised)? / sigma)?;
        x = (x + (d * (sigma_down - sigma))?)?;
        if sigma_up > 0.0 {
            x = (x + (noise.sample(&per_image)? * sigma_up)?)?;
        }
        if i + 1 < steps {
            x = after_step(x, next)?;
        }
        on_step(i, &denoised)?;
    }
    Ok(x)
}
