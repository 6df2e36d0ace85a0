//! Scaled-dot-product attention, `softmax(scale · Q·Kᵀ [+ mask]) · V`, fused
//! and tiled for the CPU so the `Lq × Lk` score matrix is never built.
//!
//! candle composes attention from a matmul, a softmax and a second matmul,
//! so at SD 1.5's 64×64 latent each self-attention layer writes and reads
//! 8 × 4096 × 4096 f32 scores (512 MiB per image) before the second matmul
//! can start. Here each task takes one (batch, head) and a tile of
//! [`Q_TILE`] query rows and walks the keys in blocks of [`K_BLOCK`]: the
//! block's scores (at most 64 × 256 floats, in cache) come from a gemm call,
//! are turned into probabilities against a running row maximum, and are
//! multiplied into a running output at once; when a later block raises a
//! row's maximum, what was accumulated is rescaled by `exp(old − new)`.
//! This is the online softmax of Milakov & Gimelshein
//! (<https://arxiv.org/abs/1805.02867>, algorithm 3) as flash attention uses
//! it (Dao et al., <https://arxiv.org/abs/2205.14135>, algorithm 1); the
//! tile sizes follow PyTorch's CPU flash attention
//! (`aten/src/ATen/native/cpu/FlashAttentionKernel.cpp`), which splits
//! queries into tiles of 32–256 rows and keys into blocks of 512.
//!
//! Both products run on the `gemm` crate's kernels (the ones candle's matmul
//! uses, AVX-512 where the CPU has it), single-threaded inside a task; the
//! tasks, (batch × heads) × query tiles, are shared by as many rayon workers
//! as candle gives its own matmuls ([`candle_core::utils::get_num_threads`]).
//! The row work between the products — maximum, `exp`, sum — is compiled
//! three times (AVX-512, AVX2+FMA, baseline) and chosen at run time, with a
//! polynomial `exp` the compiler can vectorise.
//!
//! Other devices and dtypes (CUDA, f16/bf16, f64) take [`attention_unfused`],
//! the plain candle composition, which is also the reference the golden
//! tests hold the fused path to (`crates/engine/tests/kernels.rs`).

use candle_core::{
    CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor, bail, utils,
};

use super::simd::Simd;
use super::tasks;
use super::view::{OutPtr, View};

/// Which keys a query may attend to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// Every query sees every key (the UNet's and the VAE's attention).
    None,
    /// Query `i` sees keys `0..=i` only (CLIP's text encoder). Needs
    /// `Lq == Lk`.
    Causal,
}

/// Query rows per task: enough rows that a key block's packing (inside
/// gemm) is paid back, few enough that a 64×64 latent's 4096 rows make
/// 64 tasks per head for the threads to share.
const Q_TILE: usize = 64;

/// Keys per block: the block's scores, `Q_TILE × K_BLOCK` f32, are 64 KiB,
/// and stay in L2 between the two products.
const K_BLOCK: usize = 256;

/// Attention over `q`: `[B, H, Lq, D]`, `k`: `[B, H, Lk, D]`,
/// `v`: `[B, H, Lk, Dv]`, returning `[B, H, Lq, Dv]`.
///
/// On the CPU in f32 this is the fused kernel; its result is a transposed
/// view of a contiguous `[B, Lq, H, Dv]` tensor, so `transpose(1, 2)`
/// followed by a reshape to `[B, Lq, H·Dv]` (what every caller does next)
/// copies nothing. The inputs may be strided views (for example a `[B, L,
/// H·D]` projection reshaped and transposed to heads) as long as their last
/// dimension is contiguous; otherwise they are copied first. Elsewhere it
/// is [`attention_unfused`].
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, mask: Mask) -> Result<Tensor> {
    check_shapes(q, k, v, mask)?;
    let fused = matches!(q.device(), Device::Cpu)
        && [q, k, v]
            .iter()
            .all(|t| t.dtype() == DType::F32 && t.elem_count() > 0);
    if !fused {
        return attention_unfused(q, k, v, scale, mask);
    }
    let op = FusedAttention {
        scale: scale as f32,
        mask,
    };
    let (q, k, v) = (unit_last(q)?, unit_last(k)?, unit_last(v)?);
    q.apply_op3_no_bwd(&k, &v, &op)?.transpose(1, 2)
}

