//! bf16 matrix products with f32 accumulation on the CPU (issue 14, step
//! 7): the instruction-set detection, the packed layouts, and one GEMM that
//! the bf16 [`Linear`](super::linear::Linear) and
//! [`Conv2d`](super::conv::Conv2d) share.
//!
//! Both operands are rounded to bf16 (round to nearest even: 8 significant
//! bits, relative error at most 2⁻⁹ each), multiplied exactly and summed
//! in f32. An output's error is thus at most about
//! `(2⁻⁸ + K·2⁻²⁴)·Σₖ|aₖ·bₖ|`, the bound the golden tests check
//! (`crates/engine/tests/bf16.rs`).
//!
//! # Layouts
//! `C[M×N] = Σ_segments A_s[M×K] · B_s[K×N]` with
//! - `A` row-major bf16, `lda` values per row, `K` padded with zeros to a
//!   multiple of [`KB`] (32, one AMX tile row of bf16);
//! - `B` in the "VNNI" layout both instruction sets read: row `p` holds, for
//!   every column `n`, the pair `(B[2p][n], B[2p+1][n])` as one `u32`, the
//!   lower half the even row; `ldb` pairs from one row to the next;
//! - `C` f32, row-major, `ldc` floats per row, overwritten;
//! - `M` and `N` multiples of [`MB`] / [`NB`] (32): callers pad (weights at
//!   packing, activations into padded scratch) and drop the padding.
//!
//! Several segments summed into one `C` are the taps of a convolution (the
//! same weights matrix shape, `B` at a shifted offset; see
//! [`super::conv`]); a linear layer has one.
//!
//! # Instruction sets
//! - [`Bf16Kernel::Amx`]: AMX tiles (`tdpbf16ps`, 16×16 outputs of 32-deep
//!   dot products per instruction), through inline assembly since Rust's
//!   AMX intrinsics are unstable; see [`super::amx`].
//! - [`Bf16Kernel::Avx512`]: `vdpbf16ps` (AVX512-BF16), an 8×32 register
//!   tile.
//!
//! Neither is compiled in unless detected at run time ([`Bf16Kernel::detect`]);
//! on a CPU with neither, the layers compute in f32 (see
//! [`crate::model::Precision`]).

use std::cell::Cell;
use std::sync::OnceLock;

/// Rows of `A` and `C` a kernel call covers at a time: `M` is a multiple.
pub(crate) const MB: usize = 32;
/// Columns of `B` and `C` a kernel call covers at a time: `N` is a multiple.
pub(crate) const NB: usize = 32;
/// Depth (bf16 values of `K`) of one step: `K` is a multiple.
pub(crate) const KB: usize = 32;

/// The bf16 instructions the kernels run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// AMX-BF16 tiles (Intel Sapphire Rapids and later).
    Amx,
    /// AVX512-BF16 `vdpbf16ps` (Intel Cooper Lake, Sapphire Rapids; AMD
    /// Zen 4 and later).
    Avx512,
}

impl Bf16Kernel {
    /// The fastest kernel this CPU (and OS) runs, or `None`: AMX when the
    /// CPU has AMX-BF16 and the kernel grants this process the tile state,
    /// else AVX512-BF16. Detected once per process.
    pub fn detect() -> Option<Self> {
        static DETECTED: OnceLock<Option<Bf16Kernel>> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            if Self::Amx.supported() {
                Some(Self::Amx)
            } else if Self::Avx512.supported() {
                Some(Self::Avx512)
            } else {
                None
            }
        })
    }

    /// Whether this CPU runs this kernel (so tests can run each one that
    /// is there, and skip the rest).
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512bf16");
            match self {
                // The packing loops are compiled for AVX-512 too.
                Bf16Kernel::Amx => avx512 && super::amx::available(),
                Bf16Kernel::Avx512 => avx512,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }
}

/// How the layers built now compute their products: f32, or bf16 on one
/// kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compute {
    /// f32 throughout (default).
    #[default]
    F32,
    /// bf16 products with f32 accumulation on this kernel.
    Bf16(Bf16Kernel),
}

thread_local! {
    static BUILD: Cell<Compute> = const { Cell::new(Compute::F32) };
}

