//! GEGLU, the gate of the UNet's feed-forward, in one kernel on the CPU:
//! `h[…, j] = x[…, j] · gelu(x[…, n + j])` for a projection `x` `[…, 2n]`.
//!
//! candle's version (`chunk`, `gelu`, `mul`) copies each strided half out
//! of the projection and runs a scalar `tanh` per element; at SD 1.5's
//! 64×64 latent that is three passes over 40 MiB and about 5 % of a UNet
//! step. Here each worker takes one share of the rows and writes the
//! product in one pass over the projection, with the loops compiled for
//! AVX-512, AVX2+FMA and baseline and chosen at run time.
//!
//! The GELU is the exact one, `x · Φ(x) = ½·x·erfc(−x/√2)`, as diffusers'
//! `GEGLU` computes it (candle's `gelu` is the tanh approximation, which
//! differs by up to 5e-4). `erfc` is Numerical Recipes' Chebyshev fit
//! (`erfcc`: fractional error below 1.2e-7 everywhere) on the vectorisable
//! `exp` of the fused attention, so the kernel agrees with an f64
//! reference to a few f32 ulps (`crates/engine/tests/kernels.rs`).
//!
//! Other devices and dtypes take [`geglu_unfused`] (candle's `gelu_erf`).

use candle_core::{
    CpuStorage, CustomOp1, D, DType, Device, Layout, Result, Shape, Tensor, bail, utils,
};
use rayon::prelude::*;

use super::attention::exp_nonpositive;
use super::simd::Simd;

/// `x[…, :n] · gelu(x[…, n:])` for `x` `[…, 2n]`: the fused kernel on the
/// CPU in f32, [`geglu_unfused`] elsewhere.
pub fn geglu(x: &Tensor) -> Result<Tensor> {
    let width = x.dim(D::Minus1)?;
    if !width.is_multiple_of(2) {
        bail!("geglu: the last dimension {width} is odd");
    }
    let fused = matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32 && width > 0;
    if !fused {
        return geglu_unfused(x);
    }
    x.contiguous()?.apply_op1_no_bwd(&Geglu)
}

/// The same with candle's operations (the reference of the tests).
pub fn geglu_unfused(x: &Tensor) -> Result<Tensor> {
    let halves = x.chunk(2, D::Minus1)?;
    &halves[0] * halves[1].gelu_erf()?
}

struct Geglu;

impl CustomOp1 for Geglu {
    fn name(&self) -> &'static str {
        "easel-geglu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            bail!("geglu: expected f32 storage");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("geglu: expected a contiguous input");
        };
        let x = &data[start..end];
        let dims = layout.dims();
        let width = dims[dims.len() - 1];
        let n = width / 2;
        let rows = x.len() / width;
        let mut out = vec![0f32; rows * n];
        let simd = Simd::detect();
        // One contiguous share of the rows per worker, as many workers as
        // candle gives its matmuls ([`utils::get_num_threads`]).
        let workers = utils::get_num_threads().clamp(1, rows);
        let share = rows.div_ceil(workers);
        let task = |(o, x): (&mut [f32], &[f32])| {
            for (o, x) in o.chunks_exact_mut(n).zip(x.chunks_exact(width)) {
                let (a, b) = x.split_at(n);
                simd.geglu_row(a, b, o);
            }
        };
        if workers == 1 {
            task((&mut out, x));
        } else {
            out.par_chunks_mut(n * share)
                .zip(x.par_chunks(width * share))
                .for_each(task);
        }
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("non-empty dims") = n;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

impl Simd {
    fn geglu_row(self, a: &[f32], b: &[f32], out: &mut [f32]) {
        match self {
            // SAFETY: `detect` saw the features these functions enable.
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => unsafe { geglu_row_avx512(a, b, out) },
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => unsafe { geglu_row_avx2(a, b, out) },
            Self::Baseline => geglu_row(a, b, out),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn geglu_row_avx512(a: &[f32], b: &[f32], out: &mut [f32]) {
    geglu_row(a, b, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn geglu_row_avx2(a: &[f32], b: &[f32], out: &mut [f32]) {
    geglu_row(a, b, out)
}

#[inline(always)]
fn geglu_row(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a * gelu(b);
    }
}

/// `x · Φ(x)`, exact to about 1e-7 relative (see the module docs). Plain
/// arithmetic and selects only, so a loop over it vectorises.
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    // erfc(z) for z = |x|/√2 ≥ 0 (Numerical Recipes, `erfcc`).
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut p = 0.170_872_77f32;
    p = p * t - 0.822_152_23;
    p = p * t + 1.488_515_9;
    p = p * t - 1.135_204;
    p = p * t + 0.278_868_07;
    p = p * t - 0.186_288_06;
    p = p * t + 0.096_784_18;
    p = p * t + 0.374_091_96;
    p = p * t + 1.000_023_7;
    p = p * t - 1.265_512_2;
    // The exponent is −z² plus a fit that is ≤ 3e-8 at z = 0: never
    // meaningfully positive, and `exp_nonpositive` wants ≤ 0.
    let e = -z * z + p;
    let e = if e > 0.0 { 0.0 } else { e };
    let erfc = t * exp_nonpositive(e);
    // Φ(x) = ½·erfc(−x/√2): erfc(z)/2 for x < 0, 1 − erfc(z)/2 for x ≥ 0.
    let phi = if x < 0.0 {
        0.5 * erfc
    } else {
        1.0 - 0.5 * erfc
    };
    x * phi
}
