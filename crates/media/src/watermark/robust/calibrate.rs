//! The last step of embedding: rendering the 8-bit output at a strength,
//! and calibrating that strength on the output's measured SSIM. The
//! budget of `embed` predicts the SSIM loss from the pattern, and that
//! prediction is pessimistic by a factor that depends on the picture
//! (rounding, SSIM's luminance term): outputs measured 0.986–0.988 where
//! the target is 0.98, and a smooth gradient fell under 0.981. So the
//! delivered output's SSIM is measured and k² rescaled to land just above
//! [`SSIM_MIN`] (SPEC.md §4 step 5d).

use super::plane::{Plane, both, wide};
use super::ssim::Reference;

/// The delivered output's SSIM ([`Reference::ssim`]) is at least this ...
const SSIM_MIN: f64 = 0.981;
/// ... and the first try aims here.
const SSIM_AIM: f64 = 0.9813;
/// Bounds of the factor on k².
const G_MIN: f64 = 0.25;
const G_MAX: f64 = 4.0;
/// The factor on the factor after a try that fails.
const STEP: f64 = 0.9;
/// Tries at most.
const TRIES: usize = 8;

/// The global budget: the MSE of PSNR 38.2 dB, checked on the delivered
/// 8-bit output.
pub(crate) fn mse_max() -> f64 {
    255.0 * 255.0 / 10f64.powf(3.82)
}

/// Rescales the strength of `pixels` (rendered with `k2` from `original`
/// and `change`): s₀ = SSIM of that output; the factor g on k² starts at
/// (1 − SSIM_AIM)/(1 − s₀), taking the loss 1 − SSIM to grow like k²; a
/// try whose output fails [`SSIM_MIN`] or the MSE budget is followed by
/// one [`STEP`] smaller, at most [`TRIES`] tries. When none passes,
/// `pixels` keeps the output rendered with `k2`.
pub(crate) fn calibrate(
    original: &[u8],
    reference: &Reference,
    change: &[f64],
    k2: f64,
    pixels: &mut [u8],
) {
    let (width, height) = reference.size();
    let s0 = reference.ssim(&Plane::luma(pixels, width, height));
    let mut g = ((1.0 - SSIM_AIM) / (1.0 - s0).max(1e-12)).clamp(G_MIN, G_MAX);
    let mut tried = vec![0u8; pixels.len()];
    for _ in 0..TRIES {
        if g <= 1.0 && s0 >= SSIM_MIN {
            return;
        }
        if render(original, change, k2 * g, &mut tried) <= mse_max()
            && reference.ssim(&Plane::luma(&tried, width, height)) >= SSIM_MIN
        {
            pixels.copy_from_slice(&tried);
            return;
        }
        g *= STEP;
    }
}

/// Writes round(original + change·√k2), clamped to [0, 255], into `out`
/// (a half on each of two threads); the mean squared difference (summed
/// exactly, in integers).
pub(crate) fn render(original: &[u8], change: &[f64], k2: f64, out: &mut [u8]) -> f64 {
    let k = k2.sqrt();
    let half = |original: &[u8], change: &[f64], out: &mut [u8]| {
        wide(|| {
            let mut err = 0u64;
            for ((c, &o), &delta) in out.iter_mut().zip(original).zip(change) {
                let v = round_ties_even(f64::from(o) + delta * k).clamp(0.0, 255.0) as u8;
                let d = i32::from(v) - i32::from(o);
                err += d.unsigned_abs() as u64 * d.unsigned_abs() as u64;
                *c = v;
            }
            err
        })
    };
    let mid = out.len() / 2;
    let (o0, o1) = out.split_at_mut(mid);
    let (a, b) = both(
        || half(&original[..mid], &change[..mid], o0),
        || half(&original[mid..], &change[mid..], o1),
    );
    (a + b) as f64 / original.len() as f64
}

/// Rounds to the nearest integer, ties to even (`f64::round_ties_even`,
/// NumPy's `rint`) for |v| < 2⁵¹, by adding and removing 1.5·2⁵²: the
/// addition rounds in the default mode. Branch-free, so the loop above
/// vectorises on the baseline x86-64, where `round_ties_even` is a call.
#[inline(always)]
fn round_ties_even(v: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    (v + MAGIC) - MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_matches_the_standard_library_with_ties_to_even() {
        for i in -4000..4000 {
            for frac in [0.0, 0.25, 0.4999999999, 0.5, 0.5000000001, 0.75] {
                let v = f64::from(i) / 8.0 + frac;
                assert_eq!(round_ties_even(v), v.round_ties_even(), "{v}");
                assert_eq!(round_ties_even(-v), (-v).round_ties_even(), "{}", -v);
            }
        }
    }
}
