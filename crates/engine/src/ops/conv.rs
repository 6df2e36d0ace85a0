//! 2-D convolution on the CPU without im2col: shifted GEMMs over a small
//! zero-padded block of input rows.
//!
//! candle's CPU `conv2d` copies its input into a full im2col matrix
//! (`Ci·KH·KW × Ho·Wo`, nine times the input for a 3×3 kernel) and
//! multiplies the weights into it; at SD 1.5's shapes the copy and its
//! layout, not the arithmetic, make it 4× slower than PyTorch (issue 14).
//! Here the output is computed tile by tile, and a 3×3 convolution is nine
//! GEMMs of `Co × Ci` weights into one shared input block:
//!
//! - A task takes one image, `R` output rows and (for small images with
//!   many channels) a slice of the output channels. It copies the input
//!   rows those output rows read, `Ci × (R + 2) × (Wo + 2)` for a 3×3
//!   kernel at stride 1, into a block with the zero padding written out.
//! - Output row `y`, column `x` is `Σ_tap W_tap · block[:, y + ky, x + kx]`.
//!   In the block, tap `(ky, kx)` is the same matrix shifted by
//!   `ky·Wq + kx` floats (`Wq` the block's row width), so each tap is one
//!   GEMM whose right-hand side is the block at an offset, with unit column
//!   stride, over `R·Wq` "wide" columns. The `Wq − Wo` columns at the end
//!   of each wide row wrap into the next row's values; they are computed and
//!   dropped when the tile is copied to the output, with the bias added.
//!   The im2col matrix is never built (an "implicit GEMM", as cuDNN's
//!   `CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM` and Chetlur et al.,
//!   <https://arxiv.org/abs/1410.0759>, describe it), here in the form of
//!   one GEMM per kernel tap accumulated into shifted outputs (Vasudevan,
//!   Anderson and Gregg, Parallel Multi Channel Convolution using General
//!   Matrix Multiplication, <https://arxiv.org/abs/1704.04428>, "kn2row"),
//!   with the shift moved onto the input block so every tap writes the
//!   same output tile.
//! - Stride 2 is the same after splitting the block into its `2 × 2`
//!   phases (even/odd rows × even/odd columns, a space-to-depth copy of the
//!   same size): tap `(ky, kx)` reads phase `(ky mod 2, kx mod 2)` shifted by
//!   `(ky div 2, kx div 2)`, again one GEMM at an offset.
//! - A 1×1 convolution at stride 1 without padding is one GEMM straight on
//!   the input (`out[co, p] = W[co, :] · x[:, p]`), when its positions
//!   share one stride (NCHW, or the NHWC view the UNet's `proj_out` hands
//!   it); no copy at all.
//!
//! The input copy is thus about `(R + 2) / R` of the input per output
//! channel slice instead of nine times it, and stays in cache while the nine
//! GEMMs read it. Weights are taken tap-major, `[KH, KW, Co, Ci]`, so each
//! tap's matrix is contiguous; [`Conv2d`] stores them so at load
//! ([`pack_weight`]), and [`conv2d`] repacks per call.
//!
//! The GEMMs are the `gemm` crate's (candle's matmul kernels, AVX-512 where
//! the CPU has it), single-threaded inside a task; tasks are shared by as
//! many rayon workers as candle gives its matmuls
//! ([`candle_core::utils::get_num_threads`]).
//!
//! Other devices and dtypes take [`conv2d_unfused`], candle's own
//! `conv2d`, which is also the reference of the golden tests
//! (`crates/engine/tests/conv.rs`). Grouped and dilated convolutions are
//! not offered (no model the engine loads has one); candle's `conv2d`
//! remains for those.

use std::sync::Arc;

use candle_core::{
    CpuStorage, CustomOp2, CustomOp3, DType, Device, Layout, Module, Result, Shape, Tensor, bail,
    utils,
};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::bf16::{Compute, build_compute};
use super::conv_bf16::{self, PackedConv};
use super::tasks;
use super::view::{OutPtr, View};

