//! The bf16 variant of [`super::conv`]'s convolution: the same tiles, tasks
//! and shifted-tap GEMMs, with the products in bf16 and f32 accumulation
//! ([`super::bf16`]).
//!
//! The weights are packed once, at construction, tap-major as the left-hand
//! side: `[KH, KW, Co', Ci']` bf16, `Co` padded to a multiple of 32 and `Ci`
//! to a multiple of 32 with zeros (half the f32 weights' memory for SD's
//! channel counts). A task fills its f32 input block as the f32 kernel does
//! ([`super::conv::fill_block`]), rounds it to bf16 pairs of channels (the
//! VNNI layout: one row of pairs per two input channels, each row the
//! block's plane of positions plus slack), and runs one product over all
//! `KH·KW` taps, each tap a segment whose `B` is that block at the tap's
//! shift. Its `Co × wide columns` tile goes to a scratch tile, from which
//! the kept columns are copied out with the bias, as in the f32 kernel.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, bail, utils};

use super::bf16::{Bf16Kernel, Gemm, KB, MB, NB, Segment, pair_rows, to_bf16};
use super::conv::{ConvParams, Plan, Task, fill_block};
use super::tasks;
use super::view::{OutPtr, View};

/// A convolution's weights packed for the bf16 kernel (see the module).
#[derive(Debug, Clone)]
pub(crate) struct PackedConv {
    data: Vec<u16>,
    kh: usize,
    kw: usize,
    co: usize,
    ci: usize,
    co_pad: usize,
    ci_pad: usize,
    kernel: Bf16Kernel,
}

impl PackedConv {
    /// From PyTorch's `[Co, Ci, KH, KW]` f32 weights.
    pub(crate) fn new(weight: &Tensor, kernel: Bf16Kernel) -> Result<Self> {
        let (co, ci, kh, kw) = weight.dims4()?;
        let w = weight
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let (co_pad, ci_pad) = (co.next_multiple_of(MB), ci.next_multiple_of(KB));
        let mut data = vec![0u16; kh * kw * co_pad * ci_pad];
        for o in 0..co {
            for i in 0..ci {
                for y in 0..kh {
                    for x in 0..kw {
                        data[((y * kw + x) * co_pad + o) * ci_pad + i] =
                            to_bf16(w[((o * ci + i) * kh + y) * kw + x]);
                    }
                }
            }
        }
        Ok(Self {
            data,
            kh,
            kw,
            co,
            ci,
            co_pad,
            ci_pad,
            kernel,
        })
    }

    /// Output channels.
    pub(crate) fn out_channels(&self) -> usize {
        self.co
    }

    /// The kernel it runs on.
    pub(crate) fn kernel(&self) -> Bf16Kernel {
        self.kernel
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.data.len() * 2
    }
}

/// `x` `[B, Ci, H, W]` (f32, CPU) convolved with `w` plus `bias`.
pub(crate) fn conv2d(
    x: &Tensor,
    w: &PackedConv,
    bias: Option<&[f32]>,
    params: ConvParams,
) -> Result<Tensor> {
    if params.stride == 0 {
        bail!("conv2d: stride 0");
    }
    if bias.is_some_and(|b| b.len() != w.co) {
        bail!("conv2d: bias for {} output channels", w.co);
    }
    x.apply_op1_no_bwd(&ConvBf16Op { w, bias, params })
}

struct ConvBf16Op<'a> {
    w: &'a PackedConv,
    bias: Option<&'a [f32]>,
    params: ConvParams,
}

impl CustomOp1 for ConvBf16Op<'_> {
    fn name(&self) -> &'static str {
        "easel-conv2d-bf16"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = View::new("conv2d", s.as_slice::<f32>()?, l)?;
        forward(&x, self.w, self.bias, self.params)
    }
}

