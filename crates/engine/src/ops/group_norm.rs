//! Group normalisation with its affine transform and an optional SiLU, in
//! one kernel on the CPU.
//!
//! candle's `GroupNorm` is eight tensor operations (sum, divide, subtract,
//! square, sum, add, square root, divide, then the affine multiply and add)
//! and the SiLU that follows it in every resnet block is two or more; each
//! writes a full-size tensor. Here each task takes one (image, group):
//! one pass for the mean, one for the variance about it (the two-pass
//! order candle uses, so the results agree to rounding), and one that
//! writes `silu((x − mean) · rstd · γ_c + β_c)` (or without the SiLU). The
//! mean is summed about the group's first value and carried as two f32s,
//! so a group whose mean is large against its spread keeps its precision
//! (better than candle's, there). A
//! group at SD's shapes (10 channels of a 64×64 latent, 160 KiB) stays in
//! L2 between the passes. Sums are kept in 16 independent f32 lanes per
//! channel row (which vectorises, and is more accurate than one running
//! f32 sum) and added up in f64. The loops are compiled for AVX-512,
//! AVX2+FMA and baseline and chosen at run time; the SiLU's `exp` is the
//! vectorisable polynomial of the fused attention
//! ([`super::attention`]'s `exp_nonpositive`).
//!
//! Tasks are shared by as many rayon workers as candle gives its matmuls
//! ([`candle_core::utils::get_num_threads`]). Other devices and dtypes
//! take [`group_norm_unfused`], candle's `GroupNorm` (and `silu`), which is
//! also the reference of the golden tests
//! (`crates/engine/tests/group_norm.rs`).

use candle_core::{
    CpuStorage, CustomOp3, DType, Device, Layout, Module, Result, Shape, Tensor, bail, utils,
};
use candle_nn::VarBuilder;

use super::attention::exp_nonpositive;
use super::simd::Simd;
use super::tasks;
use super::view::OutPtr;

/// What follows the normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Nothing: plain group norm.
    None,
    /// `x · sigmoid(x)`.
    Silu,
}

/// Group norm of `x` `[B, C, …]` over `groups` groups of channels, scaled
/// by `gamma` `[C]` and shifted by `beta` `[C]` per channel, then
/// `activation`. On the CPU in f32 this is the fused kernel; elsewhere
/// [`group_norm_unfused`].
pub fn group_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    groups: usize,
    eps: f64,
    activation: Activation,
) -> Result<Tensor> {
    let dims = x.dims();
    if dims.len() < 3 {
        bail!("group_norm: input rank {} < 3", dims.len());
    }
    let c = dims[1];
    if groups == 0 || !c.is_multiple_of(groups) {
        bail!("group_norm: {c} channels do not split into {groups} groups");
    }
    if gamma.dims() != [c] || beta.dims() != [c] {
        bail!(
            "group_norm: γ {:?} and β {:?} for {c} channels",
            gamma.dims(),
            beta.dims()
        );
    }
    let fused = matches!(x.device(), Device::Cpu)
        && [x, gamma, beta].iter().all(|t| t.dtype() == DType::F32)
        && x.elem_count() > 0;
    if !fused {
        return group_norm_unfused(x, gamma, beta, groups, eps, activation);
    }
    let op = GroupNormOp {
        groups,
        eps,
        activation,
    };
    x.contiguous()?
        .apply_op3_no_bwd(&gamma.contiguous()?, &beta.contiguous()?, &op)
}

/// candle's `GroupNorm` followed by candle's `silu` where asked: the
/// fallback of [`group_norm`] and its reference in tests.
pub fn group_norm_unfused(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    groups: usize,
    eps: f64,
    activation: Activation,
) -> Result<Tensor> {
    let c = x.dim(1)?;
    let norm = candle_nn::GroupNorm::new(gamma.clone(), beta.clone(), c, groups, eps)?;
    let y = norm.forward(x)?;
    match activation {
        Activation::None => Ok(y),
        Activation::Silu => candle_nn::ops::silu(&y),
    }
}

/// A group norm layer with PyTorch's weight names (`weight` = γ, `bias` =
/// β), the engine's replacement for `candle_nn::GroupNorm`; it can fuse
/// the SiLU that follows it ([`GroupNorm::forward_silu`]).
#[derive(Debug, Clone)]
pub struct GroupNorm {
    gamma: Tensor,
    beta: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    /// Loads `weight` and `bias`, both `[channels]`.
    pub fn new(vb: VarBuilder, groups: usize, channels: usize, eps: f64) -> Result<Self> {
        let gamma = vb.get(channels, "weight")?;
        let beta = vb.get(channels, "bias")?;
        Self::from_tensors(gamma, beta, groups, eps)
    }