/// Zero padding on each side of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Padding {
    /// Rows above.
    pub top: usize,
    /// Rows below.
    pub bottom: usize,
    /// Columns on the left.
    pub left: usize,
    /// Columns on the right.
    pub right: usize,
}

impl Padding {
    /// `p` on every side (candle's and PyTorch's `padding = p`).
    pub fn uniform(p: usize) -> Self {
        Self {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }

    /// One extra row below and column on the right, nothing else: what
    /// diffusers' `Downsample2D` does before a stride-2 convolution with
    /// `padding = 0`.
    pub fn bottom_right(p: usize) -> Self {
        Self {
            top: 0,
            bottom: p,
            left: 0,
            right: p,
        }
    }
}

/// How a convolution walks its input. Dilation is 1 and groups 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvParams {
    /// Step between output positions, in both directions (default 1).
    pub stride: usize,
    /// Zero padding (default none).
    pub padding: Padding,
}

impl Default for ConvParams {
    fn default() -> Self {
        Self {
            stride: 1,
            padding: Padding::default(),
        }
    }
}

impl ConvParams {
    /// Stride 1 with `p` on every side: a 3×3 convolution with `p = 1`
    /// keeps the size.
    pub fn same(p: usize) -> Self {
        Self {
            stride: 1,
            padding: Padding::uniform(p),
        }
    }
}

/// `[Co, Ci, KH, KW]` (PyTorch's layout) to the kernel's tap-major
/// `[KH, KW, Co, Ci]`, contiguous.
///
/// On the CPU in f32 this is one pass reading the weights in order and
/// writing one stream per tap, in slices of rows on rayon's workers: candle's strided copy of the permuted view
/// (element by element through its index arithmetic) was about half of
/// SD 1.5's load time. Elsewhere the permuted view is made contiguous.
pub fn pack_weight(weight: &Tensor) -> Result<Tensor> {
    let &[co, ci, kh, kw] = weight.dims() else {
        bail!("conv2d: weights {:?} are not 4-D", weight.dims());
    };
    if !(matches!(weight.device(), Device::Cpu) && weight.dtype() == DType::F32) {
        return weight.permute((2, 3, 0, 1))?.contiguous();
    }
    let taps = kh * kw;
    if taps == 1 {
        return weight.reshape((1, 1, co, ci));
    }
    let weight = weight.contiguous()?;
    let (storage, layout) = weight.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        bail!("conv2d: CPU weights expected");
    };
    let start = layout.start_offset();
    let src = &cpu.as_slice::<f32>()?[start..start + co * ci * taps];
    let mut out = crate::alloc::zeroed_f32(src.len());
    let plane = co * ci;
    let dst = OutPtr(out.as_mut_ptr());
    // Rows (o·Ci + i) in slices on rayon's workers; each slice reads its
    // rows in order and writes one stream per tap.
    const ROWS: usize = 1 << 14;
    (0..plane.div_ceil(ROWS)).into_par_iter().for_each(|chunk| {
        let rows = chunk * ROWS..((chunk + 1) * ROWS).min(plane);
        for row in rows {
            for (t, &v) in src[row * taps..][..taps].iter().enumerate() {
                // SAFETY: t·plane + row < taps·plane = out.len(); each row
                // is in exactly one slice, so no two workers write the same
                // element, and `out` outlives the loop.
                unsafe { *dst.at(t * plane + row) = v };
            }
        }
    });
    Tensor::from_vec(out, (kh, kw, co, ci), weight.device())
}

/// Convolution of `x` `[B, Ci, H, W]` with `weight` `[Co, Ci, KH, KW]` plus
/// `bias` `[Co]`, giving `[B, Co, Ho, Wo]`. On the CPU in f32 this is the
/// kernel of this module (the weights are repacked on every call: layers
/// keep them packed, see [`Conv2d`]); elsewhere [`conv2d_unfused`].
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: ConvParams,
) -> Result<Tensor> {
    if fast_path(x, weight) {
        conv2d_packed(x, &pack_weight(weight)?, bias, params)
    } else {
        conv2d_unfused(x, weight, bias, params)
    }
}