/// The same attention as plain candle operations: the full score matrix,
/// [`candle_nn::ops::softmax_last_dim`], a second matmul, computed in f32
/// whatever the input dtype (as candle's Stable Diffusion attention does)
/// and returned contiguous in the input dtype. The fallback of
/// [`attention`] on other devices and dtypes, and its reference in tests.
pub fn attention_unfused(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Mask,
) -> Result<Tensor> {
    check_shapes(q, k, v, mask)?;
    let dtype = q.dtype();
    let f32c = |t: &Tensor| t.to_dtype(DType::F32)?.contiguous();
    let (q, k, v) = (f32c(q)?, f32c(k)?, f32c(v)?);
    let scores = (q.matmul(&k.t()?)? * scale)?;
    let scores = match mask {
        Mask::None => scores,
        Mask::Causal => scores.broadcast_add(&causal_mask(q.dim(2)?, q.device())?)?,
    };
    candle_nn::ops::softmax_last_dim(&scores)?
        .matmul(&v)?
        .to_dtype(dtype)
}

/// `[L, L]` additive mask: 0 on and below the diagonal, −∞ above.
fn causal_mask(l: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..l)
        .flat_map(|i| (0..l).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (l, l), device)
}

fn check_shapes(q: &Tensor, k: &Tensor, v: &Tensor, mask: Mask) -> Result<()> {
    let (b, h, lq, d) = q.dims4()?;
    let (bk, hk, lk, dk) = k.dims4()?;
    let (bv, hv, lv, _) = v.dims4()?;
    if (bk, hk, dk) != (b, h, d) || (bv, hv, lv) != (b, h, lk) {
        bail!(
            "attention: q {:?}, k {:?}, v {:?} do not fit [B,H,Lq,D], [B,H,Lk,D], [B,H,Lk,Dv]",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    if lk == 0 {
        bail!("attention: no keys (Lk = 0)");
    }
    if mask == Mask::Causal && lq != lk {
        bail!("attention: a causal mask needs Lq == Lk, got {lq} and {lk}");
    }
    Ok(())
}

/// `t` itself when its rows (last dimension) are contiguous, else a copy.
fn unit_last(t: &Tensor) -> Result<Tensor> {
    let rows_contiguous = t.dims().last() == Some(&1) || t.stride().last() == Some(&1);
    if rows_contiguous {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}

struct FusedAttention {
    scale: f32,
    mask: Mask,
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "easel-fused-attention"
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
        let q = head_view(s1.as_slice::<f32>()?, l1)?;
        let k = head_view(s2.as_slice::<f32>()?, l2)?;
        let v = head_view(s3.as_slice::<f32>()?, l3)?;
        let out = run(&q, &k, &v, self.scale, self.mask);
        let [b, h, lq, _] = q.dims;
        Ok((CpuStorage::F32(out), Shape::from((b, lq, h, v.dims[3]))))
    }
}

/// `[B, H, L, D]` with any strides, rows (the last dimension) contiguous.
fn head_view<'a>(data: &'a [f32], layout: &Layout) -> Result<View<'a>> {
    let view = View::new("attention", data, layout)?;
    if view.dims[3] > 1 && view.strides[3] != 1 {
        bail!(
            "attention: rows must be contiguous (stride {:?})",
            view.strides
        );
    }
    Ok(view)
}