    /// From γ and β, both `[channels]`.
    pub fn from_tensors(gamma: Tensor, beta: Tensor, groups: usize, eps: f64) -> Result<Self> {
        let channels = gamma.dim(0)?;
        if groups == 0 || !channels.is_multiple_of(groups) || beta.dims() != gamma.dims() {
            bail!(
                "group_norm: γ {:?} and β {:?} do not make {groups} groups",
                gamma.dims(),
                beta.dims()
            );
        }
        Ok(Self {
            gamma,
            beta,
            groups,
            eps,
        })
    }

    /// The normalisation followed by SiLU, in one pass over the output.
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        group_norm(
            x,
            &self.gamma,
            &self.beta,
            self.groups,
            self.eps,
            Activation::Silu,
        )
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        group_norm(
            x,
            &self.gamma,
            &self.beta,
            self.groups,
            self.eps,
            Activation::None,
        )
    }
}

struct GroupNormOp {
    groups: usize,
    eps: f64,
    activation: Activation,
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "easel-group-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let contiguous = |l: &Layout, len: usize, name: &str| match l.contiguous_offsets() {
            Some((a, b)) if b - a == len => Ok(a..b),
            _ => bail!("group_norm: {name} must be contiguous"),
        };
        let dims = l1.dims();
        let (b, c) = (dims[0], dims[1]);
        let x = &s1.as_slice::<f32>()?[contiguous(l1, l1.shape().elem_count(), "input")?];
        let gamma = &s2.as_slice::<f32>()?[contiguous(l2, c, "γ")?];
        let beta = &s3.as_slice::<f32>()?[contiguous(l3, c, "β")?];
        let hw = dims[2..].iter().product::<usize>();
        let mut out = vec![0f32; x.len()];
        let g = Groups {
            cg: c / self.groups,
            hw,
            eps: self.eps,
            silu: self.activation == Activation::Silu,
        };
        run(x, gamma, beta, &mut out, b * self.groups, &g);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// The shape of every group: `cg` channels of `hw` values.
struct Groups {
    cg: usize,
    hw: usize,
    eps: f64,
    silu: bool,
}

fn run(x: &[f32], gamma: &[f32], beta: &[f32], out: &mut [f32], tasks: usize, g: &Groups) {
    let len = g.cg * g.hw;
    let groups_per_image = gamma.len() / g.cg;
    let out_ptr = OutPtr(out.as_mut_ptr());
    let simd = Simd::detect();
    tasks::share(
        tasks,
        utils::get_num_threads(),
        || (),
        |(), task| {
            let c0 = (task % groups_per_image) * g.cg;
            let src = &x[task * len..][..len];
            // SAFETY: group `task` of the output, the same range of `out`
            // as `src` is of `x`, written by this task only (see `OutPtr`).
            let dst = unsafe { std::slice::from_raw_parts_mut(out_ptr.at(task * len), len) };
            simd.group(src, &gamma[c0..c0 + g.cg], &beta[c0..c0 + g.cg], dst, g);
        },
    );
}

