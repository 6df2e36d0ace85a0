//! Turning (config, sampler, schedule, steps) into the sigmas and timesteps
//! of one run, as the matching diffusers 0.42.1 scheduler's `set_timesteps`
//! would. Impossible combinations fail here, before any network call.

use easel_core::{SamplerKind, ScheduleKind, TimestepSpacing};

use crate::error::{EngineError, Result};

use super::config::{BetaSchedule, FinalSigmas, SchedulerConfig};
use super::noise_schedule::NoiseSchedule;
use super::{schedules, spacing};

/// ρ of the Karras schedule, the paper's value (diffusers and k-diffusion use it too).
pub const KARRAS_RHO: f64 = 7.0;

/// The noise levels of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// steps + 1 noise levels, descending; the network is called at the first
    /// `steps` of them and the run ends at the last (0, or σ_min where the
    /// config's `final_sigmas_type`/`set_alpha_to_one` say so, or ᾱ₀ where
    /// DDIM's last step lands there).
    pub sigmas: Vec<f64>,
    /// The network timestep for each of the first `steps` sigmas (fractional
    /// for Karras/exponential schedules and linspace spacing, as diffusers).
    pub timesteps: Vec<f64>,
    /// Text-to-image starts from `noise * init_noise_sigma`. This is
    /// `sigmas[0]`, except where diffusers starts from the variance-preserving
    /// unit-variance latent, which is `sqrt(sigmas[0]² + 1)` in this scaling:
    /// DDIM, DPM++ 2M and LCM always, and Euler/Euler ancestral/Heun with
    /// `leading` spacing. Image-to-image starts from `x0 + noise * sigmas[0]`.
    pub init_noise_sigma: f64,
    /// The sampler this plan was made for; [`super::sample`] refuses another.
    pub sampler: SamplerKind,
    pub(crate) rules: StepRules,
}

/// Sampler-specific settings resolved from the config at plan time.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct StepRules {
    /// DDIM: the noise level each step lands on. diffusers' DDIM steps from t
    /// to t − T/steps, which for linspace and trailing spacing is not the next
    /// timestep of the run; the sampler then rescales to the next level.
    pub landing: Vec<f64>,
    /// DDIM, LCM, Heun: clamp x̂₀ to ± this bound (`clip_sample`).
    pub clip: Option<f64>,
    /// LCM: `timestep_scaling` of the boundary condition.
    pub lcm_timestep_scaling: f64,
    /// DPM++ 2M: whether the last step is first order (diffusers'
    /// `lower_order_final` / `euler_at_final` / a zero final sigma).
    pub dpm_final_first_order: bool,
    /// DDIM and DPM++ 2M: the run's result is handed out as the
    /// variance-preserving latent x / sqrt(σ_last² + 1), as diffusers returns
    /// it (a no-op when σ_last = 0).
    pub vp_output: bool,
}

impl Plan {
    /// Network calls the sampler will make per image, not counting Heun's
    /// second evaluations: `sigmas.len() - 1`.
    pub fn steps(&self) -> usize {
        self.sigmas.len() - 1
    }
}

fn unsupported(sampler: SamplerKind, detail: impl Into<String>) -> EngineError {
    EngineError::UnsupportedSampler {
        sampler: sampler.to_string(),
        detail: detail.into(),
    }
}

/// The plan of a text-to-image run of `steps` steps.
///
/// DDIM and LCM accept only the default schedule: diffusers' DDIM and LCM
/// schedulers have no Karras or exponential option, deterministic DDIM over
/// another sigma schedule is exactly Euler over it (name `euler`), and LCM
/// models are distilled on their own fixed timesteps.
pub fn plan(
    cfg: &SchedulerConfig,
    sampler: SamplerKind,
    schedule: ScheduleKind,
    steps: usize,
) -> Result<Plan> {
    build(cfg, sampler, schedule, steps, 1.0)
}

