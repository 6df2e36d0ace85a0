//! Golden tests of the fused group norm (+ SiLU) on the CPU
//! (`easel_engine::ops::group_norm`, issue 14 step 4) against candle's
//! `GroupNorm` followed by candle's `silu`, and against a float64 group norm
//! computed here.
//!
//! Tolerance: the largest difference over the whole output ≤ 1e-5 × the
//! output's largest magnitude (at least 1), against both references. f32
//! rounding of a normalised value is a few 1e-7; a wrong group boundary, a
//! wrong channel's γ/β or a one-pass variance (which loses everything to
//! cancellation on the offset input below) is of order 1.

mod common;

use common::Lcg;

use easel_engine::candle_core::{DType, Device, Module, Tensor};
use easel_engine::ops::group_norm::{Activation, GroupNorm, group_norm, group_norm_unfused};

/// float64 group norm (+ SiLU) of row-major `[B, C, S]` data.
#[allow(clippy::too_many_arguments)]
fn reference(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    b: usize,
    c: usize,
    s: usize,
    groups: usize,
    eps: f64,
    act: Activation,
) -> Vec<f64> {
    let cg = c / groups;
    let mut out = vec![0f64; x.len()];
    for bi in 0..b {
        for g in 0..groups {
            let range = (bi * c + g * cg) * s..(bi * c + (g + 1) * cg) * s;
            let vals = &x[range.clone()];
            let n = vals.len() as f64;
            let mean = vals.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = vals.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let rstd = 1.0 / (var + eps).sqrt();
            for (i, at) in range.enumerate() {
                let ch = g * cg + i / s;
                let y = (x[at] as f64 - mean) * rstd * gamma[ch] as f64 + beta[ch] as f64;
                out[at] = match act {
                    Activation::None => y,
                    Activation::Silu => y / (1.0 + (-y).exp()),
                };
            }
        }
    }
    out
}

/// Checks `[B, C, rest…]` input scaled by `spread` and shifted by `offset`.
fn check(dims: &[usize], groups: usize, act: Activation, spread: f32, offset: f32, rng: &mut Lcg) {
    check_against(dims, groups, act, spread, offset, true, rng)
}

/// As [`check`]; `candle`: also hold it to candle's result.
fn check_against(
    dims: &[usize],
    groups: usize,
    act: Activation,
    spread: f32,
    offset: f32,
    candle: bool,
    rng: &mut Lcg,
) {
    let dev = &Device::Cpu;
    let (b, c) = (dims[0], dims[1]);
    let s: usize = dims[2..].iter().product();
    let xv: Vec<f32> = rng
        .vec(b * c * s)
        .into_iter()
        .map(|v| v * spread + offset)
        .collect();
    let gamma: Vec<f32> = rng.vec(c).into_iter().map(|v| 1.0 + v).collect();
    let beta = rng.vec(c);
    let x = Tensor::from_vec(xv.clone(), dims, dev).unwrap();
    let g = Tensor::from_vec(gamma.clone(), c, dev).unwrap();
    let bt = Tensor::from_vec(beta.clone(), c, dev).unwrap();
    let eps = 1e-5;
    let got = group_norm(&x, &g, &bt, groups, eps, act).unwrap();
    assert_eq!(got.dims(), dims);
    let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
    let plain: Vec<f32> = group_norm_unfused(&x, &g, &bt, groups, eps, act)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let want = reference(&xv, &gamma, &beta, b, c, s, groups, eps, act);
    let magnitude = want.iter().fold(1f64, |m, v| m.max(v.abs()));
    let worst_ref = got
        .iter()
        .zip(&want)
        .fold(0f64, |m, (g, w)| m.max((*g as f64 - w).abs()));
    let worst_plain = got
        .iter()
        .zip(&plain)
        .fold(0f64, |m, (g, p)| m.max((g - p).abs() as f64));
    let tol = 1e-5 * magnitude;
    assert!(
        worst_ref <= tol && (worst_plain <= tol || !candle),
        "{dims:?}, {groups} groups, {act:?}, spread {spread}, offset {offset}: differs from \
         float64 by {worst_ref:e} and from candle's group_norm → silu by {worst_plain:e} \
         (tolerance {tol:e})"
    );
}

#[test]
fn fused_group_norm_silu_matches_candle_and_float64() {
    let mut rng = Lcg(21);
    let silu = Activation::Silu;
    // SD 1.5's first UNet level at 512×512, batch 2 (10 channels a group).
    check(&[2, 320, 64, 64], 32, silu, 1.0, 0.0, &mut rng);
    // A VAE-like group of 16 channels; the bundled model's 16 groups.
    check(&[1, 512, 16, 16], 32, silu, 3.0, 0.5, &mut rng);
    check(&[2, 64, 8, 8], 16, silu, 1.0, 0.0, &mut rng);
    // Odd sizes: rows shorter than the 16 partial-sum lanes, and not a
    // multiple of them; one group; one channel a group; rank 3 and 5.
    check(&[2, 6, 5, 7], 3, silu, 1.0, 0.0, &mut rng);
    check(&[1, 4, 1, 1], 2, silu, 1.0, 0.0, &mut rng);
    check(&[1, 8, 9, 33], 1, silu, 1.0, 0.0, &mut rng);
    check(&[3, 5, 17], 5, silu, 1.0, 0.0, &mut rng);
    check(&[1, 4, 3, 5, 6], 2, silu, 1.0, 0.0, &mut rng);
}