/// Rows of one head.
impl View<'_> {
    /// Pointer to row `i` of head `(b, h)`.
    fn row(&self, b: usize, h: usize, i: usize) -> *const f32 {
        let at = self.offset + b * self.strides[0] + h * self.strides[1] + i * self.strides[2];
        self.data[at..].as_ptr()
    }

    /// Distance between consecutive rows.
    fn row_stride(&self) -> isize {
        self.strides[2] as isize
    }
}

/// Per-worker buffers, reused across the tasks a worker takes.
struct Scratch {
    scores: Vec<f32>,
    acc: Vec<f32>,
    max: Vec<f32>,
    sum: Vec<f32>,
}

fn run(q: &View, k: &View, v: &View, scale: f32, mask: Mask) -> Vec<f32> {
    let [b, h, lq, d] = q.dims;
    let lk = k.dims[2];
    let dv = v.dims[3];
    let kb = K_BLOCK.min(lk);
    let mut out = vec![0f32; b * lq * h * dv];
    let out_ptr = OutPtr(out.as_mut_ptr());
    let tiles = lq.div_ceil(Q_TILE);
    let tasks = b * h * tiles;
    let simd = Simd::detect();
    let scratch = || Scratch {
        scores: vec![0.0; Q_TILE * kb],
        acc: vec![0.0; Q_TILE * dv],
        max: vec![0.0; Q_TILE],
        sum: vec![0.0; Q_TILE],
    };
    tasks::share(tasks, utils::get_num_threads(), scratch, |s, task| {
        let (bh, tile) = (task / tiles, task % tiles);
        let (bi, hi) = (bh / h, bh % h);
        let q0 = tile * Q_TILE;
        let rows = Q_TILE.min(lq - q0);
        let heads = Heads {
            q: q.row(bi, hi, q0),
            q_rs: q.row_stride(),
            k: k.row(bi, hi, 0),
            k_rs: k.row_stride(),
            v: v.row(bi, hi, 0),
            v_rs: v.row_stride(),
        };
        let causal_from = (mask == Mask::Causal).then_some(q0);
        tile_attention(&heads, rows, lk, d, dv, kb, scale, causal_from, simd, s);
        for r in 0..rows {
            let inv = 1.0 / s.sum[r];
            let src = &s.acc[r * dv..(r + 1) * dv];
            let at = ((bi * lq + q0 + r) * h + hi) * dv;
            // SAFETY: `at..at + dv` is row (bi, q0 + r, hi) of the
            // `[B, Lq, H, Dv]` output, inside `out` and written by this
            // task only (see `OutPtr`).
            let dst = unsafe { std::slice::from_raw_parts_mut(out_ptr.at(at), dv) };
            for (o, a) in dst.iter_mut().zip(src) {
                *o = a * inv;
            }
        }
    });
    out
}

/// Where one (batch, head)'s rows start and how far apart they are.
struct Heads {
    q: *const f32,
    q_rs: isize,
    k: *const f32,
    k_rs: isize,
    v: *const f32,
    v_rs: isize,
}