/// The plan of an image-to-image run: the text-to-image plan of `steps`
/// steps with its first `steps − min(⌊steps·strength⌋, steps)` steps cut off,
/// as diffusers' img2img pipelines do (`get_timesteps`). LCM first shortens
/// its distillation schedule by `strength`, as `LCMScheduler` does.
///
/// `strength` is read through its shortest decimal form (0.7f32 → 0.7f64),
/// so that ⌊steps·strength⌋ agrees with Python's arithmetic on the same
/// literal. Strength 0 gives a plan of no steps (the result is the init
/// image), except for LCM, which, like diffusers, needs
/// ⌊original_inference_steps·strength⌋ ≥ steps and otherwise fails.
pub fn plan_img2img(
    cfg: &SchedulerConfig,
    sampler: SamplerKind,
    schedule: ScheduleKind,
    steps: usize,
    strength: f32,
) -> Result<Plan> {
    if !(0.0..=1.0).contains(&strength) {
        return Err(EngineError::InvalidStrength(strength));
    }
    let strength: f64 = strength.to_string().parse().unwrap_or(f64::from(strength));
    let mut p = build(cfg, sampler, schedule, steps, strength)?;
    let init = ((steps as f64 * strength).floor() as usize).min(steps);
    let start = steps - init;
    p.sigmas.drain(..start);
    p.timesteps.drain(..start);
    if !p.rules.landing.is_empty() {
        p.rules.landing.drain(..start);
    }
    p.init_noise_sigma = p.sigmas[0];
    Ok(p)
}

fn build(
    cfg: &SchedulerConfig,
    sampler: SamplerKind,
    schedule: ScheduleKind,
    steps: usize,
    strength: f64,
) -> Result<Plan> {
    if steps == 0 {
        return Err(EngineError::ZeroSteps);
    }
    let t_train = cfg.num_train_timesteps;
    if steps > t_train {
        return Err(unsupported(
            sampler,
            format!("at most {t_train} steps (the model's training timesteps), got {steps}"),
        ));
    }
    if matches!(sampler, SamplerKind::Ddim | SamplerKind::Lcm) && schedule != ScheduleKind::Default
    {
        let hint = if sampler == SamplerKind::Ddim {
            "; deterministic DDIM over another schedule is Euler: use sampler `euler`"
        } else {
            ""
        };
        return Err(unsupported(
            sampler,
            format!("only the default schedule, not `{schedule}`{hint}"),
        ));
    }
    let ns = NoiseSchedule::from_config(cfg)?;
    let mut p = match sampler {
        SamplerKind::Euler | SamplerKind::EulerAncestral | SamplerKind::Heun => {
            euler_family(cfg, &ns, sampler, schedule, steps)
        }
        SamplerKind::DpmPp2m => dpmpp_2m(cfg, &ns, schedule, steps),
        SamplerKind::Ddim => ddim(cfg, &ns, steps),
        SamplerKind::Lcm => lcm(cfg, &ns, steps, strength)?,
    };
    // diffusers stores sigmas and timesteps as f32.
    for v in p.sigmas.iter_mut().chain(p.timesteps.iter_mut()) {
        *v = f64::from(*v as f32);
    }
    Ok(p)
}

/// `EulerDiscreteScheduler` / `EulerAncestralDiscreteScheduler` /
/// `HeunDiscreteScheduler.set_timesteps`: the training sigmas interpolated at
/// the spaced timesteps; Karras and exponential span the range of *those*
/// sigmas (so leading spacing starts below σ_max) unless Euler's config sets
/// `sigma_min`/`sigma_max`, and map back to timesteps by log-σ interpolation.
fn euler_family(
    cfg: &SchedulerConfig,
    ns: &NoiseSchedule,
    sampler: SamplerKind,
    schedule: ScheduleKind,
    steps: usize,
) -> Plan {
    let spacing = cfg.resolved_spacing();
    let mut timesteps = spacing::euler_family(spacing, ns.len(), steps, cfg.steps_offset);
    let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| ns.sigma_at(t)).collect();
    if schedule != ScheduleKind::Default {
        let own = |v: Option<f64>| {
            if sampler == SamplerKind::Euler {
                v
            } else {
                None
            }
        };
        let lo = own(cfg.sigma_min).unwrap_or(sigmas[steps - 1]);
        let hi = own(cfg.sigma_max).unwrap_or(sigmas[0]);
        sigmas = match schedule {
            ScheduleKind::Karras => schedules::karras(lo, hi, steps, KARRAS_RHO),
            _ => schedules::exponential(lo, hi, steps),
        };
        timesteps = sigmas.iter().map(|&s| ns.sigma_to_t(s)).collect();
    }
    let last = match (sampler, cfg.resolved_final_sigmas()) {
        (SamplerKind::Euler, FinalSigmas::SigmaMin) => ns.sigma_min(),
        _ => 0.0,
    };
    sigmas.push(last);
    let max = sigmas.iter().copied().fold(0.0, f64::max);
    let init_noise_sigma = match spacing {
        TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
        TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
    };
    let clip = if sampler == SamplerKind::Heun {
        cfg.resolved_clip()
    } else {
        None
    };
    Plan {
        sigmas,
        timesteps,
        init_noise_sigma,
        sampler,
        rules: StepRules {
            clip,
            ..StepRules::default()
        },
    }
}

