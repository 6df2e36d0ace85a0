//! Detection: a whitened luma residual (the picture's edge-preserving
//! smooth part removed) folded onto one tile period at each scale of a
//! bounded grid, the sync pattern found by FFT cross-correlation (which
//! also gives the tile's offset, so a crop at any position is read), then
//! the code cells read by a matched filter and two equalisers (a fixed one
//! for the smoothing and the high-pass, an adaptive one fitted on the sync
//! cells), and decoded (BCH by ordered statistics, then the CRC).

use std::sync::{Arc, OnceLock};

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use super::bch::{self, N, RANK_SUM_MAX};
use super::plane::Plane;
use super::tile::{CELL, P, SMOOTH_C, T, layout};

/// Residual prefilter radius (canonical pixels): Y − sigma(Y, r).
const PRE_R: usize = 3;
/// The sigma filter's tolerance, in grey levels.
const SIGMA_TAU: f64 = 6.0;
/// The adaptive equaliser: (2·LS_K + 1)² taps fitted on the sync cells,
/// with a ridge of LS_EPS relative to the mean diagonal.
const LS_K: i64 = 1;
const LS_EPS: f64 = 1e-6;
/// Radius of the local energy that weights the residual.
const W_R: usize = 4;
/// Weighting: x = e·V0 / (V0 + local energy).
const V0: f64 = 2.0;
/// The residual is clipped at CLIP_K × its mean magnitude.
const CLIP_K: f64 = 3.0;
/// Decoding reads at most the central DET_MAX × DET_MAX window.
const DET_MAX: usize = 512;
/// The scale search reads at most the central SEARCH_MAX × SEARCH_MAX window.
const SEARCH_MAX: usize = 256;
/// Scale refinement step around a candidate.
const S_FINE: f64 = 1.004;
/// The scale grid: S_MIN · S_STEP^k up to S_MAX.
const S_MIN: f64 = 0.45;
const S_MAX: f64 = 2.2;
const S_STEP: f64 = 1.008;
/// Scale candidates decoded at most.
const N_CAND: usize = 3;
/// The smallest sync z-score worth decoding.
const Z_MIN: f64 = 4.0;
/// Wiener regularisation of the cell equaliser.
const EQ_LAMBDA: f64 = 0.01;
/// The smallest side the detector reads.
pub(crate) const MIN_SIDE: usize = 96;

/// What a successful read found.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Found<T> {
    /// What the accepted message decoded to.
    pub value: T,
    /// The scale of the image relative to the marked one.
    pub scale: f64,
    /// Where a tile starts, in image pixels, modulo the period.
    pub offset_x: f64,
    pub offset_y: f64,
    /// The sync peak's z-score.
    pub sync_z: f64,
    /// Bits the decoder corrected.
    pub bit_errors: usize,
    /// 0 to 1, from the corrections' reliability ranks and the sync peak.
    pub confidence: f64,
}

fn plan(n: usize, inverse: bool) -> Arc<dyn Fft<f64>> {
    static PLANS: OnceLock<[Arc<dyn Fft<f64>>; 4]> = OnceLock::new();
    let plans = PLANS.get_or_init(|| {
        let mut p = FftPlanner::new();
        [
            p.plan_fft_forward(P),
            p.plan_fft_inverse(P),
            p.plan_fft_forward(T),
            p.plan_fft_inverse(T),
        ]
    });
    let i = usize::from(inverse) + if n == P { 0 } else { 2 };
    plans[i].clone()
}

/// In-place 2-D DFT of an n×n array (n = P or T), unnormalised.
fn fft2(data: &mut [Complex<f64>], n: usize, inverse: bool) {
    let fft = plan(n, inverse);
    for row in data.chunks_exact_mut(n) {
        fft.process(row);
    }
    let mut column = vec![Complex::new(0.0, 0.0); n];
    for x in 0..n {
        for y in 0..n {
            column[y] = data[y * n + x];
        }
        fft.process(&mut column);
        for y in 0..n {
            data[y * n + x] = column[y];
        }
    }
}

fn complex(v: &[f64]) -> Vec<Complex<f64>> {
    v.iter().map(|&x| Complex::new(x, 0.0)).collect()
}

/// conj(fft2(sync tile)).
fn sync_spectrum() -> &'static [Complex<f64>] {
    static S: OnceLock<Vec<Complex<f64>>> = OnceLock::new();
    S.get_or_init(|| {
        let mut s = complex(&layout().sync_tile);
        fft2(&mut s, P, false);
        s.iter().map(|c| c.conj()).collect()
    })
}