/// Runs `build` with the layers it constructs ([`super::conv::Conv2d`],
/// [`super::linear::Linear`]) computing as `compute` says, then restores
/// the previous setting. The model loader wraps the UNet's and the VAE's
/// construction in this, so the precision reaches every layer without a
/// parameter threaded through each block's constructor.
pub(crate) fn building_with<T>(compute: Compute, build: impl FnOnce() -> T) -> T {
    struct Restore(Compute);
    impl Drop for Restore {
        fn drop(&mut self) {
            BUILD.with(|b| b.set(self.0));
        }
    }
    let _restore = Restore(BUILD.with(|b| b.replace(compute)));
    build()
}

/// What layers built on this thread now compute in ([`building_with`]).
pub(crate) fn build_compute() -> Compute {
    BUILD.with(Cell::get)
}

/// `v` rounded to bf16 (to nearest, ties to even), in the upper 16 bits of
/// an f32's bits; NaN stays NaN.
#[inline(always)]
fn round_bits(v: f32) -> u32 {
    let b = v.to_bits();
    if v.is_nan() {
        return b | 0x0040_0000;
    }
    b.wrapping_add(0x7FFF + ((b >> 16) & 1))
}

/// `v` as bf16 (round to nearest even).
#[inline(always)]
pub(crate) fn to_bf16(v: f32) -> u16 {
    (round_bits(v) >> 16) as u16
}

/// `(lo, hi)` as one VNNI pair: `lo` in the lower half.
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    (round_bits(lo) >> 16) | (round_bits(hi) & 0xFFFF_0000)
}

/// `src` rounded into `dst` (same length). Compiled for AVX-512 where the
/// CPU has it (every CPU that runs a bf16 kernel does), so it vectorises.
pub(crate) fn round_row(src: &[f32], dst: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512 F is present (checked just above).
        unsafe { round_row_avx512(src, dst) };
        return;
    }
    round_row_portable(src, dst);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn round_row_avx512(src: &[f32], dst: &mut [u16]) {
    round_row_portable(src, dst);
}

#[inline(always)]
fn round_row_portable(src: &[f32], dst: &mut [u16]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = to_bf16(*s);
    }
}

/// Rows `lo` and `hi` (same length) interleaved into VNNI pairs in `dst`;
/// `hi` `None` is a row of zeros (the padding of an odd `K`).
pub(crate) fn pair_rows(lo: &[f32], hi: Option<&[f32]>, dst: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512 F is present (checked just above).
        unsafe { pair_rows_avx512(lo, hi, dst) };
        return;
    }
    pair_rows_portable(lo, hi, dst);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn pair_rows_avx512(lo: &[f32], hi: Option<&[f32]>, dst: &mut [u32]) {
    pair_rows_portable(lo, hi, dst);
}

#[inline(always)]
fn pair_rows_portable(lo: &[f32], hi: Option<&[f32]>, dst: &mut [u32]) {
    match hi {
        Some(hi) => {
            for ((d, l), h) in dst.iter_mut().zip(lo).zip(hi) {
                *d = pair(*l, *h);
            }
        }
        None => {
            for (d, l) in dst.iter_mut().zip(lo) {
                *d = pair(*l, 0.0);
            }
        }
    }
}

/// A weight matrix as the right-hand side `B` (`K × N`, VNNI pairs), padded
/// to `K` a multiple of [`KB`] and `N` of [`NB`] with zeros: a linear
/// layer's `Wᵀ`, packed once at load.
#[derive(Debug, Clone)]
pub(crate) struct PackedB {
    /// `k_pad / 2` rows of `n_pad` pairs.
    pub(crate) data: Vec<u32>,
    /// The unpadded `K` and `N`.
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) k_pad: usize,
    pub(crate) n_pad: usize,
}

impl PackedB {
    /// `Wᵀ` of a row-major `w` `[N, K]` (PyTorch's `nn.Linear` layout:
    /// `W[n][2p]` and `W[n][2p+1]` are neighbours, so each pair is one read).
    pub(crate) fn from_transposed(w: &[f32], n: usize, k: usize) -> Self {
        let (k_pad, n_pad) = (k.next_multiple_of(KB), n.next_multiple_of(NB));
        let mut data = vec![0u32; k_pad / 2 * n_pad];
        for (j, row) in w.chunks_exact(k).enumerate().take(n) {
            for (p, two) in row.chunks(2).enumerate() {
                data[p * n_pad + j] = pair(two[0], two.get(1).copied().unwrap_or(0.0));
            }
        }
        Self {
            data,
            k,
            n,
            k_pad,
            n_pad,
        }
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.data.len() * 4
    }
}

