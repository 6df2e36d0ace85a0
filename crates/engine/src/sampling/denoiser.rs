//! The network seen by the samplers: x (in k-diffusion scaling, x = x₀ + σ·ε)
//! and σ in, the x₀ estimate out. Samplers never branch on what the network
//! predicts; [`ModelDenoiser`] does that once, in the style of k-diffusion's
//! `external.py` (`CompVisDenoiser`, `CompVisVDenoiser`, at commit
//! 686dbad0f39640ea25c8a8c6a6e56bb40eacefa2).

use candle_core::Tensor;

use crate::error::Result;

use super::config::Prediction;
use super::noise_schedule::NoiseSchedule;
use super::plan::Plan;

/// A denoiser: the x₀ estimate for a noisy batch.
pub trait Denoiser {
    /// `x` is in k-diffusion scaling (x = x₀ + σ·ε), `[B, ...]`; returns the
    /// x₀ estimate for each batch item, same shape.
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor>;
}

/// Wraps a raw network `net(x_in, timestep)` that predicts ε, v or x₀ from
/// the variance-preserving input x_in = x / sqrt(σ² + 1).
///
/// - ε: x̂₀ = x − σ·ε
/// - v: x̂₀ = x / (σ² + 1) − σ / sqrt(σ² + 1) · v
/// - x₀: x̂₀ = the output
///
/// The timestep passed to the network is the plan's timestep when σ is one
/// of the plan's sigmas (so linspace spacing and DPM++'s rounded Karras
/// timesteps reach the network exactly as diffusers passes them), and
/// otherwise σ's fractional timestep by log-σ interpolation.
pub struct ModelDenoiser<F>
where
    F: FnMut(&Tensor, f64) -> Result<Tensor>,
{
    net: F,
    prediction: Prediction,
    schedule: NoiseSchedule,
    known: Vec<(f64, f64)>,
}

impl<F> ModelDenoiser<F>
where
    F: FnMut(&Tensor, f64) -> Result<Tensor>,
{
    /// A denoiser for one run of `plan`.
    pub fn new(schedule: NoiseSchedule, prediction: Prediction, plan: &Plan, net: F) -> Self {
        let known = plan
            .sigmas
            .iter()
            .copied()
            .zip(plan.timesteps.iter().copied())
            .collect();
        Self {
            net,
            prediction,
            schedule,
            known,
        }
    }

    /// The network timestep used at `sigma`.
    pub fn timestep(&self, sigma: f64) -> f64 {
        self.known
            .iter()
            .find(|(s, _)| *s == sigma)
            .map(|&(_, t)| t)
            .unwrap_or_else(|| self.schedule.sigma_to_t(sigma))
    }
}

impl<F> Denoiser for ModelDenoiser<F>
where
    F: FnMut(&Tensor, f64) -> Result<Tensor>,
{
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        let t = self.timestep(sigma);
        let scale = (sigma * sigma + 1.0).sqrt();
        let out = (self.net)(&(x / scale)?, t)?;
        Ok(match self.prediction {
            Prediction::Epsilon => (x - (out * sigma)?)?,
            Prediction::V => ((x / (sigma * sigma + 1.0))? + (out * (-sigma / scale))?)?,
            Prediction::Sample => out,
        })
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use easel_core::{SamplerKind, ScheduleKind};

    use super::super::config::SchedulerConfig;
    use super::super::plan::plan;
    use super::*;

    #[test]
    fn each_prediction_recovers_x0_from_an_oracle_network() {
        let cfg = SchedulerConfig::default();
        let ns = NoiseSchedule::from_config(&cfg).unwrap();
        let p = plan(&cfg, SamplerKind::Euler, ScheduleKind::Default, 4).unwrap();
        let dev = Device::Cpu;
        let x0 = Tensor::new(&[0.5f32, -1.0, 2.0], &dev).unwrap();
        let eps = Tensor::new(&[1.0f32, 0.3, -0.7], &dev).unwrap();
        let sigma = p.sigmas[1];
        let x = (&x0 + (&eps * sigma).unwrap()).unwrap();
        let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
        let v = ((&eps * alpha).unwrap() - (&x0 * (sigma * alpha)).unwrap()).unwrap();
        for (pred, out) in [
            (Prediction::Epsilon, eps.clone()),
            (Prediction::V, v),
            (Prediction::Sample, x0.clone()),
        ] {
            let mut seen_t = None;
            let mut d = ModelDenoiser::new(ns.clone(), pred, &p, |_x: &Tensor, t| {
                seen_t = Some(t);
                Ok(out.clone())
            });
            let got: Vec<f32> = d.denoise(&x, sigma).unwrap().to_vec1().unwrap();
            for (g, w) in got.iter().zip([0.5f32, -1.0, 2.0]) {
                assert!((g - w).abs() < 1e-5, "{pred:?}: {got:?}");
            }
            assert_eq!(seen_t, Some(p.timesteps[1]));
        }
    }
}