/// The equaliser's transfer function G/(G² + λ·max G²), G = Re fft2(gram).
fn equaliser() -> &'static [f64] {
    static E: OnceLock<Vec<f64>> = OnceLock::new();
    E.get_or_init(|| {
        let mut g = complex(&cell_gram());
        fft2(&mut g, T, false);
        let re: Vec<f64> = g.iter().map(|c| c.re).collect();
        let max = re.iter().map(|v| v * v).fold(0.0, f64::max);
        re.iter().map(|&v| v / (v * v + EQ_LAMBDA * max)).collect()
    })
}

/// out[y] = Σ_j k[j]·a[(y + j − shift) mod P].
fn circ_corr(a: &[f64], k: &[f64], shift: usize) -> Vec<f64> {
    (0..P)
        .map(|y| {
            k.iter()
                .enumerate()
                .map(|(j, w)| w * a[(y + j + P * 4 - shift) % P])
                .sum()
        })
        .collect()
}

/// The T×T circular kernel: the matched filter's output at each cell
/// offset for one unit cell, through the linear part of the detector (in
/// flat regions the sigma filter is a plain box, so the high-pass is
/// Y − B∗Y with B = box(2·PRE_R + 1) along each axis).
fn cell_gram() -> Vec<f64> {
    let foot = &layout().foot;
    let mut e = vec![0.0; P];
    e[0] = 1.0;
    let reversed: Vec<f64> = foot.iter().rev().copied().collect();
    let h = circ_corr(&e, &reversed, foot.len() - 1 - SMOOTH_C);
    let b = vec![1.0 / (2 * PRE_R + 1) as f64; 2 * PRE_R + 1];
    let hb = circ_corr(&h, &b, PRE_R);
    let lag = |a: &[f64], d: usize| -> f64 {
        (0..P).map(|y| a[y] * h[(y + P - (CELL * d) % P) % P]).sum()
    };
    let r_hh: Vec<f64> = (0..T).map(|d| lag(&h, d)).collect();
    let r_hb: Vec<f64> = (0..T).map(|d| lag(&hb, d)).collect();
    let mut g = vec![0.0; T * T];
    for i in 0..T {
        for j in 0..T {
            g[i * T + j] = r_hh[i] * r_hh[j] - r_hb[i] * r_hb[j];
        }
    }
    g
}

/// The whitened residual: e = Y − sigma_columns(sigma_rows(Y, r)),
/// weighted by 2/(2 + local energy), clipped at 3× its mean magnitude.
fn residual(y: &Plane, r: usize) -> Plane {
    let low = y
        .sigma_pass(r, SIGMA_TAU, true)
        .sigma_pass(r, SIGMA_TAU, false);
    let e = y.zip(&low, |a, b| a - b);
    let energy = e.map(|v| v * v).box_mean(W_R);
    let x = e.zip(&energy, |v, en| v * (V0 / (V0 + en)));
    let mean = x.data.iter().map(|v| v.abs()).sum::<f64>() / x.data.len() as f64;
    let lim = CLIP_K * mean + 1e-9;
    x.map(|v| v.clamp(-lim, lim))
}

/// The sparse fold matrix of one axis of `n` samples at scale `s`:
/// (sample, bin, weight) triples, origin at the window's centre pixel
/// ⌊n/2⌋ (an integer, so that at scale 1 each sample lands on one bin).
fn fold_axis(n: usize, s: f64) -> Vec<(usize, usize, f64)> {
    let half = (n / 2) as f64;
    let bin = |u: i64| u.rem_euclid(P as i64) as usize;
    let mut out = Vec::with_capacity(2 * n + 4);
    if s >= 1.0 {
        for x in 0..n {
            let u = (x as f64 + 0.5 - half) / s - 0.5;
            let i0 = u.floor();
            let f = u - i0;
            out.push((x, bin(i0 as i64), 1.0 - f));
            out.push((x, bin(i0 as i64 + 1), f));
        }
    } else {
        let lo = ((0.5 - half) / s - 0.5).ceil() as i64;
        let hi = ((n as f64 - 0.5 - half) / s - 0.5).floor() as i64;
        for u in lo..=hi {
            let x = (u as f64 + 0.5) * s + half - 0.5;
            let x0 = (x.floor() as i64).clamp(0, n as i64 - 2) as usize;
            let f = x - x0 as f64;
            out.push((x0, bin(u), 1.0 - f));
            out.push((x0 + 1, bin(u), f));
        }
    }
    out
}

/// The residual folded onto one P×P period at scale `s`.
fn fold(r: &Plane, s: f64) -> Vec<f64> {
    let ax = fold_axis(r.width, s);
    let ay = fold_axis(r.height, s);
    let mut rows = vec![0.0; r.height * P];
    for y in 0..r.height {
        let line = &r.data[y * r.width..(y + 1) * r.width];
        let out = &mut rows[y * P..(y + 1) * P];
        for &(x, b, w) in &ax {
            out[b] += w * line[x];
        }
    }
    let mut f = vec![0.0; P * P];
    for &(y, b, w) in &ay {
        let src = &rows[y * P..(y + 1) * P];
        let dst = &mut f[b * P..(b + 1) * P];
        for (d, s) in dst.iter_mut().zip(src) {
            *d += w * s;
        }
    }
    f
}