/// As [`conv2d`] with the weights already tap-major, `[KH, KW, Co, Ci]`
/// (any strides; contiguous is fastest). Falls back to
/// [`conv2d_unfused`] off the CPU or in other dtypes.
pub fn conv2d_packed(
    x: &Tensor,
    packed: &Tensor,
    bias: Option<&Tensor>,
    params: ConvParams,
) -> Result<Tensor> {
    if !fast_path(x, packed) {
        return conv2d_unfused(x, &packed.permute((2, 3, 0, 1))?, bias, params);
    }
    let (_, ci, _, _) = x.dims4()?;
    let (_, _, co, wci) = packed.dims4()?;
    if ci != wci {
        bail!(
            "conv2d: input has {ci} channels, weights {:?} expect {wci}",
            packed.dims()
        );
    }
    if params.stride == 0 {
        bail!("conv2d: stride 0");
    }
    let op = ConvOp { params };
    match bias {
        None => x.apply_op2_no_bwd(packed, &op),
        Some(b) => {
            if b.dims() != [co] || b.dtype() != DType::F32 {
                bail!("conv2d: bias {:?} for {co} output channels", b.dims());
            }
            x.apply_op3_no_bwd(packed, &b.contiguous()?, &op)
        }
    }
}

/// candle's own convolution (im2col + matmul on the CPU), with asymmetric
/// padding done by padding the input first and the bias added after. The
/// fallback of [`conv2d`] and its reference in tests.
pub fn conv2d_unfused(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: ConvParams,
) -> Result<Tensor> {
    let p = params.padding;
    let out = if p == Padding::uniform(p.top) {
        x.conv2d(weight, p.top, params.stride, 1, 1)?
    } else {
        let x = x
            .pad_with_zeros(2, p.top, p.bottom)?
            .pad_with_zeros(3, p.left, p.right)?;
        x.conv2d(weight, 0, params.stride, 1, 1)?
    };
    match bias {
        Some(b) => out.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?),
        None => Ok(out),
    }
}

fn fast_path(x: &Tensor, w: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu)
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && x.elem_count() > 0
        && w.elem_count() > 0
}

/// A convolution layer with the weight names of PyTorch's `nn.Conv2d`
/// (`weight` `[Co, Ci, KH, KW]`, `bias` `[Co]`), the engine's replacement
/// for `candle_nn::Conv2d`. On the CPU in f32 it keeps the weights
/// tap-major ([`pack_weight`], the same memory) and runs this module's
/// kernel; in bf16 ([`Compute::Bf16`]) it keeps them packed for the bf16
/// variant of that kernel ([`super::conv_bf16`], half the memory);
/// elsewhere it keeps them as loaded and runs candle's.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weights: Weights,
    bias: Option<Tensor>,
    params: ConvParams,
}

#[derive(Debug, Clone)]
enum Weights {
    /// Tap-major f32 (`[KH, KW, Co, Ci]`), for this module's kernel.
    TapMajor(Tensor),
    /// As loaded, for candle's `conv2d` (other devices and dtypes).
    Torch(Tensor),
    /// Packed bf16, with the bias as plain floats.
    Bf16 {
        packed: Arc<PackedConv>,
        bias: Option<Arc<Vec<f32>>>,
    },
}

