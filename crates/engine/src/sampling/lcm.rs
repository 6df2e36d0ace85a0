//! Latent consistency model sampling: each step maps x to the consistency
//! function's estimate f(x, t) = c_skip(t)·x_vp + c_out(t)·x̂₀, then (but on
//! the last step) re-noises it to the next level with fresh noise.
//!
//! Luo et al. 2023, "Latent Consistency Models" (<https://arxiv.org/abs/2310.04378>),
//! Algorithm 3; boundary condition of Song et al. 2023 (consistency models)
//! with σ_data = 0.5 and the timestep scaled by `timestep_scaling` (10):
//! c_skip = σ_d² / ((10t)² + σ_d²), c_out = 10t / sqrt((10t)² + σ_d²);
//! diffusers 0.42.1 `LCMScheduler.step` and
//! `get_scalings_for_boundary_condition_discrete`.

use candle_core::Tensor;

use crate::error::Result;

use super::{AfterStep, Denoiser, NoiseSource, OnStep, Plan};

/// σ_data of the boundary condition.
const SIGMA_DATA: f64 = 0.5;

/// One network call per step and one noise draw per step but the last.
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
    for i in 0..steps {
        let (sigma, next) = (plan.sigmas[i], plan.sigmas[i + 1]);
        let scaled_t = plan.timesteps[i] * plan.rules.lcm_timestep_scaling;
        let c_skip = SIGMA_DATA * SIGMA_DATA / (scaled_t * scaled_t + SIGMA_DATA * SIGMA_DATA);
        let c_out = scaled_t / (scaled_t * scaled_t + SIGMA_DATA * SIGMA_DATA).sqrt();
        let mut x0 = denoiser.denoise(&x, sigma)?;
        if let Some(r) = plan.rules.clip {
            x0 = x0.clamp(-r, r)?;
        }
        let x_vp = (&x / (sigma * sigma + 1.0).sqrt())?;
        let estimate = ((x0 * c_out)? + (x_vp * c_skip)?)?;
        x = if i + 1 < steps {
            after_step((&estimate + (noise.sample(&per_image)? * next)?)?, next)?
        } else {
            estimate.clone()
        };
        on_step(i, &estimate)?;
    }
    Ok(x)
}
