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
//! rows); running it on an AVX2-only machine checks the other path, and
//! CI does exactly that under QEMU's emulation of a Haswell CPU
//! (`qemu-x86_64 -cpu Haswell` as cargo's runner, with
//! `EASEL_EXPECT_GEMM_PATH=fma` so the test fails if the dispatch did not
//! take the AVX2 path; see `.ci/run`).
//! Tolerance: |got − want| ≤ 1e-5 · Σₖ|aᵢₖ·bₖⱼ| (+1e-30), relative to the
//! magnitude of the terms; f32 rounding is typically √k·6e-8 of it (2e-6 at
//! the largest k here), a wrong or skipped tile is of order 1.

mod common;

use common::Lcg;

use easel_engine::candle_core::{Device, Tensor};

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
    // CI runs this test a second time under an emulated AVX2-only CPU and
    // says which path it must then be on.
    if let Ok(want) = std::env::var("EASEL_EXPECT_GEMM_PATH") {
        assert!(
            simd_path().starts_with(want.as_str()),
            "expected the {want} path, the CPU offers {}",
            simd_path()
        );
    }
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

// ---------------------------------------------------------------------------
// The f32 linear layer (`easel_engine::ops::linear::Linear`): tasks of rows
// (or of output columns when there are few rows), one gemm call each, the
// bias added per tile. Checked against float64 at the same tolerance as the
// matmul, at row counts below, at and above a task (128 rows) and the few
// rows of a time embedding or a text context, with and without a bias, on a
// 2-D and a 3-D input.
// ---------------------------------------------------------------------------

use easel_engine::candle_core::Module;
use easel_engine::ops::bf16::Compute;
use easel_engine::ops::linear::Linear;

fn check_linear(rows: usize, k: usize, n: usize, with_bias: bool, rng: &mut Lcg) {
    let x = rng.vec(rows * k);
    let w = rng.vec(n * k);
    let b = rng.vec(n);
    let layer = Linear::new(
        Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap(),
        with_bias.then(|| Tensor::from_vec(b.clone(), n, &Device::Cpu).unwrap()),
        Compute::F32,
    )
    .unwrap();
    // As the transformers call it: [batch, rows, features].
    let xt = Tensor::from_vec(x.clone(), (1, rows, k), &Device::Cpu).unwrap();
    let out = layer.forward(&xt).unwrap();
    assert_eq!(out.dims(), [1, rows, n]);
    let got: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
    for i in 0..rows {
        for j in 0..n {
            let (mut sum, mut mag) = (0f64, 0f64);
            for kk in 0..k {
                let p = x[i * k + kk] as f64 * w[j * k + kk] as f64;
                sum += p;
                mag += p.abs();
            }
            if with_bias {
                sum += b[j] as f64;
                mag += (b[j] as f64).abs();
            }
            let g = got[i * n + j] as f64;
            assert!(
                (g - sum).abs() <= 1e-5 * mag + 1e-30,
                "linear {rows}x{k}->{n} (bias: {with_bias}) at [{i},{j}]: {g} vs {sum}"
            );
        }
    }
}

#[test]
fn linear_f32_matches_a_float64_reference() {
    let mut rng = Lcg(41);
    for &(rows, k, n) in &[
        (1, 320, 1280),
        (2, 1280, 1280),
        (77, 768, 320),
        (127, 40, 97),
        (128, 64, 64),
        (129, 33, 17),
        (300, 96, 257),
        (1024, 64, 48),
    ] {
        check_linear(rows, k, n, true, &mut rng);
        check_linear(rows, k, n, false, &mut rng);
    }
    // A 2-D input keeps its rank.
    let layer = Linear::new(
        Tensor::from_vec(rng.vec(6 * 5), (6, 5), &Device::Cpu).unwrap(),
        None,
        Compute::F32,
    )
    .unwrap();
    let x = Tensor::from_vec(rng.vec(4 * 5), (4, 5), &Device::Cpu).unwrap();
    assert_eq!(layer.forward(&x).unwrap().dims(), [4, 6]);
}

