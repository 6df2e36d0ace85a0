//! Prompt drift: how far the prompts of a recent window have moved from a
//! baseline window, measured on their MiniLM sentence embeddings.
//!
//! A window is summarised by its [`Moments`]: the number of prompts `n`,
//! the sum of their embeddings `Σx` and the sum of their squared norms
//! `Σ‖x‖²`, which add up across processes and hours. From them, the mean
//! `μ = Σx / n` and the total variance `σ² = Σ‖x‖² / n − ‖μ‖²`.
//!
//! The drift score is the squared distance between the two windows' mean
//! embeddings (the maximum mean discrepancy with a linear kernel), with
//! the sampling noise expected of two equal distributions taken off, in
//! units of the baseline's total variance:
//!
//! ```text
//! score = max(0, ‖μ_c − μ_b‖² − σ²_c / n_c − σ²_b / n_b) / σ²_b
//! ```
//!
//! Prompts drawn from the baseline's own distribution score about 0 (the
//! correction is the expected value of `‖μ̂_c − μ̂_b‖²` under that null); a
//! score of 1 means the mean has moved by as much as a typical prompt
//! differs from the baseline's mean. The prompts that moved it most are
//! those whose embedding lies furthest along `μ_c − μ_b`
//! ([`Moments::movers`]).

use serde::{Deserialize, Serialize};

/// Fewer prompts than this in either window give no score.
pub const MIN_PROMPTS: u64 = 20;

/// A window's prompt embeddings, summed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Prompts counted.
    pub count: u64,
    /// Sum of their embeddings (empty while `count` is 0).
    pub sum: Vec<f64>,
    /// Sum of their squared norms.
    pub sum_sq: f64,
}

impl Moments {
    /// Counts one embedding. An embedding of another width than those
    /// counted before is ignored (a different embedder).
    pub fn add(&mut self, x: &[f32]) {
        if self.sum.is_empty() {
            self.sum = vec![0.0; x.len()];
        }
        if x.len() != self.sum.len() {
            return;
        }
        for (s, v) in self.sum.iter_mut().zip(x) {
            *s += f64::from(*v);
        }
        self.sum_sq += x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>();
        self.count += 1;
    }

    /// Adds another window's moments (of the same width).
    pub fn merge(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        if self.sum.is_empty() {
            self.sum = vec![0.0; other.sum.len()];
        }
        if other.sum.len() != self.sum.len() {
            return;
        }
        for (s, v) in self.sum.iter_mut().zip(&other.sum) {
            *s += v;
        }
        self.sum_sq += other.sum_sq;
        self.count += other.count;
    }

    fn mean(&self) -> Vec<f64> {
        let n = self.count.max(1) as f64;
        self.sum.iter().map(|s| s / n).collect()
    }

    fn variance(&self) -> f64 {
        let n = self.count.max(1) as f64;
        let mean_norm = self.mean().iter().map(|m| m * m).sum::<f64>();
        (self.sum_sq / n - mean_norm).max(0.0)
    }

    /// The drift score of `self` (the recent window) against `baseline`;
    /// `None` with fewer than [`MIN_PROMPTS`] in either, or a baseline
    /// without variance.
    pub fn drift_from(&self, baseline: &Moments) -> Option<f64> {
        if self.count < MIN_PROMPTS
            || baseline.count < MIN_PROMPTS
            || self.sum.len() != baseline.sum.len()
        {
            return None;
        }
        let var_b = baseline.variance();
        if var_b <= 1e-12 {
            return None;
        }
        let distance: f64 = self
            .mean()
            .iter()
            .zip(baseline.mean())
            .map(|(c, b)| (c - b).powi(2))
            .sum();
        let noise = self.variance() / self.count as f64 + var_b / baseline.count as f64;
        Some((distance - noise).max(0.0) / var_b)
    }

    /// Ranks `samples` (embeddings of the recent window's prompts, with a
    /// label each) by how far each lies along the shift from `baseline`'s
    /// mean to this window's: the first moved the score most.
    pub fn movers<'a, T>(
        &self,
        baseline: &Moments,
        samples: &'a [(T, Vec<f32>)],
    ) -> Vec<(&'a T, f64)> {
        let (mc, mb) = (self.mean(), baseline.mean());
        let shift: Vec<f64> = mc.iter().zip(&mb).map(|(c, b)| c - b).collect();
        let norm = shift.iter().map(|s| s * s).sum::<f64>().sqrt().max(1e-12);
        let mut ranked: Vec<(&T, f64)> = samples
            .iter()
            .filter(|(_, x)| x.len() == shift.len())
            .map(|(label, x)| {
                let along = x
                    .iter()
                    .zip(&mb)
                    .zip(&shift)
                    .map(|((v, b), s)| (f64::from(*v) - b) * s)
                    .sum::<f64>()
                    / norm;
                (label, along)
            })
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit vector near axis `axis` of 8, jittered by `k`.
    fn unit(axis: usize, k: usize) -> Vec<f32> {
        let mut v = [0.0f32; 8];
        v[axis] = 1.0;
        v[(axis + 1 + k % 3) % 8] = 0.3 + 0.05 * (k % 5) as f32;
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn window(axes: &[usize], n: usize) -> Moments {
        let mut m = Moments::default();
        for k in 0..n {
            m.add(&unit(axes[k % axes.len()], k));
        }
        m
    }

    #[test]
    fn the_same_mix_scores_near_zero_and_a_new_topic_high() {
        let baseline = window(&[0, 1, 2], 300);
        let same = window(&[0, 1, 2], 90);
        let shifted = window(&[5, 6], 90);
        let same_score = same.drift_from(&baseline).unwrap();
        let shifted_score = shifted.drift_from(&baseline).unwrap();
        assert!(same_score < 0.05, "{same_score}");
        assert!(shifted_score > 1.0, "{shifted_score}");
    }

    #[test]
    fn too_few_prompts_give_no_score_and_moments_add_up() {
        let baseline = window(&[0, 1], 100);
        assert_eq!(window(&[0], 5).drift_from(&baseline), None);
        let (mut a, b) = (window(&[0, 1], 10), window(&[0, 1], 30));
        a.merge(&b);
        assert_eq!(a.count, 40);
        assert!((a.sum_sq - 40.0).abs() < 1e-6, "unit vectors: {}", a.sum_sq);
    }

    #[test]
    fn the_movers_are_the_prompts_of_the_new_topic() {
        let baseline = window(&[0, 1], 100);
        let mut recent = window(&[0, 1], 60);
        recent.merge(&window(&[6], 40));
        let samples = vec![
            ("old", unit(0, 1)),
            ("new", unit(6, 2)),
            ("old2", unit(1, 3)),
        ];
        let ranked = recent.movers(&baseline, &samples);
        assert_eq!(*ranked[0].0, "new");
    }
}