impl Conv2d {
    /// Loads `weight` and `bias` of a `kernel × kernel` convolution from
    /// `vb`, computing as the layers being built do
    /// ([`super::bf16::building_with`]; f32 by default).
    pub fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        kernel: usize,
        params: ConvParams,
    ) -> Result<Self> {
        let weight = vb.get((cout, cin, kernel, kernel), "weight")?;
        let bias = vb.get(cout, "bias")?;
        Self::with_compute(weight, Some(bias), params, build_compute())
    }

    /// From a `[Co, Ci, KH, KW]` weight and an optional `[Co]` bias, in f32.
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>, params: ConvParams) -> Result<Self> {
        Self::with_compute(weight, bias, params, Compute::F32)
    }

    /// As [`Conv2d::from_tensors`], computing as `compute` says: bf16
    /// applies to f32 weights on the CPU; anything else computes in the
    /// weights' dtype.
    pub fn with_compute(
        weight: Tensor,
        bias: Option<Tensor>,
        params: ConvParams,
        compute: Compute,
    ) -> Result<Self> {
        weight.dims4()?;
        let cpu_f32 = matches!(weight.device(), Device::Cpu) && weight.dtype() == DType::F32;
        let weights = match compute {
            Compute::Bf16(kernel) if cpu_f32 => {
                let packed = PackedConv::new(&weight, kernel)?;
                let bias = match &bias {
                    Some(b) => {
                        if b.dims() != [packed.out_channels()] {
                            bail!(
                                "conv2d: bias {:?} for {} output channels",
                                b.dims(),
                                packed.out_channels()
                            );
                        }
                        Some(Arc::new(b.to_dtype(DType::F32)?.to_vec1::<f32>()?))
                    }
                    None => None,
                };
                Weights::Bf16 {
                    packed: Arc::new(packed),
                    bias,
                }
            }
            _ if cpu_f32 => Weights::TapMajor(pack_weight(&weight)?),
            _ => Weights::Torch(weight),
        };
        Ok(Self {
            weights,
            bias,
            params,
        })
    }

    /// How this layer computes.
    pub fn compute(&self) -> Compute {
        match &self.weights {
            Weights::Bf16 { packed, .. } => Compute::Bf16(packed.kernel()),
            _ => Compute::F32,
        }
    }

    /// Bytes of weights held (the bias not included).
    pub fn weight_bytes(&self) -> usize {
        match &self.weights {
            Weights::TapMajor(w) | Weights::Torch(w) => w.elem_count() * w.dtype().size_in_bytes(),
            Weights::Bf16 { packed, .. } => packed.bytes(),
        }
    }
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match &self.weights {
            Weights::TapMajor(w) => conv2d_packed(xs, w, self.bias.as_ref(), self.params),
            Weights::Torch(w) => conv2d(xs, w, self.bias.as_ref(), self.params),
            Weights::Bf16 { packed, bias } => {
                if !fast_path(xs, xs) {
                    bail!(
                        "conv2d: a bf16 layer takes f32 input on the CPU, got {:?} on {:?}",
                        xs.dtype(),
                        xs.device()
                    );
                }
                conv_bf16::conv2d(xs, packed, bias.as_deref().map(Vec::as_slice), self.params)
            }
        }
    }
}

struct ConvOp {
    params: ConvParams,
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        "easel-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = View::new("conv2d", s1.as_slice::<f32>()?, l1)?;
        let w = View::new("conv2d", s2.as_slice::<f32>()?, l2)?;
        forward(&x, &w, None, self.params)
    }
}

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "easel-conv2d-bias"
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
        let x = View::new("conv2d", s1.as_slice::<f32>()?, l1)?;
        let w = View::new("conv2d", s2.as_slice::<f32>()?, l2)?;
        let bias = s3.as_slice::<f32>()?;
        let Some(bias) = bias.get(l3.start_offset()..l3.start_offset() + w.dims[2]) else {
            bail!("conv2d: bias outside its storage");
        };
        forward(&x, &w, Some(bias), self.params)
    }
}

