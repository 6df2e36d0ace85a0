//! The training noise schedule: betas → ᾱ_t → σ_t, and the maps between a
//! (possibly fractional) timestep and a sigma.
//!
//! In k-diffusion's parametrisation (Karras et al. 2022, <https://arxiv.org/abs/2206.00364>)
//! a noisy sample is x = x₀ + σ·ε with σ_t = sqrt((1 − ᾱ_t) / ᾱ_t); the
//! variance-preserving sample of DDPM is x_vp = x / sqrt(1 + σ²).
//!
//! The tables are built in f32 the way diffusers 0.42.1 builds them with
//! torch (`scheduling_euler_discrete.py`, `__init__`), so that sigmas agree
//! with the reference to about one ulp: torch's f32 `linspace` (fused
//! multiply-add from the nearer end), a cumulative product accumulated in
//! f64 and stored in f32, and σ computed in f32.

use crate::error::{EngineError, Result};

use super::config::{BetaSchedule, SchedulerConfig};

/// ᾱ_t and σ_t for every training timestep t = 0..T−1, ascending in t.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    alphas_cumprod: Vec<f64>,
    sigmas: Vec<f64>,
    log_sigmas: Vec<f64>,
}

impl NoiseSchedule {
    /// Builds the schedule a scheduler config describes.
    pub fn from_config(cfg: &SchedulerConfig) -> Result<Self> {
        let t = cfg.num_train_timesteps;
        let mut betas: Vec<f32> = match &cfg.trained_betas {
            Some(b) => b.iter().map(|&v| v as f32).collect(),
            None => {
                let (start, end) = cfg.resolved_beta_range();
                match cfg.resolved_beta_schedule() {
                    BetaSchedule::Linear => torch_linspace_f32(start as f32, end as f32, t),
                    BetaSchedule::ScaledLinear => {
                        torch_linspace_f32(start.sqrt() as f32, end.sqrt() as f32, t)
                            .into_iter()
                            .map(|b| b * b)
                            .collect()
                    }
                    BetaSchedule::SquaredCosCapV2 => cosine_betas(t),
                }
            }
        };
        if cfg.rescale_betas_zero_snr {
            betas = rescale_zero_terminal_snr(&betas);
        }
        let mut acc = 1.0f64;
        let mut alphas_cumprod: Vec<f64> = betas
            .iter()
            .map(|&b| {
                acc *= f64::from(1.0f32 - b);
                f64::from(acc as f32)
            })
            .collect();
        if cfg.rescale_betas_zero_snr {
            // As diffusers: close to zero without being zero, so σ_max is finite.
            alphas_cumprod[t - 1] = 2f64.powi(-24);
        }
        if alphas_cumprod.iter().any(|&a| !(a > 0.0 && a < 1.0)) {
            return Err(EngineError::InvalidConfig {
                path: "scheduler/scheduler_config.json".into(),
                detail: "the betas give an alpha_cumprod outside (0, 1)".into(),
            });
        }
        let sigmas: Vec<f64> = alphas_cumprod
            .iter()
            .map(|&a| {
                let a = a as f32;
                f64::from(((1.0 - a) / a).sqrt())
            })
            .collect();
        if sigmas.windows(2).any(|w| w[1] <= w[0]) {
            return Err(EngineError::InvalidConfig {
                path: "scheduler/scheduler_config.json".into(),
                detail: "the training sigmas must increase with the timestep".into(),
            });
        }
        // numpy takes the log of diffusers' f32 sigma table in f32; keeping
        // that rounding reproduces the timesteps diffusers truncates to
        // integers (DPM++ with the exponential schedule) exactly.
        let log_sigmas = sigmas.iter().map(|s| f64::from(s.ln() as f32)).collect();
        Ok(Self {
            alphas_cumprod,
            sigmas,
            log_sigmas,
        })
    }

    /// Training timesteps T.
    pub fn len(&self) -> usize {
        self.sigmas.len()
    }

    /// Always false: a schedule has at least two timesteps.
    pub fn is_empty(&self) -> bool {
        self.sigmas.is_empty()
    }

    /// ᾱ_t for t = 0..T−1.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// σ_t for t = 0..T−1 (ascending).
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    /// σ at t = 0, the smallest training sigma.
    pub fn sigma_min(&self) -> f64 {
        self.sigmas[0]
    }

    /// σ at t = T−1, the largest training sigma.
    pub fn sigma_max(&self) -> f64 {
        self.sigmas[self.sigmas.len() - 1]
    }

    /// σ at a fractional timestep, linear in t between the table entries
    /// and clamped at the ends (numpy `interp`, as diffusers' `set_timesteps`).
    pub fn sigma_at(&self, t: f64) -> f64 {
        let last = self.sigmas.len() - 1;
        if t <= 0.0 {
            return self.sigmas[0];
        }
        if t >= last as f64 {
            return self.sigmas[last];
        }
        let j = t.floor() as usize;
        let frac = t - j as f64;
        if frac == 0.0 {
            return self.sigmas[j];
        }
        let slope = self.sigmas[j + 1] - self.sigmas[j];
        slope * frac + self.sigmas[j]
    }