/// The loops, compiled once per instruction set.
impl Simd {
    fn group(self, x: &[f32], gamma: &[f32], beta: &[f32], out: &mut [f32], g: &Groups) {
        match self {
            // SAFETY: `detect` saw the features these functions enable.
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => unsafe { group_avx512(x, gamma, beta, out, g) },
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => unsafe { group_avx2(x, gamma, beta, out, g) },
            Self::Baseline => group(x, gamma, beta, out, g),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn group_avx512(x: &[f32], gamma: &[f32], beta: &[f32], out: &mut [f32], g: &Groups) {
    group(x, gamma, beta, out, g)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn group_avx2(x: &[f32], gamma: &[f32], beta: &[f32], out: &mut [f32], g: &Groups) {
    group(x, gamma, beta, out, g)
}

/// Lanes of the independent partial sums (one AVX-512 register).
const LANES: usize = 16;

/// `Σ f(v)` over `row` in `LANES` f32 partial sums, added up in f64.
#[inline(always)]
fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        let c: &[f32; LANES] = c.try_into().expect("chunks_exact");
        for (s, &v) in lanes.iter_mut().zip(c) {
            *s += f(v);
        }
    }
    let rest: f64 = chunks.remainder().iter().map(|&v| f(v) as f64).sum();
    rest + lanes.iter().map(|&s| s as f64).sum::<f64>()
}

/// One group: `x` and `out` hold `cg` channel rows of `hw` values.
#[inline(always)]
fn group(x: &[f32], gamma: &[f32], beta: &[f32], out: &mut [f32], g: &Groups) {
    let n = (g.cg * g.hw) as f64;
    // Summed about the group's first value, so the f32 lanes add small
    // deviations, not large values, when the mean is large against the
    // spread (100 ± 0.01 in the tests).
    let pivot = x[0];
    let mut sum = 0f64;
    for row in x.chunks_exact(g.hw) {
        sum += lane_sum(row, |v| v - pivot);
    }
    // The mean as an f32 pair: `v − hi` is exact for `v` near `hi`
    // (Sterbenz), so `(v − hi) − lo` keeps the deviation's digits where
    // `v − mean as f32` would carry the mean's rounding (4e-6 at 100, 1e-3
    // of a 0.01 spread).
    let mean = pivot as f64 + sum / n;
    let hi = mean as f32;
    let lo = (mean - hi as f64) as f32;
    let mut sq = 0f64;
    for row in x.chunks_exact(g.hw) {
        sq += lane_sum(row, |v| {
            let d = (v - hi) - lo;
            d * d
        });
    }
    let rstd = 1.0 / (sq / n + g.eps).sqrt();
    let rows = x.chunks_exact(g.hw).zip(out.chunks_exact_mut(g.hw));
    for (ci, (row, dst)) in rows.enumerate() {
        let a = (rstd * gamma[ci] as f64) as f32;
        let b = beta[ci];
        if g.silu {
            for (o, &v) in dst.iter_mut().zip(row) {
                *o = silu(((v - hi) - lo) * a + b);
            }
        } else {
            for (o, &v) in dst.iter_mut().zip(row) {
                *o = ((v - hi) - lo) * a + b;
            }
        }
    }
}

/// `v · sigmoid(v)`, with `sigmoid` from `e = exp(−|v|) ≤ 1`: `1 / (1 + e)`
/// for `v ≥ 0`, `e / (1 + e)` below, so the `exp` never overflows and a
/// loop over it vectorises (a select, no branch).
#[inline(always)]
fn silu(v: f32) -> f32 {
    let e = exp_nonpositive(-v.abs());
    let num = if v >= 0.0 { 1.0 } else { e };
    v * num / (1.0 + e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_is_within_a_few_ulp_of_the_definition() {
        let mut v = -87f32;
        while v < 100.0 {
            let want = (v as f64) / (1.0 + (-(v as f64)).exp());
            let got = silu(v) as f64;
            assert!(
                (got - want).abs() <= 4.0 * f32::EPSILON as f64 * want.abs() + 1e-37,
                "silu({v}): {got} vs {want}"
            );
            v += 0.0137;
        }
        // Below −87 the exp is held at exp(−87): silu is ~1e-36 instead of
        // smaller, against values of order 1 elsewhere.
        assert!(silu(-100.0).abs() < 1e-34);
        assert_eq!(silu(0.0), 0.0);
        assert!(silu(f32::NAN).is_nan());
    }

    #[test]
    fn every_simd_level_the_cpu_has_gives_the_same_group() {
        // 3 channels of 37 values: rows off the 16 lanes, values of both
        // signs around a non-zero mean.
        let g = Groups {
            cg: 3,
            hw: 37,
            eps: 1e-6,
            silu: true,
        };
        let x: Vec<f32> = (0..g.cg * g.hw)
            .map(|i| ((i * 37) % 23) as f32 * 0.4 - 3.0)
            .collect();
        let (gamma, beta) = ([0.5f32, 1.0, -2.0], [0.1f32, -0.3, 0.0]);
        let mut want = vec![0f32; x.len()];
        group(&x, &gamma, &beta, &mut want, &g);
        let mut levels = vec![Simd::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                levels.push(Simd::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                levels.push(Simd::Avx512);
            }
        }
        for simd in levels {
            let mut got = vec![0f32; x.len()];
            simd.group(&x, &gamma, &beta, &mut got, &g);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{simd:?}");
            }
        }
    }
}