/// The shape of one convolution and how its tasks split it (shared with
/// the bf16 variant, [`super::conv_bf16`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub(super) b: usize,
    pub(super) ci: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) co: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) s: usize,
    pub(super) pad: Padding,
    pub(super) ho: usize,
    pub(super) wo: usize,
    /// Row phases (`min(s, KH)`) and column phases (`min(s, KW)`).
    pub(super) ph: usize,
    pub(super) pw: usize,
    /// Extra block rows/columns beyond the output's: `(KH − 1) / s`,
    /// `(KW − 1) / s`.
    pub(super) eh: usize,
    pub(super) ew: usize,
    /// Block row width, `Wo + ew`.
    pub(super) wq: usize,
    /// Row tiles per image.
    pub(super) tiles: usize,
    /// Output rows of the tallest tile (`R`).
    pub(super) rows: usize,
    /// Output channels per task.
    pub(super) co_chunk: usize,
    /// 1×1 at stride 1 without padding, positions on one stride: GEMMs
    /// straight on the input.
    pub(super) direct: bool,
}

/// Wide columns a task aims for: enough that packing the weights (inside
/// gemm, once per tap and task) is paid back many times over, few enough
/// that the block and the output tile stay near L2 at 320 channels.
const TARGET_COLS: usize = 384;

/// Fewest wide columns a task is shrunk to when there are too few tasks for
/// the threads; below this, output channels are split instead.
const MIN_COLS: usize = 96;

/// Fewest output channels a task takes when they are split.
const MIN_CO: usize = 32;

impl Plan {
    /// The plan for input `x` and tap-major weight dimensions
    /// `[KH, KW, Co, Ci]`.
    pub(super) fn new(
        x: &View,
        [kh, kw, co, wci]: [usize; 4],
        p: ConvParams,
        threads: usize,
    ) -> Result<Self> {
        let [b, ci, h, wd] = x.dims;
        if wci != ci {
            bail!("conv2d: input has {ci} channels, weights expect {wci}");
        }
        let s = p.stride;
        let pad = p.padding;
        let (hp, wp) = (h + pad.top + pad.bottom, wd + pad.left + pad.right);
        if hp < kh || wp < kw {
            bail!("conv2d: kernel {kh}×{kw} larger than the padded input {hp}×{wp}");
        }
        let (ho, wo) = ((hp - kh) / s + 1, (wp - kw) / s + 1);
        let (eh, ew) = ((kh - 1) / s, (kw - 1) / s);
        let wq = wo + ew;
        let direct = kh == 1
            && kw == 1
            && s == 1
            && pad == Padding::default()
            && x.strides[2] == wd * x.strides[3];
        // Row tiles per image: about TARGET_COLS wide columns each; more
        // (down to MIN_COLS) while there are fewer than two per thread; then
        // a whole number of rounds for the threads, as far as rows allow.
        // Tiles are spread evenly (their heights differ by at most one), so
        // no short last tile leaves a thread idle.
        let mut tiles = (ho * wq).div_ceil(TARGET_COLS).clamp(1, ho);
        while b * tiles < 2 * threads && 2 * tiles <= ho && (ho / (2 * tiles)) * wq >= MIN_COLS {
            tiles *= 2;
        }
        let rounded = (b * tiles).next_multiple_of(threads).div_ceil(b);
        if rounded <= ho && (ho / rounded) * wq >= MIN_COLS {
            tiles = rounded;
        }
        let pos_tasks = b * tiles;
        let co_chunks = if pos_tasks >= threads {
            1
        } else {
            (2 * threads)
                .div_ceil(pos_tasks)
                .min(co.div_ceil(MIN_CO))
                .max(1)
        };
        Ok(Self {
            b,
            ci,
            h,
            w: wd,
            co,
            kh,
            kw,
            s,
            pad,
            ho,
            wo,
            ph: s.min(kh),
            pw: s.min(kw),
            eh,
            ew,
            wq,
            tiles,
            rows: ho.div_ceil(tiles),
            co_chunk: co.div_ceil(co_chunks),
            direct,
        })
    }

    /// Output rows `y0..y1` of tile `t`.
    pub(super) fn tile_rows(&self, t: usize) -> (usize, usize) {
        (t * self.ho / self.tiles, (t + 1) * self.ho / self.tiles)
    }