// ---------------------------------------------------------------------------
// Fused attention (`easel_engine::ops::attention`).
//
// Each case is checked against the plain candle path (`attention_unfused`:
// matmul → softmax → matmul, every query row) and against a float64
// softmax computed here (a spread of query rows always including the first
// and last, which keeps the f64 loops cheap at 4096 × 4096). Tolerance: the
// largest difference over the compared rows ≤ 1e-5 × the largest |value|
// of the float64 output (a relative error of the whole output, not of
// single elements, which can be near zero after the weighted average of
// signed values). Lengths include values that are not multiples of the
// kernel's tiles (64 query rows, 256 keys) and shorter than a tile.
// ---------------------------------------------------------------------------

use easel_engine::ops::attention::{Mask, attention, attention_unfused};

/// One attention problem: `b` batches of `h` heads, `lq` queries, `lk`
/// keys, head width `d`.
#[derive(Debug, Clone, Copy)]
struct Case {
    b: usize,
    h: usize,
    lq: usize,
    lk: usize,
    d: usize,
    mask: Mask,
    /// Multiplies the inputs' range: 1 gives scores of order 1; larger
    /// values give peaked softmaxes whose row maximum moves from block to
    /// block (the online rescaling path).
    spread: f32,
}

/// Query rows compared against float64: about 40, ends included.
fn sample_rows(lq: usize) -> Vec<usize> {
    let step = (lq / 40).max(1);
    let mut rows: Vec<usize> = (0..lq).step_by(step).collect();
    if rows.last() != Some(&(lq - 1)) {
        rows.push(lq - 1);
    }
    rows
}

/// float64 attention of query row `i` of head `(bi, hi)`; inputs are
/// row-major `[B, H, L, D]`.
#[allow(clippy::too_many_arguments)]
fn reference_row(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    c: &Case,
    bi: usize,
    hi: usize,
    i: usize,
    scale: f64,
) -> Vec<f64> {
    let (lq, lk, d) = (c.lq, c.lk, c.d);
    let head = bi * c.h + hi;
    let qr = &q[(head * lq + i) * d..][..d];
    let visible = match c.mask {
        Mask::None => lk,
        Mask::Causal => i + 1,
    };
    let scores: Vec<f64> = (0..visible)
        .map(|j| {
            let kr = &k[(head * lk + j) * d..][..d];
            qr.iter()
                .zip(kr)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>()
                * scale
        })
        .collect();
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut out = vec![0f64; d];
    for (j, w) in weights.iter().enumerate() {
        let vr = &v[(head * lk + j) * d..][..d];
        for (o, &x) in out.iter_mut().zip(vr) {
            *o += w / total * x as f64;
        }
    }
    out
}

fn check_attention(c: Case, rng: &mut Lcg) {
    let Case {
        b, h, lq, lk, d, ..
    } = c;
    let scale = 1.0 / (d as f64).sqrt();
    let mut data = |l: usize| -> Vec<f32> {
        rng.vec(b * h * l * d)
            .into_iter()
            .map(|x| x * c.spread)
            .collect()
    };
    let (q, k, v) = (data(lq), data(lk), data(lk));
    let t = |x: &[f32], l: usize| Tensor::from_vec(x.to_vec(), (b, h, l, d), &Device::Cpu).unwrap();
    let (qt, kt, vt) = (t(&q, lq), t(&k, lk), t(&v, lk));
    let fused = attention(&qt, &kt, &vt, scale, c.mask).unwrap();
    assert_eq!(fused.dims(), &[b, h, lq, d]);
    let fused: Vec<f32> = fused.flatten_all().unwrap().to_vec1().unwrap();
    let plain: Vec<f32> = attention_unfused(&qt, &kt, &vt, scale, c.mask)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();

    let (mut worst_ref, mut worst_plain, mut magnitude) = (0f64, 0f64, 0f64);
    for bi in 0..b {
        for hi in 0..h {
            for i in sample_rows(lq) {
                let want = reference_row(&q, &k, &v, &c, bi, hi, i, scale);
                let at = ((bi * h + hi) * lq + i) * d;
                for (j, w) in want.iter().enumerate() {
                    magnitude = magnitude.max(w.abs());
                    worst_ref = worst_ref.max((fused[at + j] as f64 - w).abs());
                }
            }
        }
    }
    for (f, p) in fused.iter().zip(&plain) {
        worst_plain = worst_plain.max((f - p).abs() as f64);
    }
    let tol = 1e-5 * magnitude;
    assert!(
        worst_ref <= tol && worst_plain <= tol,
        "{c:?}: fused differs from float64 by {worst_ref:e} and from matmul-softmax-matmul \
         by {worst_plain:e} (tolerance {tol:e})"
    );
}

