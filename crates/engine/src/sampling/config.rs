//! The model folder's `scheduler/scheduler_config.json`, read as plain data.
//!
//! Field names and defaults follow diffusers 0.42.1. Defaults that differ
//! between diffusers' scheduler classes (the beta range, the timestep
//! spacing, `set_alpha_to_one`, `clip_sample`) are kept as `Option` and
//! resolved from the file's own `_class_name`, because that is the class the
//! file's author configured. Keys the engine does not use are ignored.

use std::path::Path;

use easel_core::{SamplerKind, ScheduleKind, TimestepSpacing};
use serde::Deserialize;

use crate::error::{EngineError, Result};

/// What the network predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Prediction {
    /// The added noise ε (SD 1.x, SD 2.x base, SDXL).
    #[serde(rename = "epsilon")]
    Epsilon,
    /// The velocity v = α·ε − σ_vp·x₀ (SD 2.x 768, SD-Turbo).
    #[serde(rename = "v_prediction")]
    V,
    /// The clean sample x₀ itself.
    #[serde(rename = "sample")]
    Sample,
}

/// How the training betas are laid out over the training timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum BetaSchedule {
    /// `linspace(beta_start, beta_end, T)`.
    #[serde(rename = "linear")]
    Linear,
    /// `linspace(sqrt(beta_start), sqrt(beta_end), T)²` (latent diffusion).
    #[serde(rename = "scaled_linear")]
    ScaledLinear,
    /// The cosine schedule of Nichol & Dhariwal (2021), capped at β = 0.999.
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredCosCapV2,
}

/// Where the last sigma of a schedule lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum FinalSigmas {
    /// The run ends at σ = 0.
    #[serde(rename = "zero")]
    Zero,
    /// The run ends at the smallest training sigma.
    #[serde(rename = "sigma_min")]
    SigmaMin,
}

/// A diffusers scheduler config. Every field has diffusers' default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SchedulerConfig {
    /// The diffusers class that wrote the file, e.g. `EulerDiscreteScheduler`. Default: empty.
    #[serde(rename = "_class_name", default)]
    pub class_name: String,
    /// Training timesteps T. Default 1000.
    #[serde(default = "default_train_timesteps")]
    pub num_train_timesteps: usize,
    /// First beta. Default 0.00085 for Heun and LCM, else 0.0001.
    #[serde(default)]
    pub beta_start: Option<f64>,
    /// Last beta. Default 0.012 for Heun and LCM, else 0.02.
    #[serde(default)]
    pub beta_end: Option<f64>,
    /// Beta layout. Default `scaled_linear` for LCM, else `linear`.
    #[serde(default)]
    pub beta_schedule: Option<BetaSchedule>,
    /// Explicit betas, overriding the three fields above. Default none.
    #[serde(default)]
    pub trained_betas: Option<Vec<f64>>,
    /// What the network predicts. Default epsilon.
    #[serde(default = "default_prediction")]
    pub prediction_type: Prediction,
    /// Timestep spacing. Default `leading` for DDIM, DDPM, PNDM and LCM, else `linspace`.
    #[serde(default)]
    pub timestep_spacing: Option<TimestepSpacing>,
    /// Added to `leading` timesteps. Default 0.
    #[serde(default)]
    pub steps_offset: usize,
    /// DDIM: whether the last step lands on ᾱ = 1 (σ = 0) rather than ᾱ₀.
    /// Default false for PNDM, else true.
    #[serde(default)]
    pub set_alpha_to_one: Option<bool>,
    /// Clamp x̂₀ to ±`clip_sample_range` (DDIM, LCM, Heun). Default true for DDIM and DDPM, else false.
    #[serde(default)]
    pub clip_sample: Option<bool>,
    /// The clamp bound of `clip_sample`. Default 1.0.
    #[serde(default = "one")]
    pub clip_sample_range: f64,
    /// The folder's default schedule is Karras. Default false.
    #[serde(default)]
    pub use_karras_sigmas: bool,
    /// The folder's default schedule is exponential. Default false.
    #[serde(default)]
    pub use_exponential_sigmas: bool,
    /// Lower bound of the Karras/exponential range (Euler only). Default: the schedule's own.
    #[serde(default)]
    pub sigma_min: Option<f64>,
    /// Upper bound of the Karras/exponential range (Euler only). Default: the schedule's own.
    #[serde(default)]
    pub sigma_max: Option<f64>,
    /// Euler and DPM++ 2M: where the run ends. Default zero.
    #[serde(default)]
    pub final_sigmas_type: Option<FinalSigmas>,
    /// Rescale betas to zero terminal SNR (Lin et al. 2023). Default false.
    #[serde(default)]
    pub rescale_betas_zero_snr: bool,
    /// DPM++ 2M: use a first-order final step when there are fewer than 15 steps. Default true.
    #[serde(default = "yes")]
    pub lower_order_final: bool,
    /// DPM++ 2M: always use a first-order final step. Default false.
    #[serde(default)]
    pub euler_at_final: bool,
    /// LCM: the timestep is multiplied by this in the boundary condition. Default 10.
    #[serde(default = "ten")]
    pub timestep_scaling: f64,
    /// LCM: the distillation schedule's length. Default 50.
    #[serde(default = "fifty")]
    pub original_inference_steps: usize,
}

