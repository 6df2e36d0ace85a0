//! Embedding: the tile, repeated over the image from its top-left corner,
//! changes the luma of every pixel with a strength that keeps the SSIM
//! loss of each window near a fixed target. The change goes into the
//! channels with headroom (inside [0, 221], so it survives brightening or
//! more contrast by 15 %) as a symmetric pattern; the share of a pixel
//! those channels cannot carry (a white background, a channel at 255) gets
//! the same change on R, G and B, one-sided near white (so clipping does
//! not erase it) and fading out near black. Then the whole pattern is
//! scaled down, never up, to a global budget of predicted SSIM loss and
//! MSE.

use super::plane::Plane;
use super::tile::{P, message_tile};

/// The SSIM loss per window the strength aims at.
const Q_SSIM: f64 = 0.05;
/// SSIM's C2 = (0.03·255)².
const C2_SSIM: f64 = (0.03 * 255.0) * (0.03 * 255.0);
/// The strongest change, in grey levels (of the unit-RMS tile): a fully
/// textured picture keeps PSNR ≥ 38 dB.
const M_MAX: f64 = 3.2;
/// Headroom, in units of the strength, under which the pattern becomes
/// one-sided (near white) or fades (near black).
const HEAD_K: f64 = 2.5;
/// The one-sided pattern's strength factor near white.
const WHITE_K: f64 = 0.8;
/// The global budget: predicted mean SSIM loss of the picture.
const SSIM_LOSS: f64 = 0.012;
/// The global budget: the MSE of PSNR 38.2 dB, checked on the delivered
/// 8-bit output.
fn mse_max() -> f64 {
    255.0 * 255.0 / 10f64.powf(3.82)
}
/// The factor on k² per step while the rounded output is over budget.
const MSE_STEP: f64 = 0.95;
/// Steps at most.
const MSE_TRIES: usize = 41;
/// Channel-aware headroom: a channel at or below this survives brightness
/// ×1.15 (255/1.15 = 221.7).
const CH_HI: f64 = 221.0;
/// ... and at or above this more contrast.
const CH_LO: f64 = 0.0;
/// The luma weight of the robust channels at which a pixel is carried by
/// them alone (so the gain on a channel is at most 1/U_MIN).
const U_MIN: f64 = 0.4;
/// Rec. 601 luma weights, as the detector reads the picture.
const LUMA_W: [f64; 3] = [0.299, 0.587, 0.114];
/// Box radius of the local activity and of the mask's smoothing.
const ACT_R: usize = 2;
const MASK_R: usize = 2;

/// The strength of the mark at every pixel: m = min(√(Q·(2·act² + C2)),
/// M_MAX), smoothed; act² is the local variance of the luma.
fn strength(y: &Plane) -> Plane {
    let mu = y.box_mean(ACT_R);
    let dev2 = y.zip(&mu, |v, m| (v - m) * (v - m));
    let act2 = dev2.box_mean(ACT_R).map(|v| v.max(0.0));
    act2.map(|a| (Q_SSIM * (2.0 * a + C2_SSIM)).sqrt().min(M_MAX))
        .box_mean(MASK_R)
}

/// The local variance in SSIM's Gaussian window.
fn local_variance(a: &Plane) -> Plane {
    let mean = a.gauss();
    a.map(|v| v * v)
        .gauss()
        .zip(&mean, |sq, m| (sq - m * m).max(0.0))
}

/// Marks packed RGB `pixels` (`width`×`height`, both ≥ 256) with the
/// 64-bit `message` in place.
pub(crate) fn embed(pixels: &mut [u8], width: usize, height: usize, message: u64) {
    let tile = message_tile(message);
    let luma = Plane::luma(pixels, width, height);
    let m = strength(&luma);
    // The change of each channel (`change`, 3 per pixel) and of the luma
    // (`dy`).
    let mut change = vec![0.0; 3 * width * height];
    let mut dy = Plane::new(width, height);
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            let px = &pixels[3 * i..3 * i + 3];
            let w = tile[(y % P) * P + x % P];
            let mi = m.data[i];
            let hi = f64::from(*px.iter().max().expect("three channels"));
            let lo = f64::from(*px.iter().min().expect("three channels"));
            let a_up = (1.0 - (255.0 - hi) / (HEAD_K * mi)).clamp(0.0, 1.0);
            let a_dn = (1.0 - lo / (HEAD_K * mi)).clamp(0.0, 1.0);
            // The pattern on all three channels, as far as headroom allows.
            let d = mi * (1.0 - a_dn) * (1.0 - (1.0 - WHITE_K) * a_up) * (w - a_up * w.abs());
            // How well each channel carries a symmetric change: ramps of
            // width HEAD_K·m below CH_HI and HEAD_K·m/U_MIN above CH_LO (so
            // the largest gain never clips at 0); `u` is their luma weight.
            let hm = HEAD_K * mi;
            let hl = hm / U_MIN;
            let rho = [0, 1, 2].map(|c| {
                let f = f64::from(px[c]);
                ((CH_HI - f) / hm).clamp(0.0, 1.0) * ((f - CH_LO) / hl).clamp(0.0, 1.0)
            });
            let u = rho[0] * LUMA_W[0] + rho[1] * LUMA_W[1] + rho[2] * LUMA_W[2];
            let lam = (u / U_MIN).min(1.0);
            let carried = mi * w / u.max(U_MIN);
            let rest = (1.0 - lam) * d;
            let dc = [0, 1, 2].map(|c| carried * rho[c] + rest);
            change[3 * i..3 * i + 3].copy_from_slice(&dc);
            dy.data[i] = dc[0] * LUMA_W[0] + dc[1] * LUMA_W[1] + dc[2] * LUMA_W[2];
        }
    }
    // Scale down to the budget: SSIM's predicted structure loss
    // mean(σ_dY² / (2σ_Y² + C2)) and the MSE over the three channels.
    let dvar = local_variance(&dy);
    let yvar = local_variance(&luma);
    let n = dy.data.len() as f64;
    let loss = dvar
        .data
        .iter()
        .zip(&yvar.data)
        .map(|(dv, yv)| dv / (2.0 * yv + C2_SSIM))
        .sum::<f64>()
        / n;
    let mse = change.iter().map(|v| v * v).sum::<f64>() / change.len() as f64;
    let k2 = 1f64
        .min(SSIM_LOSS / loss.max(1e-30))
        .min(mse_max() / mse.max(1e-30));
    // Rounding can raise the MSE over the pattern's (on textured pictures
    // it takes few values): check the output itself and shrink until it is
    // within budget.
    let original = pixels.to_vec();
    let budget = mse_max();
    let mut k2 = k2;
    for _ in 0..MSE_TRIES {
        let k = k2.sqrt();
        let mut err = 0.0;
        for ((c, &o), &delta) in pixels.iter_mut().zip(&original).zip(&change) {
            let v = (f64::from(o) + delta * k)
                .round_ties_even()
                .clamp(0.0, 255.0);
            err += (v - f64::from(o)) * (v - f64::from(o));
            *c = v as u8;
        }
        if err / original.len() as f64 <= budget {
            break;
        }
        k2 *= MSE_STEP;
    }
}