fn forward(
    x: &View,
    w: &PackedConv,
    bias: Option<&[f32]>,
    params: ConvParams,
) -> Result<(CpuStorage, Shape)> {
    let threads = utils::get_num_threads().max(1);
    let p = Plan::new(x, [w.kh, w.kw, w.co, w.ci], params, threads)?;
    // Output-channel slices a whole number of kernel blocks.
    let co_chunk = p.co_chunk.next_multiple_of(MB);
    let chunks = p.co.div_ceil(co_chunk);
    let n_max = (p.rows * p.wq).next_multiple_of(NB);
    // Pairs per row of the bf16 block: the tallest tile's plane, the slack
    // the furthest tap reads past it, and the padding of the last columns.
    let ldb = p.plane(p.rows) + p.ew + NB;
    let mut out = vec![0f32; p.b * p.co * p.ho * p.wo];
    let out_ptr = OutPtr(out.as_mut_ptr());
    let tiles = p.tiles;
    let tasks = p.b * tiles * chunks;
    // Each worker's scratch: the block of input rows, its bf16 pairs (rows
    // past the input channels stay zero: the padding of K), the output
    // tile, the tap segments, and which tile the pairs hold.
    let scratch = || {
        (
            vec![0f32; p.block_len(p.rows)],
            vec![0u32; w.ci_pad / 2 * ldb],
            vec![0f32; co_chunk * n_max],
            Vec::with_capacity(p.kh * p.kw),
            None,
        )
    };
    tasks::share(
        tasks,
        threads,
        scratch,
        |(block, pairs, tile, segments, filled), task| {
            let (bi, rest) = (task / (tiles * chunks), task % (tiles * chunks));
            let (t, chunk) = (rest / chunks, rest % chunks);
            let (y0, y1) = p.tile_rows(t);
            let co0 = chunk * co_chunk;
            let task = Task {
                bi,
                y0,
                rows: y1 - y0,
                co0,
                cn: co_chunk.min(p.co - co0),
            };
            if *filled != Some((bi, t)) {
                fill_block(x, &p, &task, block);
                let plane = p.plane(task.rows);
                for (cp, dst) in pairs
                    .chunks_exact_mut(ldb)
                    .take(p.ci.div_ceil(2))
                    .enumerate()
                {
                    let lo = &block[2 * cp * plane..][..plane];
                    let hi = (2 * cp + 1 < p.ci).then(|| &block[(2 * cp + 1) * plane..][..plane]);
                    pair_rows(lo, hi, &mut dst[..plane]);
                }
                *filled = Some((bi, t));
            }
            run_task(w, bias, &p, &task, pairs, ldb, segments, tile, out_ptr);
        },
    );
    Ok((CpuStorage::F32(out), Shape::from((p.b, p.co, p.ho, p.wo))))
}

#[allow(clippy::too_many_arguments)]
fn run_task(
    w: &PackedConv,
    bias: Option<&[f32]>,
    p: &Plan,
    t: &Task,
    pairs: &[u32],
    ldb: usize,
    segments: &mut Vec<Segment>,
    tile: &mut [f32],
    out: OutPtr,
) {
    let n = t.rows * p.wq;
    let n_pad = n.next_multiple_of(NB);
    let m_pad = t.cn.next_multiple_of(MB);
    let rq = t.rows + p.eh;
    segments.clear();
    for ky in 0..p.kh {
        for kx in 0..p.kw {
            let off = ((ky % p.s) * p.pw + kx % p.s) * rq * p.wq + (ky / p.s) * p.wq + kx / p.s;
            segments.push(Segment {
                a: w.data[((ky * p.kw + kx) * w.co_pad + t.co0) * w.ci_pad..].as_ptr(),
                b: pairs[off..].as_ptr(),
            });
        }
    }
    let g = Gemm {
        m: m_pad,
        n: n_pad,
        k: w.ci_pad,
        lda: w.ci_pad,
        ldb,
        ldc: n_pad,
    };
    // SAFETY: each tap's weights are rows co0..co0 + m_pad (≤ co_pad, as
    // co0 and the slice are multiples of 32) of ci_pad values; its block
    // reads pairs rows 0..ci_pad / 2 at columns off..off + n_pad, and
    // off + n_pad ≤ plane + ew + 32 = ldb (the f32 kernel's slack argument,
    // `Plan::block_len`, plus the padded columns); the tile holds
    // co_chunk ≥ m_pad rows of n_max ≥ n_pad floats and is this worker's.
    unsafe { g.run(w.kernel, segments, tile.as_mut_ptr()) };
    let out_plane = p.ho * p.wo;
    let out_at = (t.bi * p.co + t.co0) * out_plane + t.y0 * p.wo;
    for c in 0..t.cn {
        let b = bias.map_or(0.0, |b| b[t.co0 + c]);
        for r in 0..t.rows {
            // SAFETY: row `y0 + r` of channel `co0 + c` of image `bi`: inside
            // `out` and written by this task only (see `OutPtr`).
            let dst = unsafe {
                std::slice::from_raw_parts_mut(out.at(out_at + c * out_plane + r * p.wo), p.wo)
            };
            let src = &tile[c * n_pad + r * p.wq..][..p.wo];
            for (o, v) in dst.iter_mut().zip(src) {
                *o = v + b;
            }
        }
    }
}
