//! DPM-Solver++(2M): the second-order multistep solver of the data-prediction
//! ODE, in log-SNR time λ = −log σ.
//!
//! Lu et al. 2022, "DPM-Solver++" (<https://arxiv.org/abs/2211.01095>),
//! Algorithm 2; k-diffusion `sample_dpmpp_2m` (commit 686dbad0); diffusers
//! 0.42.1 `DPMSolverMultistepScheduler` with `algorithm_type="dpmsolver++"`,
//! `solver_order=2`, `solver_type="midpoint"`. With h = λ_{i+1} − λ_i:
//! x ← (σ_{i+1}/σ_i)·x − expm1(−h)·D, where D is x̂₀ on the first step and
//! (1 + 1/(2r))·x̂₀ − 1/(2r)·x̂₀_prev after it (r = h_prev/h). The step
//! after the first is first order too when it is the last and the plan says
//! so (diffusers' `lower_order_final`).

use candle_core::Tensor;

use crate::error::Result;

use super::{AfterStep, Denoiser, OnStep, Plan};

/// One network call per step; the previous x̂₀ is the only state.
pub(crate) fn sample(
    denoiser: &mut dyn Denoiser,
    mut x: Tensor,
    plan: &Plan,
    after_step: AfterStep<'_>,
    on_step: OnStep<'_>,
) -> Result<Tensor> {
    let steps = plan.steps();
    let mut previous: Option<Tensor> = None;
    for i in 0..steps {
        let (sigma, next) = (plan.sigmas[i], plan.sigmas[i + 1]);
        let denoised = denoiser.denoise(&x, sigma)?;
        let last = i + 1 == steps;
        let first_order = next == 0.0 || (last && plan.rules.dpm_final_first_order);
        // x_next = (σ_next/σ)·x − expm1(−h)·D; with σ_next = 0 that is D.
        let ratio = next / sigma;
        let weight = -(ratio - 1.0); // −expm1(−h) = 1 − σ_next/σ
        let d = match (&previous, first_order) {
            (Some(old), false) => {
                let h = (sigma / next).ln();
                let h_last = (plan.sigmas[i - 1] / sigma).ln();
                let r = h_last / h;
                ((&denoised * (1.0 + 1.0 / (2.0 * r)))? - (old * (1.0 / (2.0 * r)))?)?
            }
            _ => denoised.clone(),
        };
        x = ((x * ratio)? + (d * weight)?)?;
        if !last {
            x = after_step(x, next)?;
        }
        on_step(i, &denoised)?;
        previous = Some(denoised);
    }
    Ok(x)
}