    fn co_chunks(&self) -> usize {
        self.co.div_ceil(self.co_chunk)
    }

    /// Floats of a block of `rows` output rows (one image, all input
    /// channels), with the slack the last taps' wide columns read past it.
    pub(super) fn block_len(&self, rows: usize) -> usize {
        self.ci * self.plane(rows) + self.ew
    }

    /// Floats of one input channel in a block of `rows` output rows.
    pub(super) fn plane(&self, rows: usize) -> usize {
        self.ph * self.pw * (rows + self.eh) * self.wq
    }

    /// Whether the GEMMs write a scratch tile with dropped columns.
    fn wide(&self) -> bool {
        self.wq != self.wo
    }
}

fn forward(
    x: &View,
    w: &View,
    bias: Option<&[f32]>,
    params: ConvParams,
) -> Result<(CpuStorage, Shape)> {
    let threads = utils::get_num_threads().max(1);
    let p = Plan::new(x, w.dims, params, threads)?;
    let mut out = vec![0f32; p.b * p.co * p.ho * p.wo];
    let out_ptr = OutPtr(out.as_mut_ptr());
    let (tiles, chunks) = (p.tiles, p.co_chunks());
    let tasks = p.b * tiles * chunks;
    // Each worker's scratch: the block of input rows, the wide output
    // tile, and which tile the block holds.
    let scratch = || {
        let block = if p.direct {
            Vec::new()
        } else {
            vec![0f32; p.block_len(p.rows)]
        };
        let wide = if p.wide() {
            vec![0f32; p.co_chunk * p.rows * p.wq]
        } else {
            Vec::new()
        };
        (block, wide, None)
    };
    tasks::share(tasks, threads, scratch, |(block, wide, filled), task| {
        let (bi, rest) = (task / (tiles * chunks), task % (tiles * chunks));
        let (tile, chunk) = (rest / chunks, rest % chunks);
        let (y0, y1) = p.tile_rows(tile);
        let rows = y1 - y0;
        let co0 = chunk * p.co_chunk;
        let cn = p.co_chunk.min(p.co - co0);
        let task = Task {
            bi,
            y0,
            rows,
            co0,
            cn,
        };
        // Slices of one tile's output channels read the same block: a
        // worker that takes the next slice of its last tile keeps it.
        if !p.direct && *filled != Some((bi, tile)) {
            fill_block(x, &p, &task, block);
            *filled = Some((bi, tile));
        }
        run_task(x, w, bias, &p, &task, block, wide, out_ptr);
    });
    Ok((CpuStorage::F32(out), Shape::from((p.b, p.co, p.ho, p.wo))))
}

/// One task's tile: image `bi`, output rows `y0..y0 + rows`, output
/// channels `co0..co0 + cn`.
pub(super) struct Task {
    pub(super) bi: usize,
    pub(super) y0: usize,
    pub(super) rows: usize,
    pub(super) co0: usize,
    pub(super) cn: usize,
}