#[test]
fn fused_group_norm_without_activation_matches_candle_and_float64() {
    let mut rng = Lcg(22);
    let none = Activation::None;
    check(&[2, 320, 32, 32], 32, none, 1.0, 0.0, &mut rng);
    check(&[1, 6, 5, 7], 3, none, 1.0, 0.0, &mut rng);
}

#[test]
fn the_variance_is_taken_about_the_mean_so_an_offset_input_keeps_its_precision() {
    // Values 100 ± 0.01: Σx² − (Σx)²/n in f32 would lose every digit; two
    // passes (mean, then squares about it) keep them, with the mean summed
    // about a pivot and carried in two f32s. Held to float64 only: candle's
    // own f32 sums are off by about 2e-3 of the spread here.
    let mut rng = Lcg(23);
    for (act, offset) in [(Activation::Silu, 100.0), (Activation::None, -100.0)] {
        check_against(&[1, 64, 16, 16], 32, act, 0.01, offset, false, &mut rng);
    }
}

#[test]
fn the_layer_gives_the_functions_result_with_and_without_silu() {
    let (c, groups) = (8, 4);
    let mut rng = Lcg(24);
    let dev = &Device::Cpu;
    let gamma = Tensor::from_vec(rng.vec(c), c, dev).unwrap();
    let beta = Tensor::from_vec(rng.vec(c), c, dev).unwrap();
    let layer = GroupNorm::from_tensors(gamma.clone(), beta.clone(), groups, 1e-6).unwrap();
    let x = Tensor::from_vec(rng.vec(2 * c * 25), (2, c, 5, 5), dev).unwrap();
    let function = |act| group_norm(&x, &gamma, &beta, groups, 1e-6, act).unwrap();
    let same = |a: Tensor, b: Tensor| {
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b);
    };
    same(layer.forward(&x).unwrap(), function(Activation::None));
    same(layer.forward_silu(&x).unwrap(), function(Activation::Silu));
}

#[test]
fn group_norm_in_float64_takes_candles_path_and_agrees() {
    let mut rng = Lcg(25);
    let dev = &Device::Cpu;
    let x = Tensor::from_vec(rng.vec(2 * 12 * 49), (2, 12, 7, 7), dev).unwrap();
    let g = Tensor::from_vec(rng.vec(12), 12, dev).unwrap();
    let b = Tensor::from_vec(rng.vec(12), 12, dev).unwrap();
    let f32_out = group_norm(&x, &g, &b, 4, 1e-6, Activation::Silu).unwrap();
    let f64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
    let f64_out = group_norm(&f64(&x), &f64(&g), &f64(&b), 4, 1e-6, Activation::Silu).unwrap();
    assert_eq!(f64_out.dtype(), DType::F64);
    let diff = common::max_abs_diff_f64(&f64_out, &f32_out);
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn group_norm_refuses_mismatched_shapes() {
    let z = |dims: &[usize]| Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap();
    let act = Activation::Silu;
    // Channels that do not split into the groups; γ of the wrong length;
    // rank 2.
    assert!(group_norm(&z(&[1, 6, 4, 4]), &z(&[6]), &z(&[6]), 4, 1e-6, act).is_err());
    assert!(group_norm(&z(&[1, 6, 4, 4]), &z(&[5]), &z(&[6]), 3, 1e-6, act).is_err());
    assert!(group_norm(&z(&[6, 4]), &z(&[6]), &z(&[6]), 3, 1e-6, act).is_err());
}

/// Not a check: prints how long the fused group norm + SiLU and candle's
/// `GroupNorm` → `silu` take at SD 1.5's shapes (32 groups), on a quiet
/// machine. Run with `RAYON_NUM_THREADS=2 cargo test --release -p
/// easel-engine --test group_norm -- --ignored --nocapture`.
#[test]
#[ignore = "timing only; run on a quiet machine"]
fn group_norm_silu_timing_at_sd_shapes() {
    let mut rng = Lcg(26);
    // UNet levels at 512×512 (batch 2, as with guidance); VAE decoder
    // levels at 512×512.
    let shapes = [
        [2, 320, 64, 64],
        [2, 640, 32, 32],
        [2, 1280, 16, 16],
        [1, 512, 128, 128],
        [1, 256, 256, 256],
        [1, 128, 512, 512],
    ];
    for dims in shapes {
        let dev = &Device::Cpu;
        let n: usize = dims.iter().product();
        let x = Tensor::from_vec(rng.vec(n), &dims[..], dev).unwrap();
        let g = Tensor::from_vec(rng.vec(dims[1]), dims[1], dev).unwrap();
        let b = Tensor::from_vec(rng.vec(dims[1]), dims[1], dev).unwrap();
        let time = |f: &dyn Fn() -> Tensor| {
            f(); // warm-up
            let mut samples: Vec<f64> = (0..5)
                .map(|_| {
                    let start = std::time::Instant::now();
                    f();
                    start.elapsed().as_secs_f64()
                })
                .collect();
            samples.sort_by(f64::total_cmp);
            samples[2]
        };
        let act = Activation::Silu;
        let fused = time(&|| group_norm(&x, &g, &b, 32, 1e-6, act).unwrap());
        let plain = time(&|| group_norm_unfused(&x, &g, &b, 32, 1e-6, act).unwrap());
        eprintln!(
            "{dims:?}: fused {:.2} ms, candle {:.2} ms (median of 5)",
            fused * 1e3,
            plain * 1e3
        );
    }
}