fn case(b: usize, h: usize, lq: usize, lk: usize, d: usize) -> Case {
    Case {
        b,
        h,
        lq,
        lk,
        d,
        mask: Mask::None,
        spread: 1.0,
    }
}

#[test]
fn fused_self_attention_matches_the_references() {
    let mut rng = Lcg(1);
    // SD 1.5 at 512×512: 4096 positions, head width 40 (first level).
    check_attention(case(1, 2, 4096, 4096, 40), &mut rng);
    // Second level (1024 positions, 80) and SDXL-like widths.
    check_attention(case(2, 2, 1024, 1024, 80), &mut rng);
    check_attention(case(1, 2, 1024, 1024, 64), &mut rng);
    // Third level / VAE-like: 64 positions, 160 wide; one head of 512
    // (the VAE's mid-block attention is single-headed over all channels).
    check_attention(case(2, 3, 64, 64, 160), &mut rng);
    check_attention(case(1, 1, 256, 256, 512), &mut rng);
    // Lengths off the tiles: 1, 63, 65, 257, 513 keys.
    check_attention(case(1, 1, 1, 1, 40), &mut rng);
    check_attention(case(2, 2, 63, 63, 40), &mut rng);
    check_attention(case(1, 3, 65, 65, 64), &mut rng);
    check_attention(case(1, 2, 257, 257, 80), &mut rng);
    check_attention(case(1, 1, 130, 513, 40), &mut rng);
}

#[test]
fn fused_cross_attention_matches_the_references() {
    let mut rng = Lcg(2);
    // Latent positions attending to CLIP's 77 tokens.
    check_attention(case(2, 1, 4096, 77, 40), &mut rng);
    check_attention(case(1, 2, 1024, 77, 80), &mut rng);
    check_attention(case(2, 2, 64, 77, 160), &mut rng);
    check_attention(case(1, 2, 100, 77, 64), &mut rng);
    check_attention(case(1, 1, 7, 300, 40), &mut rng);
}

#[test]
fn fused_causal_attention_matches_the_references() {
    let mut rng = Lcg(3);
    let causal = |b, h, l, d| Case {
        mask: Mask::Causal,
        ..case(b, h, l, l, d)
    };
    // CLIP's text encoder: 77 tokens, 12 heads of 64 (SD 1.x) — and
    // lengths across the tile edges.
    check_attention(causal(2, 12, 77, 64), &mut rng);
    check_attention(causal(1, 2, 1, 64), &mut rng);
    check_attention(causal(1, 2, 64, 40), &mut rng);
    check_attention(causal(1, 2, 130, 80), &mut rng);
    check_attention(causal(1, 1, 600, 64), &mut rng);
}

#[test]
fn fused_attention_is_stable_when_the_row_maximum_moves_between_key_blocks() {
    // Inputs in [-4, 4]: scores with a standard deviation of about 5, so
    // softmax rows are peaked and a later key block often raises a row's
    // maximum; what earlier blocks accumulated must then be rescaled.
    let mut rng = Lcg(4);
    for (lq, lk) in [(70, 1000), (300, 300), (64, 77)] {
        check_attention(
            Case {
                spread: 4.0,
                ..case(1, 2, lq, lk, 64)
            },
            &mut rng,
        );
    }
}