/// Copies the input rows of a tile into `block`, zero padding written out,
/// split into phases: channel `c`, phase `(py, px)`, block row `r`, column
/// `q` holds input `(s·(y0 + r) + py − top, s·q + px − left)`.
pub(super) fn fill_block(x: &View, p: &Plan, t: &Task, block: &mut [f32]) {
    let rq = t.rows + p.eh;
    let plane = p.plane(t.rows);
    let (s, wq) = (p.s, p.wq);
    let xs3 = x.strides[3];
    for c in 0..p.ci {
        for py in 0..p.ph {
            for px in 0..p.pw {
                let phase = &mut block[c * plane + (py * p.pw + px) * rq * wq..][..rq * wq];
                // Columns q whose input column s·q + px − left lies in 0..w.
                let lo = p.pad.left.saturating_sub(px).div_ceil(s).min(wq);
                let hi = (p.w + p.pad.left)
                    .saturating_sub(px)
                    .div_ceil(s)
                    .clamp(lo, wq);
                for (r, dst) in phase.chunks_exact_mut(wq).enumerate() {
                    let iy = (s * (t.y0 + r) + py) as isize - p.pad.top as isize;
                    if iy < 0 || iy >= p.h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    if lo == hi {
                        continue;
                    }
                    let ix0 = s * lo + px - p.pad.left;
                    let base = x.at([t.bi, c, iy as usize, ix0]);
                    let dst = &mut dst[lo..hi];
                    if s == 1 && xs3 == 1 {
                        dst.copy_from_slice(&x.data[base..base + dst.len()]);
                    } else {
                        let step = s * xs3;
                        for (i, d) in dst.iter_mut().enumerate() {
                            *d = x.data[base + i * step];
                        }
                    }
                }
            }
        }
    }
    // The slack past the last channel is read only into dropped columns;
    // keep it defined.
    let used = p.ci * plane;
    block[used..used + p.ew].fill(0.0);
}

#[allow(clippy::too_many_arguments)]
fn run_task(
    x: &View,
    w: &View,
    bias: Option<&[f32]>,
    p: &Plan,
    t: &Task,
    block: &[f32],
    wide: &mut [f32],
    out: OutPtr,
) {
    let out_plane = p.ho * p.wo;
    // First output float of the tile (channel co0, row y0).
    let out_at = (t.bi * p.co + t.co0) * out_plane + t.y0 * p.wo;
    let n = t.rows * p.wq;
    let (dst, dst_rs) = if p.wide() {
        (wide.as_mut_ptr(), n as isize)
    } else {
        (out.at(out_at), out_plane as isize)
    };
    let rq = t.rows + p.eh;
    let plane = p.plane(t.rows);
    for ky in 0..p.kh {
        for kx in 0..p.kw {
            let lhs = w.data[w.at([ky, kx, t.co0, 0])..].as_ptr();
            let (rhs, rhs_rs, rhs_cs) = if p.direct {
                let at = x.at([t.bi, 0, t.y0, 0]);
                (
                    x.data[at..].as_ptr(),
                    x.strides[1] as isize,
                    x.strides[3] as isize,
                )
            } else {
                let off = ((ky % p.s) * p.pw + kx % p.s) * rq * p.wq + (ky / p.s) * p.wq + kx / p.s;
                (block[off..].as_ptr(), plane as isize, 1)
            };
            let first = ky == 0 && kx == 0;
            // SAFETY: the weight rows co0..co0 + cn of tap (ky, kx) and the
            // input lie inside their views (`View::new`); the block holds
            // `ci` planes plus `ew` floats of slack, which covers the
            // furthest wide column of the furthest tap (`Plan::block_len`);
            // `dst` is either the `cn × n` scratch tile or the task's own
            // rows of the output (see `OutPtr`), `cn` channel planes apart.
            unsafe {
                gemm::gemm(
                    t.cn,
                    n,
                    p.ci,
                    dst,
                    1,
                    dst_rs,
                    !first,
                    lhs,
                    w.strides[3] as isize,
                    w.strides[2] as isize,
                    rhs,
                    rhs_cs,
                    rhs_rs,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    }
    for c in 0..t.cn {
        let b = bias.map_or(0.0, |b| b[t.co0 + c]);
        for r in 0..t.rows {
            let at = out_at + c * out_plane + r * p.wo;
            // SAFETY: row `y0 + r` of channel `co0 + c` of image `bi`: inside
            // `out` and written by this task only (see `OutPtr`).
            let dst = unsafe { std::slice::from_raw_parts_mut(out.at(at), p.wo) };
            if p.wide() {
                let src = &wide[c * n + r * p.wq..][..p.wo];
                for (o, v) in dst.iter_mut().zip(src) {
                    *o = v + b;
                }
            } else if b != 0.0 {
                for o in dst.iter_mut() {
                    *o += b;
                }
            }
        }
    }
}