    /// The fractional timestep of a sigma, linear in log σ between table
    /// entries and clamped to [0, T−1] (diffusers' `_sigma_to_t`, k-diffusion's
    /// `DiscreteSchedule.sigma_to_t`).
    pub fn sigma_to_t(&self, sigma: f64) -> f64 {
        let log_sigma = sigma.max(1e-10).ln();
        let n = self.log_sigmas.len();
        // The last entry not above log σ, kept one short of the end.
        let below = self.log_sigmas.partition_point(|&l| l <= log_sigma);
        let low = below.saturating_sub(1).min(n - 2);
        let (lo, hi) = (self.log_sigmas[low], self.log_sigmas[low + 1]);
        let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
        (1.0 - w) * low as f64 + w * (low + 1) as f64
    }
}

/// torch's f32 `linspace` on the CPU: the first half counts up from `start`,
/// the second half down from `end`, each value one fused multiply-add.
fn torch_linspace_f32(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((n - 1 - i) as f32, end)
            }
        })
        .collect()
}

/// The cosine schedule of Nichol & Dhariwal (2021, <https://arxiv.org/abs/2102.09672>, eq. 17),
/// β_i = min(1 − ᾱ((i+1)/T) / ᾱ(i/T), 0.999), computed in f64 as diffusers'
/// `betas_for_alpha_bar` does (with float division: the bug candle has is
/// an integer division here).
fn cosine_betas(n: usize) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are
/// Flawed" (<https://arxiv.org/abs/2305.08891>, Algorithm 1): shift and scale
/// sqrt(ᾱ) so that the last timestep has zero SNR and the first is unchanged.
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    let sqrt_ab: Vec<f64> = betas
        .iter()
        .map(|&b| {
            acc *= 1.0 - f64::from(b);
            acc.sqrt()
        })
        .collect();
    let first = sqrt_ab[0];
    let last = sqrt_ab[sqrt_ab.len() - 1];
    let ab: Vec<f64> = sqrt_ab
        .iter()
        .map(|&s| ((s - last) * first / (first - last)).powi(2))
        .collect();
    let mut out = Vec::with_capacity(ab.len());
    out.push((1.0 - ab[0]) as f32);
    for w in ab.windows(2) {
        out.push((1.0 - w[1] / w[0]) as f32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd() -> NoiseSchedule {
        let cfg = SchedulerConfig::from_json(
            r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}"#,
        )
        .unwrap();
        NoiseSchedule::from_config(&cfg).unwrap()
    }

    #[test]
    fn sd_schedule_has_the_known_sigma_range() {
        let s = sd();
        assert_eq!(s.len(), 1000);
        assert!((s.sigma_min() - 0.029168).abs() < 1e-5, "{}", s.sigma_min());
        assert!(
            (s.sigma_max() - 14.614642).abs() < 1e-4,
            "{}",
            s.sigma_max()
        );
    }

    #[test]
    fn sigma_to_t_inverts_the_table_at_integer_timesteps() {
        let s = sd();
        // Within the f32 rounding of the log table, as in diffusers.
        for t in [0usize, 1, 250, 500, 998, 999] {
            assert!(
                (s.sigma_to_t(s.sigmas()[t]) - t as f64).abs() < 1e-3,
                "t = {t}"
            );
        }
        assert_eq!(s.sigma_to_t(0.0), 0.0);
        assert_eq!(s.sigma_to_t(1e3), 999.0);
    }

    #[test]
    fn sigma_at_interpolates_linearly_and_clamps() {
        let s = sd();
        let mid = s.sigma_at(10.5);
        assert!((mid - (s.sigmas()[10] + s.sigmas()[11]) / 2.0).abs() < 1e-12);
        assert_eq!(s.sigma_at(-1.0), s.sigma_min());
        assert_eq!(s.sigma_at(5000.0), s.sigma_max());
    }

    #[test]
    fn cosine_betas_are_not_all_zero() {
        // candle's cosine schedule divides two integers and comes out all zeros.
        let b = cosine_betas(1000);
        assert!(b[0] > 0.0 && b[0] < 1e-3, "{}", b[0]);
        assert_eq!(b[999], 0.999);
    }

    #[test]
    fn zero_snr_rescale_ends_at_the_tiny_alpha() {
        let cfg = SchedulerConfig::from_json(
            r#"{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
                "rescale_betas_zero_snr": true}"#,
        )
        .unwrap();
        let s = NoiseSchedule::from_config(&cfg).unwrap();
        assert_eq!(s.alphas_cumprod()[999], 2f64.powi(-24));
        assert!((s.sigma_max() - 4096.0).abs() < 1.0, "{}", s.sigma_max());
    }
}