fn default_train_timesteps() -> usize {
    1000
}
fn default_prediction() -> Prediction {
    Prediction::Epsilon
}
fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn ten() -> f64 {
    10.0
}
fn fifty() -> usize {
    50
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every field has a default")
    }
}

impl SchedulerConfig {
    /// Reads and parses a `scheduler_config.json`.
    ///
    /// diffusers writes `-Infinity` for `lambda_min_clipped`, which is not
    /// JSON; such bare non-finite numbers are read as `null` (the engine does
    /// not use that key).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                EngineError::MissingFile {
                    path: path.to_path_buf(),
                }
            } else {
                EngineError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Self::from_json(&text).map_err(|detail| EngineError::InvalidConfig {
            path: path.to_path_buf(),
            detail,
        })
    }

    /// Parses the JSON text of a scheduler config.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let cfg: Self = serde_json::from_str(&null_non_finite(text)).map_err(|e| e.to_string())?;
        if cfg.num_train_timesteps < 2 {
            return Err(format!(
                "num_train_timesteps must be at least 2, got {}",
                cfg.num_train_timesteps
            ));
        }
        if let Some(b) = &cfg.trained_betas
            && b.len() != cfg.num_train_timesteps
        {
            return Err(format!(
                "trained_betas has {} values, num_train_timesteps is {}",
                b.len(),
                cfg.num_train_timesteps
            ));
        }
        Ok(cfg)
    }

    /// The sampler this folder uses when a request names none.
    ///
    /// EulerDiscrete → Euler, EulerAncestralDiscrete → Euler ancestral,
    /// HeunDiscrete → Heun, DPMSolverMultistep/DPMSolverSinglestep/UniPC/DEIS
    /// → DPM++ 2M (the same family of exponential-integrator solvers), LCM →
    /// LCM. DDIM → DDIM; PNDM and DDPM also → DDIM: PNDM's linear multistep
    /// and DDPM's ancestral sampling are not implemented, and deterministic
    /// DDIM on the same timesteps is their usual replacement (SD 1.x ships a
    /// PNDM config). Anything else (LMS, KDPM2, an empty name) → Euler.
    pub fn default_sampler(&self) -> SamplerKind {
        match self.class_name.as_str() {
            "EulerDiscreteScheduler" => SamplerKind::Euler,
            "EulerAncestralDiscreteScheduler" => SamplerKind::EulerAncestral,
            "HeunDiscreteScheduler" => SamplerKind::Heun,
            "DPMSolverMultistepScheduler"
            | "DPMSolverSinglestepScheduler"
            | "UniPCMultistepScheduler"
            | "DEISMultistepScheduler" => SamplerKind::DpmPp2m,
            "DDIMScheduler" | "PNDMScheduler" | "DDPMScheduler" => SamplerKind::Ddim,
            "LCMScheduler" => SamplerKind::Lcm,
            _ => SamplerKind::Euler,
        }
    }

    /// The schedule this folder uses when a request names none:
    /// `use_karras_sigmas` → Karras, `use_exponential_sigmas` → exponential, else default.
    /// (diffusers' `use_beta_sigmas` is not implemented and reads as default.)
    pub fn default_schedule(&self) -> ScheduleKind {
        if self.use_karras_sigmas {
            ScheduleKind::Karras
        } else if self.use_exponential_sigmas {
            ScheduleKind::Exponential
        } else {
            ScheduleKind::Default
        }
    }

    /// What the network predicts.
    pub fn prediction(&self) -> Prediction {
        self.prediction_type
    }

    fn class_is(&self, names: &[&str]) -> bool {
        names.contains(&self.class_name.as_str())
    }

    /// The beta layout with the class default filled in.
    pub fn resolved_beta_schedule(&self) -> BetaSchedule {
        self.beta_schedule
            .unwrap_or(if self.class_is(&["LCMScheduler"]) {
                BetaSchedule::ScaledLinear
            } else {
                BetaSchedule::Linear
            })
    }

    /// `(beta_start, beta_end)` with the class defaults filled in.
    pub fn resolved_beta_range(&self) -> (f64, f64) {
        let sd_like = self.class_is(&["HeunDiscreteScheduler", "LCMScheduler"]);
        let start = self
            .beta_start
            .unwrap_or(if sd_like { 0.00085 } else { 0.0001 });
        let end = self.beta_end.unwrap_or(if sd_like { 0.012 } else { 0.02 });
        (start, end)
    }

    /// The timestep spacing with the class default filled in.
    pub fn resolved_spacing(&self) -> TimestepSpacing {
        self.timestep_spacing.unwrap_or(
            if self.class_is(&[
                "DDIMScheduler",
                "DDPMScheduler",
                "PNDMScheduler",
                "LCMScheduler",
            ]) {
                TimestepSpacing::Leading
            } else {
                TimestepSpacing::Linspace
            },
        )
    }

    /// `set_alpha_to_one` with the class default filled in.
    pub fn resolved_set_alpha_to_one(&self) -> bool {
        self.set_alpha_to_one
            .unwrap_or(!self.class_is(&["PNDMScheduler"]))
    }

    /// The x̂₀ clamp bound, if clamping is on (class default filled in).
    pub fn resolved_clip(&self) -> Option<f64> {
        let on = self
            .clip_sample
            .unwrap_or(self.class_is(&["DDIMScheduler", "DDPMScheduler"]));
        on.then_some(self.clip_sample_range)
    }

    /// Where the run ends.
    pub fn resolved_final_sigmas(&self) -> FinalSigmas {
        self.final_sigmas_type.unwrap_or(FinalSigmas::Zero)
    }
}