/// The circular cross-correlation with the sync tile, its z-score
/// ((max − mean)/std) and its peak (dy, dx), the first maximum in
/// row-major order.
fn sync_peak(f: &[f64]) -> (f64, usize, usize) {
    let mut c = complex(f);
    fft2(&mut c, P, false);
    for (v, s) in c.iter_mut().zip(sync_spectrum()) {
        *v *= s;
    }
    fft2(&mut c, P, true);
    let n = (P * P) as f64;
    let re: Vec<f64> = c.iter().map(|v| v.re / n).collect();
    let mean = re.iter().sum::<f64>() / n;
    let std = (re.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
    let (mut best, mut at) = (f64::NEG_INFINITY, 0);
    for (i, &v) in re.iter().enumerate() {
        if v > best {
            best = v;
            at = i;
        }
    }
    ((best - mean) / (std + 1e-12), at / P, at % P)
}

/// The equalised soft value of every code bit, for the tile at (dy, dx).
fn soft_bits(f: &[f64], dy: usize, dx: usize) -> [f64; N] {
    let foot = &layout().foot;
    let shift = SMOOTH_C;
    // A[y, x] = F[y + dy, x + dx]; then correlate with the footprint and
    // sample every cell's first pixel.
    let a = |y: usize, x: usize| f[((y + dy) % P) * P + (x + dx) % P];
    let mut cols = vec![0.0; P * P];
    for y in 0..P {
        for x in 0..P {
            cols[y * P + x] = foot
                .iter()
                .enumerate()
                .map(|(k, w)| w * a((y + k + P - shift) % P, x))
                .sum();
        }
    }
    let mut cells = vec![Complex::new(0.0, 0.0); T * T];
    for i in 0..T {
        for j in 0..T {
            let (y, x) = (i * CELL, j * CELL);
            cells[i * T + j].re = foot
                .iter()
                .enumerate()
                .map(|(k, w)| w * cols[y * P + (x + k + P - shift) % P])
                .sum();
        }
    }
    fft2(&mut cells, T, false);
    for (c, e) in cells.iter_mut().zip(equaliser()) {
        *c *= *e;
    }
    fft2(&mut cells, T, true);
    let n = (T * T) as f64;
    let x: Vec<f64> = cells.iter().map(|c| c.re / n).collect();
    let soft = adaptive(&x);
    let data = &layout().data_cells;
    std::array::from_fn(|i| soft[data[i]])
}

/// The adaptive equaliser: a 3×3-tap circular filter on the cell grid,
/// fitted by least squares so that it maps the sync cells onto their
/// known chips (it absorbs what the fixed model misses: the picture's
/// strength, the attack's blur). Taps (a, b) for a, b ∈ −1..=1, a major.
fn adaptive(x: &[f64]) -> Vec<f64> {
    let layout = layout();
    let taps: Vec<(i64, i64)> = (-LS_K..=LS_K)
        .flat_map(|a| (-LS_K..=LS_K).map(move |b| (a, b)))
        .collect();
    let k = taps.len();
    let t = T as i64;
    let row = |c: usize| -> Vec<f64> {
        let (i, j) = ((c / T) as i64, (c % T) as i64);
        taps.iter()
            .map(|&(a, b)| x[((i + a).rem_euclid(t) * t + (j + b).rem_euclid(t)) as usize])
            .collect()
    };
    let mut m = vec![0.0; k * k];
    let mut rhs = vec![0.0; k];
    for (&c, &chip) in layout.sync_cells.iter().zip(&layout.sync_chips) {
        let r = row(c);
        for p in 0..k {
            rhs[p] += r[p] * chip;
            for q in 0..k {
                m[p * k + q] += r[p] * r[q];
            }
        }
    }
    let trace: f64 = (0..k).map(|p| m[p * k + p]).sum();
    for p in 0..k {
        m[p * k + p] += LS_EPS * (trace / k as f64 + 1e-30);
    }
    let e = solve(m, rhs, k);
    (0..T * T)
        .map(|c| row(c).iter().zip(&e).map(|(a, b)| a * b).sum())
        .collect()
}

/// Solves the k×k system m·e = rhs by Gaussian elimination with partial
/// pivoting (a singular system gives zeros, so nothing decodes).
fn solve(mut m: Vec<f64>, mut rhs: Vec<f64>, k: usize) -> Vec<f64> {
    for col in 0..k {
        let pivot = (col..k)
            .max_by(|&a, &b| m[a * k + col].abs().total_cmp(&m[b * k + col].abs()))
            .expect("a column");
        if m[pivot * k + col].abs() < 1e-300 {
            return vec![0.0; k];
        }
        for j in 0..k {
            m.swap(col * k + j, pivot * k + j);
        }
        rhs.swap(col, pivot);
        for r in col + 1..k {
            let f = m[r * k + col] / m[col * k + col];
            for j in col..k {
                m[r * k + j] -= f * m[col * k + j];
            }
            rhs[r] -= f * rhs[col];
        }
    }
    let mut e = vec![0.0; k];
    for r in (0..k).rev() {
        let tail: f64 = (r + 1..k).map(|j| m[r * k + j] * e[j]).sum();
        e[r] = (rhs[r] - tail) / m[r * k + r];
    }
    e
}

/// The scales searched.
fn scale_grid() -> Vec<f64> {
    let n = ((S_MAX / S_MIN).ln() / S_STEP.ln()).floor() as i32 + 1;
    (0..n).map(|k| S_MIN * S_STEP.powi(k)).collect()
}

/// Reads the mark of luma `y`; `accept` turns a decoded 64-bit message
/// into a value (the payload, when its CRC matches). `None` when the
/// image is smaller than [`MIN_SIDE`] or no candidate decodes.
pub(crate) fn detect<V>(y: &Plane, accept: impl Fn(u64) -> Option<V>) -> Option<Found<V>> {
    if y.width.min(y.height) < MIN_SIDE {
        return None;
    }
    let (search, _, _) = y.centre(SEARCH_MAX);
    let rs = residual(&search, PRE_R);
    let scales = scale_grid();
    let zs: Vec<f64> = scales.iter().map(|&s| sync_peak(&fold(&rs, s)).0).collect();
    let last = zs.len() - 1;
    let mut peaks: Vec<usize> = (0..zs.len())
        .filter(|&k| (k == 0 || zs[k] >= zs[k - 1]) && (k == last || zs[k] > zs[k + 1]))
        .collect();
    peaks.sort_by(|&a, &b| zs[b].total_cmp(&zs[a]));
    let (window, x0, y0) = y.centre(DET_MAX);
    for &k in peaks.iter().take(N_CAND) {
        if zs[k] < Z_MIN {
            break;
        }
        let r = ((PRE_R as f64) * scales[k]).round_ties_even().max(1.0) as usize;
        let rd = residual(&window, r);
        let mut best: Option<(f64, f64, usize, usize)> = None;
        for s in [scales[k] / S_FINE, scales[k], scales[k] * S_FINE] {
            let (z, dy, dx) = sync_peak(&fold(&rd, s));
            if best.is_none_or(|b| z > b.0) {
                best = Some((z, s, dy, dx));
            }
        }
        let (z, s, dy, dx) = best.expect("three scales tried");
        let soft = soft_bits(&fold(&rd, s), dy, dx);
        let Some(decoded) = bch::osd(&soft, &layout().whiten, &accept) else {
            continue;
        };
        let period = P as f64 * s;
        let oy = (dy as f64 + 0.5) * s + (window.height / 2) as f64 - 0.5 + y0 as f64;
        let ox = (dx as f64 + 0.5) * s + (window.width / 2) as f64 - 0.5 + x0 as f64;
        let confidence = 1.0
            - 0.5 * f64::from(decoded.rank_sum) / (f64::from(RANK_SUM_MAX) + 1.0)
            - 0.5 * (-(z - Z_MIN).max(0.0)).exp();
        return Some(Found {
            value: decoded.value,
            scale: s,
            offset_x: ox.rem_euclid(period),
            offset_y: oy.rem_euclid(period),
            sync_z: z,
            bit_errors: decoded.bit_errors,
            confidence,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's test values (tools/watermark/robust/SPEC.md §5).
    #[test]
    fn the_gram_kernel_matches_the_reference() {
        let g = cell_gram();
        for (at, want) in [
            ((0, 0), 5.8938137755),
            ((0, 1), -0.7490433673),
            ((1, 1), -0.6887755102),
            ((0, 2), -0.0192920918),
        ] {
            let got = g[at.0 * T + at.1];
            assert!((got - want).abs() < 1e-9, "g{at:?} = {got}, want {want}");
        }
    }

    #[test]
    fn a_singular_system_solves_to_zeros_and_a_regular_one_exactly() {
        assert_eq!(solve(vec![0.0; 4], vec![1.0, 1.0], 2), vec![0.0, 0.0]);
        let e = solve(vec![0.0, 2.0, 1.0, 1.0], vec![4.0, 3.0], 2);
        assert!(
            (e[0] - 1.0).abs() < 1e-12 && (e[1] - 2.0).abs() < 1e-12,
            "{e:?}"
        );
    }
}
