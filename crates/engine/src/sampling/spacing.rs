//! Which training timesteps a run of n steps visits, per diffusers scheduler
//! family (diffusers 0.42.1, `set_timesteps` of each scheduler class).
//!
//! The spacings of Lin et al. 2023 (<https://arxiv.org/abs/2305.08891>,
//! Table 2): *linspace* includes both ends, *leading* starts at 0 and is
//! shifted by `steps_offset`, *trailing* ends at T−1. diffusers rounds with
//! numpy (ties to even) and builds ranges with numpy's `arange`/`linspace`
//! arithmetic; the helpers below reproduce that arithmetic so that the
//! integer timesteps agree exactly.
//!
//! One deliberate difference: numpy's `arange(T, 0, -T/n)` has n + 1 elements
//! for a few n (61, 103, 121, … with T = 1000), which makes diffusers' trailing
//! spacing run one extra step at timestep −1. We keep the first n.

use easel_core::TimestepSpacing;

use crate::error::{EngineError, Result};

/// numpy `linspace(start, stop, num)` with `endpoint=True`.
pub(crate) fn np_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (stop - start) / (num - 1) as f64;
            let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
            v[num - 1] = stop;
            v
        }
    }
}

/// numpy `arange(start, stop, step)` for a negative float step, cut to `max` values.
fn np_arange_down(start: f64, stop: f64, step: f64, max: usize) -> Vec<f64> {
    let len = ((stop - start) / step).ceil().max(0.0) as usize;
    // numpy fills from the first two values: delta = (start + step) - start.
    let delta = (start + step) - start;
    (0..len.min(max))
        .map(|i| start + i as f64 * delta)
        .collect()
}

/// Euler, Euler ancestral and Heun (`EulerDiscreteScheduler.set_timesteps`):
/// float timesteps, descending, stored as f32.
pub(crate) fn euler_family(
    spacing: TimestepSpacing,
    t: usize,
    n: usize,
    offset: usize,
) -> Vec<f64> {
    let ts: Vec<f64> = match spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (t - 1) as f64, n)
            .into_iter()
            .rev()
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = (t / n) as f64;
            (0..n)
                .rev()
                .map(|i| (i as f64 * ratio).round_ties_even() + offset as f64)
                .collect()
        }
        TimestepSpacing::Trailing => np_arange_down(t as f64, 0.0, -(t as f64 / n as f64), n)
            .into_iter()
            .map(|v| v.round_ties_even() - 1.0)
            .collect(),
    };
    ts.into_iter().map(|v| f64::from(v as f32)).collect()
}

/// DPM-Solver multistep (`DPMSolverMultistepScheduler.set_timesteps`): integer
/// timesteps; linspace and leading divide the range into n + 1 parts and drop
/// the last (t = 0).
pub(crate) fn dpm(spacing: TimestepSpacing, t: usize, n: usize, offset: usize) -> Vec<i64> {
    match spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (t - 1) as f64, n + 1)
            .into_iter()
            .rev()
            .take(n)
            .map(|v| v.round_ties_even() as i64)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = (t / (n + 1)) as i64;
            (1..=n)
                .rev()
                .map(|i| i as i64 * ratio + offset as i64)
                .collect()
        }
        TimestepSpacing::Trailing => np_arange_down(t as f64, 0.0, -(t as f64 / n as f64), n)
            .into_iter()
            .map(|v| v.round_ties_even() as i64 - 1)
            .collect(),
    }
}

/// DDIM (`DDIMScheduler.set_timesteps`): integer timesteps.
pub(crate) fn ddim(spacing: TimestepSpacing, t: usize, n: usize, offset: usize) -> Vec<i64> {
    match spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (t - 1) as f64, n)
            .into_iter()
            .rev()
            .map(|v| v.round_ties_even() as i64)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = (t / n) as i64;
            (0..n)
                .rev()
                .map(|i| i as i64 * ratio + offset as i64)
                .collect()
        }
        TimestepSpacing::Trailing => np_arange_down(t as f64, 0.0, -(t as f64 / n as f64), n)
            .into_iter()
            .map(|v| v.round_ties_even() as i64 - 1)
            .collect(),
    }
}

/// LCM (`LCMScheduler.set_timesteps`): n timesteps picked evenly from the
/// distillation schedule of `original_steps` timesteps (k·i − 1, k = T /
/// original_steps), which img2img first shortens to `original_steps ·
/// strength` entries. The spacing setting does not apply.
pub(crate) fn lcm(t: usize, original_steps: usize, n: usize, strength: f64) -> Result<Vec<i64>> {
    let unsupported = |detail: String| EngineError::UnsupportedSampler {
        sampler: "lcm".into(),
        detail,
    };
    if original_steps == 0 || original_steps > t {
        return Err(unsupported(format!(
            "original_inference_steps must be between 1 and {t}, got {original_steps}"
        )));
    }
    if n > original_steps {
        return Err(unsupported(format!(
            "at most {original_steps} steps (the model's original_inference_steps), got {n}"
        )));
    }
    let k = (t / original_steps) as i64;
    let len = (original_steps as f64 * strength).floor() as usize;
    if len / n < 1 {
        return Err(unsupported(format!(
            "{n} steps need strength of at least {:.3} with original_inference_steps {original_steps}",
            n as f64 / original_steps as f64
        )));
    }
    // Descending distillation timesteps, then every (len / n)-th, floored.
    let origin: Vec<i64> = (1..=len as i64).rev().map(|i| i * k - 1).collect();
    let step = len as f64 / n as f64;
    Ok((0..n)
        .map(|i| origin[(i as f64 * step).floor() as usize])
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use TimestepSpacing::*;

    #[test]
    fn euler_spacings_match_diffusers() {
        assert_eq!(
            euler_family(Leading, 1000, 4, 1),
            vec![751.0, 501.0, 251.0, 1.0]
        );
        assert_eq!(
            euler_family(Trailing, 1000, 4, 0),
            vec![999.0, 749.0, 499.0, 249.0]
        );
        let lin = euler_family(Linspace, 1000, 4, 0);
        assert_eq!(lin[0], 999.0);
        assert_eq!(lin[3], 0.0);
        assert_eq!(lin[1], 666.0);
    }

    #[test]
    fn trailing_spacing_keeps_exactly_n_steps() {
        // numpy's arange gives 62 values here; diffusers would run a step at t = -1.
        assert_eq!(euler_family(Trailing, 1000, 61, 0).len(), 61);
        assert_eq!(ddim(Trailing, 1000, 61, 0).len(), 61);
        assert!(ddim(Trailing, 1000, 61, 0).iter().all(|&t| t >= 0));
    }

    #[test]
    fn dpm_and_ddim_spacings_match_diffusers() {
        assert_eq!(dpm(Linspace, 1000, 4, 0), vec![999, 749, 500, 250]);
        assert_eq!(dpm(Leading, 1000, 4, 1), vec![801, 601, 401, 201]);
        assert_eq!(
            ddim(Trailing, 1000, 6, 0),
            vec![999, 832, 666, 499, 332, 166]
        );
        assert_eq!(ddim(Linspace, 1000, 4, 0), vec![999, 666, 333, 0]);
    }

    #[test]
    fn lcm_picks_from_the_distillation_schedule() {
        assert_eq!(lcm(1000, 50, 4, 1.0).unwrap(), vec![999, 759, 499, 259]);
        assert!(lcm(1000, 50, 51, 1.0).is_err());
        assert!(lcm(1000, 50, 8, 0.1).is_err());
    }
}