/// Replaces the bare tokens `-Infinity`, `Infinity` and `NaN` (outside
/// strings) with `null`.
fn null_non_finite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else {
            let token = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|t| rest.starts_with(t));
            if let Some(t) = token {
                out.push_str("null");
                rest = &rest[t.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SD15: &str = r#"{
      "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0",
      "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
      "num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true,
      "steps_offset": 1, "trained_betas": null, "clip_sample": false
    }"#;

    #[test]
    fn sd15_pndm_config_falls_back_to_ddim_with_leading_spacing() {
        let cfg = SchedulerConfig::from_json(SD15).unwrap();
        assert_eq!(cfg.default_sampler(), SamplerKind::Ddim);
        assert_eq!(cfg.default_schedule(), ScheduleKind::Default);
        assert_eq!(cfg.prediction(), Prediction::Epsilon);
        assert_eq!(cfg.resolved_spacing(), TimestepSpacing::Leading);
        assert!(!cfg.resolved_set_alpha_to_one());
        assert_eq!(cfg.resolved_clip(), None);
        assert_eq!(cfg.steps_offset, 1);
    }

    #[test]
    fn dpm_config_with_negative_infinity_parses() {
        let cfg = SchedulerConfig::from_json(
            r#"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity,
                "use_karras_sigmas": true, "prediction_type": "v_prediction", "note": "NaN"}"#,
        )
        .unwrap();
        assert_eq!(cfg.default_sampler(), SamplerKind::DpmPp2m);
        assert_eq!(cfg.default_schedule(), ScheduleKind::Karras);
        assert_eq!(cfg.prediction(), Prediction::V);
    }

    #[test]
    fn unknown_prediction_type_is_an_error_naming_it() {
        let err =
            SchedulerConfig::from_json(r#"{"prediction_type": "flow_prediction"}"#).unwrap_err();
        assert!(err.contains("flow_prediction"), "{err}");
    }

    #[test]
    fn class_defaults_follow_diffusers() {
        let ddim = SchedulerConfig::from_json(r#"{"_class_name": "DDIMScheduler"}"#).unwrap();
        assert_eq!(ddim.resolved_clip(), Some(1.0));
        assert!(ddim.resolved_set_alpha_to_one());
        let lcm = SchedulerConfig::from_json(r#"{"_class_name": "LCMScheduler"}"#).unwrap();
        assert_eq!(lcm.resolved_beta_schedule(), BetaSchedule::ScaledLinear);
        assert_eq!(lcm.resolved_beta_range(), (0.00085, 0.012));
        let euler = SchedulerConfig::default();
        assert_eq!(euler.resolved_spacing(), TimestepSpacing::Linspace);
        assert_eq!(euler.resolved_beta_range(), (0.0001, 0.02));
        assert_eq!(euler.default_sampler(), SamplerKind::Euler);
    }
}