/// `DPMSolverMultistepScheduler.set_timesteps`: integer timesteps; Karras and
/// exponential span the whole training range; Karras timesteps are rounded
/// (except for the cosine betas) and exponential ones truncated, as diffusers
/// casts them to int64.
fn dpmpp_2m(
    cfg: &SchedulerConfig,
    ns: &NoiseSchedule,
    schedule: ScheduleKind,
    steps: usize,
) -> Plan {
    let ts = spacing::dpm(cfg.resolved_spacing(), ns.len(), steps, cfg.steps_offset);
    let (mut sigmas, timesteps): (Vec<f64>, Vec<f64>) = match schedule {
        ScheduleKind::Default => (
            ts.iter().map(|&t| ns.sigmas()[t as usize]).collect(),
            ts.iter().map(|&t| t as f64).collect(),
        ),
        ScheduleKind::Karras => {
            let s = schedules::karras(ns.sigma_min(), ns.sigma_max(), steps, KARRAS_RHO);
            let round = cfg.resolved_beta_schedule() != BetaSchedule::SquaredCosCapV2;
            let t = s
                .iter()
                .map(|&s| {
                    let t = ns.sigma_to_t(s);
                    if round {
                        t.round_ties_even()
                    } else {
                        t.trunc()
                    }
                })
                .collect();
            (s, t)
        }
        ScheduleKind::Exponential => {
            let s = schedules::exponential(ns.sigma_min(), ns.sigma_max(), steps);
            let t = s.iter().map(|&s| ns.sigma_to_t(s).trunc()).collect();
            (s, t)
        }
    };
    let final_sigmas = cfg.resolved_final_sigmas();
    sigmas.push(match final_sigmas {
        FinalSigmas::Zero => 0.0,
        FinalSigmas::SigmaMin => ns.sigma_min(),
    });
    let dpm_final_first_order = cfg.euler_at_final
        || (cfg.lower_order_final && steps < 15)
        || final_sigmas == FinalSigmas::Zero;
    Plan {
        init_noise_sigma: (sigmas[0] * sigmas[0] + 1.0).sqrt(),
        sigmas,
        timesteps,
        sampler: SamplerKind::DpmPp2m,
        rules: StepRules {
            dpm_final_first_order,
            vp_output: true,
            ..StepRules::default()
        },
    }
}

/// `DDIMScheduler.set_timesteps` and `step`: each step goes from t to
/// t − ⌊T/steps⌋, or to ᾱ = 1 (`set_alpha_to_one`) or ᾱ₀ past the start.
fn ddim(cfg: &SchedulerConfig, ns: &NoiseSchedule, steps: usize) -> Plan {
    let ts = spacing::ddim(cfg.resolved_spacing(), ns.len(), steps, cfg.steps_offset);
    let final_sigma = if cfg.resolved_set_alpha_to_one() {
        0.0
    } else {
        ns.sigma_min()
    };
    let ratio = (ns.len() / steps) as i64;
    let landing: Vec<f64> = ts
        .iter()
        .map(|&t| {
            let prev = t - ratio;
            if prev >= 0 {
                ns.sigmas()[prev as usize]
            } else {
                final_sigma
            }
        })
        .collect();
    let mut sigmas: Vec<f64> = ts.iter().map(|&t| ns.sigmas()[t as usize]).collect();
    sigmas.push(landing[steps - 1]);
    Plan {
        init_noise_sigma: (sigmas[0] * sigmas[0] + 1.0).sqrt(),
        sigmas,
        timesteps: ts.iter().map(|&t| t as f64).collect(),
        sampler: SamplerKind::Ddim,
        rules: StepRules {
            landing,
            clip: cfg.resolved_clip(),
            vp_output: true,
            ..StepRules::default()
        },
    }
}

