//! Sigma schedules that replace the model's own spacing: pure functions of
//! the range and the number of steps.

/// Karras et al. 2022 (<https://arxiv.org/abs/2206.00364>, eq. 5):
/// σ_i = (σ_max^{1/ρ} + i/(n−1) · (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ for i = 0..n−1,
/// descending from σ_max to σ_min (k-diffusion `get_sigmas_karras`, without
/// the trailing zero).
pub fn karras(sigma_min: f64, sigma_max: f64, n: usize, rho: f64) -> Vec<f64> {
    let min_inv = sigma_min.powf(1.0 / rho);
    let max_inv = sigma_max.powf(1.0 / rho);
    super::spacing::np_linspace(0.0, 1.0, n)
        .into_iter()
        .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
        .collect()
}

/// Log-linear spacing from σ_max down to σ_min, n values (k-diffusion
/// `get_sigmas_exponential`, without the trailing zero).
pub fn exponential(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    super::spacing::np_linspace(sigma_max.ln(), sigma_min.ln(), n)
        .into_iter()
        .map(f64::exp)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn karras_hits_both_ends_and_descends() {
        let s = karras(0.0292, 14.6146, 10, 7.0);
        assert_eq!(s.len(), 10);
        assert!((s[0] - 14.6146).abs() < 1e-12);
        assert!((s[9] - 0.0292).abs() < 1e-12);
        assert!(s.windows(2).all(|w| w[1] < w[0]));
        // rho = 7 crowds the steps towards sigma_min.
        assert!(s[5] < (14.6146 + 0.0292) / 4.0);
    }

    #[test]
    fn karras_with_one_step_is_sigma_max() {
        let s = karras(0.1, 10.0, 1, 7.0);
        assert!(s.len() == 1 && (s[0] - 10.0).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn exponential_is_geometric() {
        let s = exponential(0.01, 100.0, 5);
        assert!((s[0] - 100.0).abs() < 1e-9 && (s[4] - 0.01).abs() < 1e-12);
        for w in s.windows(2) {
            assert!((w[1] / w[0] - 0.1).abs() < 1e-12);
        }
    }
}