#[test]
fn fused_attention_reads_strided_heads_without_a_copy() {
    // [B, L, H·D] projections viewed as [B, H, L, D] (what the UNet, VAE and
    // CLIP hand it) give the same result as contiguous copies.
    let (b, h, lq, lk, d) = (2, 3, 70, 77, 40);
    let mut rng = Lcg(5);
    let proj = |l: usize, rng: &mut Lcg| {
        Tensor::from_vec(rng.vec(b * l * h * d), (b, l, h * d), &Device::Cpu)
            .unwrap()
            .reshape((b, l, h, d))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
    };
    let (q, k, v) = (proj(lq, &mut rng), proj(lk, &mut rng), proj(lk, &mut rng));
    assert!(!q.is_contiguous());
    let strided = attention(&q, &k, &v, 0.15, Mask::None).unwrap();
    let c = |t: &Tensor| t.contiguous().unwrap();
    let copied = attention(&c(&q), &c(&k), &c(&v), 0.15, Mask::None).unwrap();
    let diff = common::max_abs_diff(&strided, &copied);
    assert_eq!(diff, 0.0);
}

#[test]
fn attention_in_float64_takes_the_unfused_path_and_agrees() {
    use easel_engine::candle_core::DType;
    let (b, h, l, d) = (1, 2, 90, 40);
    let mut rng = Lcg(6);
    let t = |rng: &mut Lcg| {
        Tensor::from_vec(rng.vec(b * h * l * d), (b, h, l, d), &Device::Cpu).unwrap()
    };
    let (q, k, v) = (t(&mut rng), t(&mut rng), t(&mut rng));
    let f32_out = attention(&q, &k, &v, 0.2, Mask::Causal).unwrap();
    let f64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
    let f64_out = attention(&f64(&q), &f64(&k), &f64(&v), 0.2, Mask::Causal).unwrap();
    assert_eq!(f64_out.dtype(), DType::F64);
    let diff = common::max_abs_diff_f64(&f64_out, &f32_out);
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn attention_refuses_mismatched_shapes() {
    let z = |dims: &[usize]| {
        Tensor::zeros(dims, easel_engine::candle_core::DType::F32, &Device::Cpu).unwrap()
    };
    let q = z(&[1, 2, 10, 40]);
    assert!(
        attention(
            &q,
            &z(&[1, 2, 12, 32]),
            &z(&[1, 2, 12, 40]),
            1.0,
            Mask::None
        )
        .is_err()
    );
    assert!(
        attention(
            &q,
            &z(&[1, 2, 12, 40]),
            &z(&[1, 2, 11, 40]),
            1.0,
            Mask::None
        )
        .is_err()
    );
    assert!(
        attention(
            &q,
            &z(&[1, 2, 12, 40]),
            &z(&[1, 2, 12, 40]),
            1.0,
            Mask::Causal
        )
        .is_err()
    );
    assert!(attention(&q, &z(&[1, 2, 0, 40]), &z(&[1, 2, 0, 40]), 1.0, Mask::None).is_err());
}

/// Not a check: prints how long the fused and the unfused attention take at
/// SD 1.5's shapes (batch 1, 8 heads), for tuning the tiles on a quiet
/// machine. Run with
/// `cargo test --release -p easel-engine --test kernels -- --ignored --nocapture`
/// (`RAYON_NUM_THREADS=N` to fix the thread count).
#[test]
#[ignore = "timing only; run on a quiet machine"]
fn attention_timing_at_sd15_shapes() {
    let mut rng = Lcg(7);
    // (positions, keys, head width): 64×64, 32×32 and 16×16 latents, each
    // attending to itself and to 77 tokens.
    let shapes = [
        (4096, 4096, 40),
        (4096, 77, 40),
        (1024, 1024, 80),
        (1024, 77, 80),
        (256, 256, 160),
        (256, 77, 160),
    ];
    for (lq, lk, d) in shapes {
        let t = |l: usize, rng: &mut Lcg| {
            Tensor::from_vec(rng.vec(8 * l * d), (1, 8, l, d), &Device::Cpu).unwrap()
        };
        let (q, k, v) = (t(lq, &mut rng), t(lk, &mut rng), t(lk, &mut rng));
        let scale = 1.0 / (d as f64).sqrt();
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
        let fused = time(&|| attention(&q, &k, &v, scale, Mask::None).unwrap());
        let plain = time(&|| attention_unfused(&q, &k, &v, scale, Mask::None).unwrap());
        eprintln!(
            "8 heads, {lq} queries × {lk} keys × {d}: fused {:.2} ms, unfused {:.2} ms \
             (median of 5)",
            fused * 1e3,
            plain * 1e3
        );
    }
}