/// `LCMScheduler.set_timesteps`: the last step returns the boundary-condition
/// estimate itself, so the run ends at σ = 0.
fn lcm(cfg: &SchedulerConfig, ns: &NoiseSchedule, steps: usize, strength: f64) -> Result<Plan> {
    let ts = spacing::lcm(ns.len(), cfg.original_inference_steps, steps, strength)?;
    let mut sigmas: Vec<f64> = ts.iter().map(|&t| ns.sigmas()[t as usize]).collect();
    sigmas.push(0.0);
    Ok(Plan {
        init_noise_sigma: (sigmas[0] * sigmas[0] + 1.0).sqrt(),
        sigmas,
        timesteps: ts.iter().map(|&t| t as f64).collect(),
        sampler: SamplerKind::Lcm,
        rules: StepRules {
            clip: cfg.resolved_clip(),
            lcm_timestep_scaling: cfg.timestep_scaling,
            ..StepRules::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd_cfg(extra: &str) -> SchedulerConfig {
        SchedulerConfig::from_json(&format!(
            r#"{{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear" {extra}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn every_plan_has_steps_plus_one_descending_sigmas() {
        let cfg = sd_cfg("");
        for &s in SamplerKind::ALL {
            for &k in ScheduleKind::ALL {
                let Ok(p) = plan(&cfg, s, k, 8) else { continue };
                assert_eq!(p.sigmas.len(), 9, "{s} {k}");
                assert_eq!(p.timesteps.len(), 8, "{s} {k}");
                assert!(
                    p.sigmas.windows(2).all(|w| w[1] < w[0]),
                    "{s} {k}: {:?}",
                    p.sigmas
                );
                assert_eq!(*p.sigmas.last().unwrap(), 0.0, "{s} {k}");
            }
        }
    }

    #[test]
    fn karras_endpoints_are_the_spaced_sigma_range() {
        let cfg = sd_cfg("");
        let ns = NoiseSchedule::from_config(&cfg).unwrap();
        let p = plan(&cfg, SamplerKind::Euler, ScheduleKind::Karras, 10).unwrap();
        assert!((p.sigmas[0] - ns.sigma_max()).abs() < 1e-5);
        assert!((p.sigmas[9] - ns.sigma_min()).abs() < 1e-6);
        assert!((p.timesteps[0] - 999.0).abs() < 1e-3 && p.timesteps[9].abs() < 1e-3);
        let d = plan(&cfg, SamplerKind::DpmPp2m, ScheduleKind::Karras, 10).unwrap();
        assert_eq!(d.timesteps[0], 999.0);
        assert_eq!(d.timesteps[9], 0.0);
    }

    #[test]
    fn ddim_and_lcm_refuse_other_schedules_at_plan_time() {
        let cfg = sd_cfg("");
        for s in [SamplerKind::Ddim, SamplerKind::Lcm] {
            for k in [ScheduleKind::Karras, ScheduleKind::Exponential] {
                let err = plan(&cfg, s, k, 4).unwrap_err();
                assert_eq!(err.code(), "invalid_sampler", "{s} {k}");
            }
        }
    }

    #[test]
    fn zero_steps_and_bad_strength_are_errors() {
        let cfg = sd_cfg("");
        assert!(matches!(
            plan(&cfg, SamplerKind::Euler, ScheduleKind::Default, 0),
            Err(EngineError::ZeroSteps)
        ));
        for bad in [-0.1f32, 1.5, f32::NAN] {
            assert!(matches!(
                plan_img2img(&cfg, SamplerKind::Euler, ScheduleKind::Default, 4, bad),
                Err(EngineError::InvalidStrength(_))
            ));
        }
    }

    #[test]
    fn img2img_cuts_the_first_steps_like_diffusers() {
        let cfg = sd_cfg("");
        let full = plan(&cfg, SamplerKind::Euler, ScheduleKind::Default, 10).unwrap();
        // int(10 * 0.7) == 7 in Python, although 10 * 0.7f32 < 7.
        let p = plan_img2img(&cfg, SamplerKind::Euler, ScheduleKind::Default, 10, 0.7).unwrap();
        assert_eq!(p.sigmas, full.sigmas[3..]);
        assert_eq!(p.timesteps, full.timesteps[3..]);
        assert_eq!(p.init_noise_sigma, p.sigmas[0]);
        let none = plan_img2img(&cfg, SamplerKind::Euler, ScheduleKind::Default, 10, 0.0).unwrap();
        assert_eq!(none.steps(), 0);
    }

    #[test]
    fn ddim_ends_at_alpha_zero_without_set_alpha_to_one() {
        let cfg = sd_cfg(
            r#", "set_alpha_to_one": false, "steps_offset": 1, "timestep_spacing": "leading""#,
        );
        let p = plan(&cfg, SamplerKind::Ddim, ScheduleKind::Default, 4).unwrap();
        assert_eq!(p.timesteps, vec![751.0, 501.0, 251.0, 1.0]);
        assert!((p.sigmas[4] - 0.029168).abs() < 1e-5);
    }
}