/// One term of `C = Σ A_s · B_s`: where its `A` and `B` start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    pub(crate) a: *const u16,
    pub(crate) b: *const u32,
}

/// The shape of one product (see the module's layouts).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gemm {
    /// Rows, a multiple of [`MB`].
    pub(crate) m: usize,
    /// Columns, a multiple of [`NB`].
    pub(crate) n: usize,
    /// Depth in bf16 values, a multiple of [`KB`].
    pub(crate) k: usize,
    /// `A` row stride in bf16 values (≥ `k`).
    pub(crate) lda: usize,
    /// `B` row stride in pairs (≥ `n`).
    pub(crate) ldb: usize,
    /// `C` row stride in floats (≥ `n`).
    pub(crate) ldc: usize,
}

impl Gemm {
    /// `C = Σ_s A_s · B_s` on `kernel`, single-threaded (callers split the
    /// work into tasks).
    ///
    /// # Safety
    /// For every segment, `a` must be valid for reads of `m` rows of `k`
    /// values `lda` apart and `b` of `k / 2` rows of `n` pairs `ldb` apart;
    /// `c` valid for writes of `m` rows of `n` floats `ldc` apart, not
    /// written by anyone else meanwhile; `kernel` supported by this CPU;
    /// the shape as its fields say.
    pub(crate) unsafe fn run(&self, kernel: Bf16Kernel, segments: &[Segment], c: *mut f32) {
        debug_assert!(
            self.m.is_multiple_of(MB) && self.n.is_multiple_of(NB) && self.k.is_multiple_of(KB)
        );
        debug_assert!(self.lda >= self.k && self.ldb >= self.n && self.ldc >= self.n);
        match kernel {
            // SAFETY: as this function's contract.
            Bf16Kernel::Amx => unsafe { super::amx::gemm(self, segments, c) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as this function's contract; AVX512-BF16 is present.
            Bf16Kernel::Avx512 => unsafe { avx512::gemm(self, segments, c) },
            #[cfg(not(target_arch = "x86_64"))]
            Bf16Kernel::Avx512 => unreachable!("no bf16 kernels off x86-64"),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Gemm, Segment};

    /// Rows of the register tile (each broadcasts one pair of `A`).
    const MR: usize = 8;

    /// The product on `vdpbf16ps`: for each 32-column panel of `B`, for
    /// each 8 rows of `A`, an 8×32 tile of f32 accumulators (16 registers)
    /// over every segment and depth; per pair of depth, two 16-pair loads
    /// of `B`, eight broadcasts of `A` and sixteen `vdpbf16ps`.
    ///
    /// # Safety
    /// As [`Gemm::run`], on a CPU with AVX512-BF16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn gemm(g: &Gemm, segments: &[Segment], c: *mut f32) {
        let pairs = g.k / 2;
        for n0 in (0..g.n).step_by(32) {
            for m0 in (0..g.m).step_by(MR) {
                let mut acc = [[_mm512_setzero_ps(); 2]; MR];
                for s in segments {
                    // SAFETY (all reads below): rows m0..m0 + MR of A, pairs
                    // 0..k/2 of B at columns n0..n0 + 32: inside the extents
                    // the caller guarantees.
                    let a = unsafe { s.a.add(m0 * g.lda) } as *const u32;
                    let b = unsafe { s.b.add(n0) };
                    for p in 0..pairs {
                        let bp = unsafe { b.add(p * g.ldb) };
                        let b0: __m512bh =
                            unsafe { std::mem::transmute(_mm512_loadu_si512(bp.cast())) };
                        let b1: __m512bh =
                            unsafe { std::mem::transmute(_mm512_loadu_si512(bp.add(16).cast())) };
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let av = unsafe { a.add(r * g.lda / 2 + p).read_unaligned() };
                            let av: __m512bh =
                                unsafe { std::mem::transmute(_mm512_set1_epi32(av as i32)) };
                            acc[0] = _mm512_dpbf16_ps(acc[0], av, b0);
                            acc[1] = _mm512_dpbf16_ps(acc[1], av, b1);
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    // SAFETY: row m0 + r, columns n0..n0 + 32 of C.
                    let row = unsafe { c.add((m0 + r) * g.ldc + n0) };
                    unsafe {
                        _mm512_storeu_ps(row, acc[0]);
                        _mm512_storeu_ps(row.add(16), acc[1]);
                    }
                }
            }
        }
    }
}
