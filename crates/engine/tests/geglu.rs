//! Golden test of the fused GEGLU (`easel_engine::ops::geglu`) against
//! candle's unfused version computed in float64 (candle's `gelu_erf`,
//! whose `erf` is accurate to about 1e-15 there).
//!
//! Tolerance: |got − want| ≤ 3e-7·|a·x| + 2e-6·|want| + 1e-30 for
//! `want = a · x · Φ(x)`. The kernel's `erfc` fit has a fractional error
//! below 1.2e-7 and its `exp` 2 ulp, so Φ is off by at most about 2e-7
//! absolute (for x ≥ 0, where Φ = 1 − erfc/2) or 2e-7 relative (x < 0);
//! f32 rounding of the products adds a few ulp. candle's `gelu` (the tanh
//! approximation) misses this bound by three orders of magnitude (up to
//! 5e-4·|a·x|), and so would a wrong half or a misplaced row.

mod common;

use common::Lcg;
use easel_engine::candle_core::{D, DType, Device, Tensor};
use easel_engine::ops::geglu::{geglu, geglu_unfused};

fn check(dims: &[usize], scale: f32, rng: &mut Lcg) {
    let len = dims.iter().product();
    let data: Vec<f32> = rng.vec(len).iter().map(|v| v * scale).collect();
    let x = Tensor::from_vec(data, dims, &Device::Cpu).unwrap();
    let got = geglu(&x).unwrap();
    let want = geglu_unfused(&x.to_dtype(DType::F64).unwrap()).unwrap();
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().unwrap() /= 2;
    assert_eq!(got.dims(), out_dims.as_slice());
    let halves = x.to_dtype(DType::F64).unwrap().chunk(2, D::Minus1).unwrap();
    let ax = (&halves[0] * &halves[1]).unwrap();
    let flat = |t: &Tensor| -> Vec<f64> {
        t.to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let (got, want, ax) = (flat(&got), flat(&want), flat(&ax));
    for (i, ((g, w), ax)) in got.iter().zip(&want).zip(&ax).enumerate() {
        let bound = 3e-7 * ax.abs() + 2e-6 * w.abs() + 1e-30;
        assert!(
            (g - w).abs() <= bound,
            "geglu {dims:?} (scale {scale}) at {i}: {g} vs {w} (bound {bound:e})"
        );
    }
}

#[test]
fn fused_geglu_matches_the_float64_reference() {
    let mut rng = Lcg(7);
    // Widths below, at and above the 16- and 8-lane vectors, odd halves;
    // one row (fewer rows than workers) and many; rank 2, 3 and 4.
    for dims in [
        vec![1, 2],
        vec![3, 34],
        vec![5, 2 * 17],
        vec![2, 7, 2 * 33],
        vec![2, 64, 2 * 320],
        vec![1, 2, 9, 2 * 40],
    ] {
        // Inputs in ±1 (Lcg's range), ±4 and ±12: the fit's middle, the
        // tails where Φ saturates to 0 and 1.
        for scale in [1.0, 4.0, 12.0] {
            check(&dims, scale, &mut rng);
        }
    }
}

#[test]
fn saturation_and_tiny_inputs() {
    // a = [2, −3, 1, 1], x = [1e-20, −1e-20, 40, −40].
    let x = Tensor::new(
        &[[2f32, -3.0, 1.0, 1.0, 1e-20, -1e-20, 40.0, -40.0]],
        &Device::Cpu,
    )
    .unwrap();
    let got: Vec<f32> = geglu(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    // gelu(x) ≈ x/2 near 0.
    assert!((got[0] - 1e-20).abs() <= 1e-26, "{}", got[0]);
    assert!((got[1] - 1.5e-20).abs() <= 1e-26, "{}", got[1]);
    // gelu(40) = 40, gelu(−40) = −40·Φ(−40) ≈ −1.4e-349: zero in f32.
    assert_eq!(got[2], 40.0);
    assert!(got[3].abs() < 1e-30, "{}", got[3]);
    assert!(got.iter().all(|v| v.is_finite()));
}

#[test]
fn odd_width_is_an_error() {
    let x = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(geglu(&x).is_err());
}
