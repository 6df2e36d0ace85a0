//! Embedding: the tile, repeated over the image from its top-left corner,
//! changes the luma of every pixel with a strength that keeps the SSIM
//! loss of each window near a fixed target. The change goes into the
//! channels with headroom (inside [0, 221], so it survives brightening or
//! more contrast by 15 %) as a symmetric pattern; the share of a pixel
//! those channels cannot carry (a white background, a channel at 255) gets
//! the same change on R, G and B, one-sided near white (so clipping does
//! not erase it) and fading out near black. Then the whole pattern is
//! scaled down, never up, to a global budget of predicted SSIM loss and
//! MSE, and finally calibrated on the rounded output's measured SSIM
//! (`calibrate`), so every picture spends the same invisibility budget.
//! The per-pixel work runs on two threads, a half of the rows each; the
//! budget pass keeps the Gaussians of Y and Y² that calibration's SSIM
//! needs, so they are computed once.

use super::calibrate::{calibrate, mse_max, render};
use super::plane::{Plane, Src, both, buffer, gauss_height, gauss_rows, recycle, wide};
use super::ssim::Reference;
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
    dev2.box_mean_map(ACT_R, |v| {
        let a = v.max(0.0);
        (Q_SSIM * (2.0 * a + C2_SSIM)).sqrt().min(M_MAX)
    })
    .box_mean(MASK_R)
}

/// Marks packed RGB `pixels` (`width`×`height`, both ≥ 256) with the
/// 64-bit `message` in place.
pub(crate) fn embed(pixels: &mut [u8], width: usize, height: usize, message: u64) {
    let tile = message_tile(message);
    let luma = Plane::luma(pixels, width, height);
    let m = strength(&luma);
    // The change of each channel (`change`, 3 per pixel) and of the luma
    // (`dy`), a half of the rows on each thread.
    let mut change = buffer(3 * width * height);
    let mut dy = Plane::new(width, height);
    let mid = height / 2;
    {
        let (c0, c1) = change.split_at_mut(3 * mid * width);
        let (d0, d1) = dy.data.split_at_mut(mid * width);
        let (pixels, tile, m) = (&*pixels, &tile, &m);
        both(
            || pattern(pixels, width, 0, tile, m, c0, d0),
            || pattern(pixels, width, mid, tile, m, c1, d1),
        );
    }
    // Scale down to the budget: SSIM's predicted structure loss
    // mean(σ_dY² / (2σ_Y² + C2)) and the MSE over the three channels.
    // The Gaussians of Y and Y² away from the edges are the valid ones
    // calibration's SSIM needs (the same sums in the same order): kept.
    let (vw, vh) = (width - 10, height - 10);
    let mut mu = Plane::new(vw, vh);
    let mut sq = Plane::new(vw, vh);
    let loss_rows = |rows: std::ops::Range<usize>, mu: &mut [f64], sq: &mut [f64]| {
        let first = rows.start.max(5);
        let mut loss = 0.0;
        let planes = [
            Src::Plane(&dy),
            Src::Square(&dy),
            Src::Plane(&luma),
            Src::Square(&luma),
        ];
        gauss_rows(planes, false, rows, |y, [md, dd, my, yy]| {
            wide(|| {
                for i in 0..md.len() {
                    let dvar = (dd[i] - md[i] * md[i]).max(0.0);
                    let yvar = (yy[i] - my[i] * my[i]).max(0.0);
                    loss += dvar / (2.0 * yvar + C2_SSIM);
                }
            });
            if (5..height - 5).contains(&y) {
                let at = (y - first) * vw;
                mu[at..at + vw].copy_from_slice(&my[5..5 + vw]);
                sq[at..at + vw].copy_from_slice(&yy[5..5 + vw]);
            }
        });
        loss
    };
    let rows = gauss_height(height, false);
    let split = (rows / 2).clamp(5, height - 5) - 5;
    let (top, bottom) = {
        let (mu0, mu1) = mu.data.split_at_mut(split * vw);
        let (sq0, sq1) = sq.data.split_at_mut(split * vw);
        both(
            || loss_rows(0..split + 5, mu0, sq0),
            || loss_rows(split + 5..rows, mu1, sq1),
        )
    };
    let loss = (top + bottom) / dy.data.len() as f64;
    let mse = change.iter().map(|v| v * v).sum::<f64>() / change.len() as f64;
    let mut k2 = 1f64
        .min(SSIM_LOSS / loss.max(1e-30))
        .min(mse_max() / mse.max(1e-30));
    // Rounding can raise the MSE over the pattern's (on textured pictures
    // it takes few values): check the output itself and shrink until it is
    // within budget.
    let original = pixels.to_vec();
    for _ in 0..MSE_TRIES {
        if render(&original, &change, k2, pixels) <= mse_max() {
            break;
        }
        k2 *= MSE_STEP;
    }
    calibrate(
        &original,
        &Reference::with_stats(&luma, mu, sq),
        &change,
        k2,
        pixels,
    );
    recycle(change);
}

/// The change of each channel and of the luma for the rows from `y0` on
/// that `change` (3 per pixel) and `dy` (1 per pixel) hold.
fn pattern(
    pixels: &[u8],
    width: usize,
    y0: usize,
    tile: &[f64],
    m: &Plane,
    change: &mut [f64],
    dy: &mut [f64],
) {
    let rows = change
        .chunks_exact_mut(3 * width)
        .zip(dy.chunks_exact_mut(width));
    for (r, (change_row, dy_row)) in rows.enumerate() {
        let y = y0 + r;
        let tile_row = &tile[(y % P) * P..][..P];
        let cells = change_row.chunks_exact_mut(3).zip(dy_row.iter_mut());
        for (x, (dc_out, dy_out)) in cells.enumerate() {
            pixel(
                &pixels[3 * (y * width + x)..][..3],
                tile_row[x % P],
                m.data[y * width + x],
                dc_out,
                dy_out,
            );
        }
    }
}

/// The change of each channel (`dc_out`) and of the luma (`dy_out`) of
/// one pixel `px`, with tile value `w` and strength `mi`.
#[inline(always)]
fn pixel(px: &[u8], w: f64, mi: f64, dc_out: &mut [f64], dy_out: &mut f64) {
    let hi = f64::from(px[0].max(px[1]).max(px[2]));
    let lo = f64::from(px[0].min(px[1]).min(px[2]));
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
    dc_out.copy_from_slice(&dc);
    *dy_out = dc[0] * LUMA_W[0] + dc[1] * LUMA_W[1] + dc[2] * LUMA_W[2];
}
