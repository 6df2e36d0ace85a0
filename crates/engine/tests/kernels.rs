//! Golden tests of the CPU kernels the engine's speed rests on (issue 14),
//! against float64 references computed here.
//!
//! Matmul: candle's CPU matmul runs on the `gemm` crate, which the engine
//! builds with its `x86-v4` feature (AVX-512 kernels, chosen at run time by
//! `is_x86_feature_detected!("avx512f")`, else the AVX2/FMA kernels). gemm
//! offers no switch to force the lower path in a process whose CPU has
//! AVX-512 (no environment variable, no public per-ISA entry point), so this
//! test checks whichever path the machine selects — it prints which — at
//! sizes that cover the micro-kernel edges (1, below, at and above the
//! register-tile widths of both paths: 8/16 f32 lanes, 3–4 vectors × 4–6
//! rows); running it on an AVX2-only machine checks the other path.
//! Tolerance: |got − want| ≤ 1e-5 · Σₖ|aᵢₖ·bₖⱼ| (+1e-30), relative to the
//! magnitude of the terms; f32 rounding is typically √k·6e-8 of it (2e-6 at
//! the largest k here), a wrong or skipped tile is of order 1.

use easel_engine::candle_core::{Device, Tensor};

/// A deterministic stream of values in [-1, 1) (a 64-bit LCG), so failures
/// reproduce without a seed argument.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn simd_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f (x86-v4)";
        }
        if std::arch::is_x86_feature_detected!("fma") {
            return "fma (x86-v3)";
        }
    }
    "scalar or non-x86"
}

/// Checks `a · b` (`[batch, m, k] · [batch, k, n]`, row-major data) as
/// candle computes it against float64 sums. `rhs_transposed` stores `b` as
/// `[batch, n, k]` and hands candle its transpose (the layout of `x · Wᵀ`).
fn check_matmul(batch: usize, m: usize, k: usize, n: usize, rhs_transposed: bool, rng: &mut Lcg) {
    let a = rng.vec(batch * m * k);
    let b = rng.vec(batch * k * n);
    let at = Tensor::from_vec(a.clone(), (batch, m, k), &Device::Cpu).unwrap();
    let bt = if rhs_transposed {
        Tensor::from_vec(b.clone(), (batch, n, k), &Device::Cpu)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
    } else {
        Tensor::from_vec(b.clone(), (batch, k, n), &Device::Cpu).unwrap()
    };
    let got: Vec<f32> = at
        .matmul(&bt)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b_at = |bi: usize, kk: usize, j: usize| -> f64 {
        if rhs_transposed {
            b[(bi * n + j) * k + kk] as f64
        } else {
            b[(bi * k + kk) * n + j] as f64
        }
    };
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let (mut sum, mut mag) = (0f64, 0f64);
                for kk in 0..k {
                    let p = a[(bi * m + i) * k + kk] as f64 * b_at(bi, kk, j);
                    sum += p;
                    mag += p.abs();
                }
                let g = got[(bi * m + i) * n + j] as f64;
                assert!(
                    (g - sum).abs() <= 1e-5 * mag + 1e-30,
                    "matmul {batch}x{m}x{k}x{n} (rhs transposed: {rhs_transposed}) at \
                     [{bi},{i},{j}]: {g} vs {sum} (path {})",
                    simd_path()
                );
            }
        }
    }
}

#[test]
fn matmul_matches_a_float64_reference_at_kernel_edge_sizes() {
    eprintln!("gemm path on this CPU: {}", simd_path());
    let mut rng = Lcg(14);
    let edges = [1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 47, 48, 49, 63, 65, 97];
    for &m in &edges {
        for &n in &edges {
            check_matmul(1, m, 40, n, false, &mut rng);
        }
    }
    for &k in &[1, 2, 7, 16, 17, 63, 64, 65, 255, 257, 513] {
        check_matmul(1, 33, k, 49, false, &mut rng);
        check_matmul(1, 33, k, 49, true, &mut rng);
    }
    // Batched, and large enough to be split across threads and blocked over
    // k (gemm's cache blocking).
    check_matmul(3, 77, 320, 65, true, &mut rng);
    check_matmul(2, 130, 96, 257, false, &mut rng);
    check_matmul(1, 300, 1030, 260, false, &mut rng);
}