/// One query tile of one head: leaves the unnormalised output rows in
/// `s.acc` and their softmax denominators in `s.sum`. `causal_from` is the
/// tile's first query index when the mask is causal.
#[allow(clippy::too_many_arguments)]
fn tile_attention(
    p: &Heads,
    rows: usize,
    lk: usize,
    d: usize,
    dv: usize,
    kb: usize,
    scale: f32,
    causal_from: Option<usize>,
    simd: Simd,
    s: &mut Scratch,
) {
    s.max[..rows].fill(f32::NEG_INFINITY);
    s.sum[..rows].fill(0.0);
    s.acc[..rows * dv].fill(0.0);
    // Under a causal mask no row of this tile sees a key past its last row.
    let k_end = causal_from.map_or(lk, |q0| lk.min(q0 + rows));
    let mut k0 = 0;
    while k0 < k_end {
        let len = kb.min(k_end - k0);
        // SAFETY: the operands lie inside their views (checked in
        // `head_view`: rows `q0..q0 + rows` and keys `k0..k0 + len` exist,
        // each row holds `d` or `dv` contiguous values); `scores` holds
        // `rows × kb` values and `acc` `rows × dv`.
        unsafe {
            // scores[r, j] = scale · q_r · k_(k0+j)
            gemm::gemm(
                rows,
                len,
                d,
                s.scores.as_mut_ptr(),
                1,
                kb as isize,
                false,
                p.q,
                1,
                p.q_rs,
                p.k.offset(k0 as isize * p.k_rs),
                p.k_rs,
                1,
                0.0,
                scale,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for r in 0..rows {
            let row = &mut s.scores[r * kb..r * kb + len];
            let visible = causal_from.map_or(len, |q0| (q0 + r + 1).saturating_sub(k0).min(len));
            if visible == 0 {
                row.fill(0.0);
                continue;
            }
            let old = s.max[r];
            let (new, block_sum) = simd.exp_row(&mut row[..visible], old);
            row[visible..].fill(0.0);
            // exp(−∞) = 0 for a row's first block.
            let rescale = (old - new).exp();
            s.sum[r] = s.sum[r] * rescale + block_sum;
            s.max[r] = new;
            if rescale != 1.0 {
                for a in &mut s.acc[r * dv..(r + 1) * dv] {
                    *a *= rescale;
                }
            }
        }
        // SAFETY: as above.
        unsafe {
            // acc += probabilities · v_(k0..k0+len)
            gemm::gemm(
                rows,
                dv,
                len,
                s.acc.as_mut_ptr(),
                1,
                dv as isize,
                true,
                s.scores.as_ptr(),
                1,
                kb as isize,
                p.v.offset(k0 as isize * p.v_rs),
                1,
                p.v_rs,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        k0 += len;
    }
}

/// The row work, compiled once per instruction set.
impl Simd {
    /// Replaces `row` by `exp(row − m)` where `m = max(old, max(row))`;
    /// returns `m` and the sum of the new values.
    fn exp_row(self, row: &mut [f32], old: f32) -> (f32, f32) {
        match self {
            // SAFETY: `detect` saw the features these functions enable.
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => unsafe { exp_row_avx512(row, old) },
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => unsafe { exp_row_avx2(row, old) },
            Self::Baseline => exp_row::<false>(row, old),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp_row_avx512(row: &mut [f32], old: f32) -> (f32, f32) {
    exp_row::<true>(row, old)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp_row_avx2(row: &mut [f32], old: f32) -> (f32, f32) {
    exp_row::<true>(row, old)
}

/// Lanes of the independent partial maxima and sums: float reductions are
/// only vectorised when written as separate accumulators, and 16 fills one
/// AVX-512 register (two AVX2 ones).
const LANES: usize = 16;

/// `FMA`: whether the caller is compiled with fused multiply-add (then the
/// polynomial's steps are single instructions; see [`exp_nonpositive_with`]).
#[inline(always)]
fn exp_row<const FMA: bool>(row: &mut [f32], old: f32) -> (f32, f32) {
    let mut lane_max = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        let c: &[f32; LANES] = c.try_into().expect("chunks_exact");
        for (m, &x) in lane_max.iter_mut().zip(c) {
            *m = m.max(x);
        }
    }
    let mut m = chunks.remainder().iter().fold(old, |m, &x| m.max(x));
    m = lane_max.iter().fold(m, |m, &x| m.max(x));
    let mut lane_sum = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        let c: &mut [f32; LANES] = c.try_into().expect("chunks_exact");
        for (x, s) in c.iter_mut().zip(&mut lane_sum) {
            *x = exp_nonpositive_with::<FMA>(*x - m);
            *s += *x;
        }
    }
    let mut sum = 0f32;
    for x in chunks.into_remainder() {
        *x = exp_nonpositive_with::<FMA>(*x - m);
        sum += *x;
    }
    (m, sum + lane_sum.iter().sum::<f32>())
}

/// `exp(x)` for `x ≤ 0` (a score minus its row maximum), within 2 ulp,
/// written with plain arithmetic and bit operations so a loop over it
/// vectorises. Below −87 it returns `exp(−87) ≈ 1.6e-38` instead of a
/// smaller or subnormal value: against a row whose maximum contributes 1 the
/// difference is invisible. NaN stays NaN (so does the row's output, as in
/// the unfused path). The method and constants are those of `expf` in
/// S. L. Moshier's Cephes library (`single/expf.c` in
/// <https://www.netlib.org/cephes/single.tgz>):
/// `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2` (ln 2 split in two parts so `r` is
/// exact), a degree-6 polynomial for `exp(r)`, and `2ⁿ` built in the
/// exponent bits. `n` is rounded by adding and subtracting 1.5·2²³, whose
/// sum also holds `n` in its low mantissa bits.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    exp_nonpositive_with::<false>(x)
}

/// [`exp_nonpositive`], with its multiply-adds fused when `FMA` (only for
/// callers compiled with the `fma` feature, where `mul_add` is one
/// instruction; elsewhere it would be a library call). Fusing rounds once
/// instead of twice per step, so the two forms may differ in the last bit
/// or two; both stay within 2 ulp of `exp`.
#[inline(always)]
fn exp_nonpositive_with<const FMA: bool>(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23
    const ROUND_BITS: u32 = 0x4B40_0000;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let madd = |a: f32, b: f32, c: f32| if FMA { a.mul_add(b, c) } else { a * b + c };
    // Not `x.max(-87.0)`, which would turn NaN into −87.
    let x = if x < -87.0 { -87.0 } else { x };
    let t = madd(x, std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    let r = madd(-n, LN2_LO, madd(-n, LN2_HI, x));
    let mut p = 1.987_569_1e-4f32;
    p = madd(p, r, 1.398_199_9e-3);
    p = madd(p, r, 8.333_452e-3);
    p = madd(p, r, 4.166_579_6e-2);
    p = madd(p, r, 1.666_666_5e-1);
    p = madd(p, r, 0.5); // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let e = madd(p, r * r, r) + 1.0;
    // n ∈ [−126, 0], so the biased exponent n + 127 is in [1, 127].
    let pow2 = f32::from_bits(t.to_bits().wrapping_sub(ROUND_BITS).wrapping_add(127) << 23);
    e * pow2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_nonpositive_is_within_two_ulp_of_std() {
        let mut x = 0f32;
        while x > -87.0 {
            let want = x.exp();
            for got in [exp_nonpositive(x), exp_nonpositive_with::<true>(x)] {
                assert!(
                    (got - want).abs() <= 2.5 * f32::EPSILON * want,
                    "exp({x}): {got} vs {want}"
                );
            }
            x -= 0.000_731;
        }
        assert_eq!(exp_nonpositive_with::<true>(0.0), 1.0);
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(f32::NEG_INFINITY) < 1e-37);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    #[test]
    fn every_simd_level_the_cpu_has_gives_the_same_row() {
        let row: Vec<f32> = (0..77)
            .map(|i| ((i * 37) % 19) as f32 * 0.7 - 6.0)
            .collect();
        let mut base = row.clone();
        let want = exp_row::<false>(&mut base, f32::NEG_INFINITY);
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
            let mut got = row.clone();
            let (m, sum) = simd.exp_row(&mut got, f32::NEG_INFINITY);
            assert_eq!(m, want.0, "{simd:?}");
            assert!((sum - want.1).abs() <= 1e-6 * want.1, "{simd:?}");
            // The vector levels fuse multiply-adds: a few ulp apart.
            for (g, w) in got.iter().zip(&base) {
                assert!(
                    (g - w).abs() <= 5.0 * f32::EPSILON * w.abs().max(1e-30),
                    "{simd:?}"
                );
            }
        }
    }
}
