//! The engine's linear layer: f32 on the CPU in tasks of our own, candle's
//! elsewhere, or a bf16 product with f32 accumulation ([`super::bf16`])
//! when the model is loaded with `precision = bf16` on a CPU that has bf16
//! instructions.
//!
//! In f32 on the CPU, candle's layer is a batched matmul against the
//! transposed weight (parallel inside the `gemm` crate) followed by a
//! separate pass that adds the bias: at the UNet's feed-forward shapes
//! (4096 rows, 320 → 2560) that ran at about two thirds of PyTorch's speed.
//! Here the rows (and, for few rows, the output columns) are split into
//! tasks shared by candle's thread count; each task is one single-threaded
//! `gemm` call writing its tile of the output, and adds the bias to that
//! tile while it is still in cache.
//!
//! In bf16 the weights `W` `[N, K]` are packed once, at construction, as
//! the right-hand side `Wᵀ` in VNNI pairs (half the f32 weights' memory;
//! the f32 tensor is dropped). A call rounds the input rows to bf16 into a
//! padded scratch `A` `[M, K]` and computes `A·Wᵀ` in tasks of rows (and of
//! output columns when there are few rows) on candle's thread count; the
//! bias is added to the f32 output.

use std::sync::Arc;

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Module, Result, Shape, Tensor, bail,
    utils,
};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::bf16::{
    Bf16Kernel, Compute, Gemm, KB, MB, NB, PackedB, Segment, build_compute, round_row,
};
use super::view::OutPtr;

/// A linear layer with the weight names of PyTorch's `nn.Linear`
/// (`weight` `[out, in]`, `bias` `[out]`), computing in f32 (candle's) or
/// bf16 (see the module).
#[derive(Debug, Clone)]
pub struct Linear(Inner);

#[derive(Debug, Clone)]
enum Inner {
    /// f32 on the CPU: `weight` `[out, in]`, contiguous.
    F32Cpu {
        weight: Tensor,
        bias: Option<Arc<Vec<f32>>>,
    },
    F32(candle_nn::Linear),
    Bf16 {
        weight: Arc<PackedB>,
        bias: Option<Arc<Vec<f32>>>,
        kernel: Bf16Kernel,
    },
}

/// `in_dim → out_dim` with a bias, from `vb` (as `candle_nn::linear`),
/// computing as the layers being built do ([`super::bf16::building_with`]).
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get((out_dim, in_dim), "weight")?;
    let bias = vb.get(out_dim, "bias")?;
    Linear::new(weight, Some(bias), build_compute())
}

/// `in_dim → out_dim` with a bias, from `vb`, always in f32 (for the parts
/// of a model that stay f32 whatever its precision: the text encoders and
/// the VAE).
pub fn linear_f32(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get((out_dim, in_dim), "weight")?;
    let bias = vb.get(out_dim, "bias")?;
    Linear::new(weight, Some(bias), Compute::F32)
}

/// [`linear_f32`] without a bias.
pub fn linear_f32_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get((out_dim, in_dim), "weight")?;
    Linear::new(weight, None, Compute::F32)
}

/// `in_dim → out_dim` without a bias (as `candle_nn::linear_no_bias`).
pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get((out_dim, in_dim), "weight")?;
    Linear::new(weight, None, build_compute())
}

impl Linear {
    /// From a `[out, in]` weight and an optional `[out]` bias, computing as
    /// `compute` says. bf16 applies to f32 weights on the CPU; anything
    /// else keeps candle's f32 layer.
    pub fn new(weight: Tensor, bias: Option<Tensor>, compute: Compute) -> Result<Self> {
        let (n, k) = weight.dims2()?;
        match compute {
            Compute::Bf16(kernel)
                if matches!(weight.device(), Device::Cpu) && weight.dtype() == DType::F32 =>
            {
                let w = weight.flatten_all()?.to_vec1::<f32>()?;
                let bias = plain_bias(bias, n)?;
                Ok(Self(Inner::Bf16 {
                    weight: Arc::new(PackedB::from_transposed(&w, n, k)),
                    bias,
                    kernel,
                }))
            }
            _ if matches!(weight.device(), Device::Cpu) && weight.dtype() == DType::F32 => {
                let bias = plain_bias(bias, n)?;
                Ok(Self(Inner::F32Cpu {
                    weight: weight.contiguous()?,
                    bias,
                }))
            }
            _ => Ok(Self(Inner::F32(candle_nn::Linear::new(weight, bias)))),
        }
    }

    /// How this layer computes.
    pub fn compute(&self) -> Compute {
        match &self.0 {
            Inner::F32(_) | Inner::F32Cpu { .. } => Compute::F32,
            Inner::Bf16 { kernel, .. } => Compute::Bf16(*kernel),
        }
    }

    /// Bytes of weights (and bias) held.
    pub fn weight_bytes(&self) -> usize {
        match &self.0 {
            Inner::F32(l) => 4 * (l.weight().elem_count() + l.bias().map_or(0, Tensor::elem_count)),
            Inner::F32Cpu { weight, bias } => {
                4 * (weight.elem_count() + bias.as_ref().map_or(0, |b| b.len()))
            }
            Inner::Bf16 { weight, bias, .. } => {
                weight.bytes() + 4 * bias.as_ref().map_or(0, |b| b.len())
            }
        }
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match &self.0 {
            Inner::F32(l) => l.forward(xs),
            Inner::F32Cpu { weight, bias } => {
                if xs.dtype() != DType::F32 || !matches!(xs.device(), Device::Cpu) {
                    bail!(
                        "linear: an f32 CPU layer takes f32 input on the CPU, got {:?} on {:?}",
                        xs.dtype(),
                        xs.device()
                    );
                }
                xs.contiguous()?.apply_op2_no_bwd(
                    weight,
                    &LinearF32Op {
                        bias: bias.as_deref().map(Vec::as_slice),
                    },
                )
            }
            Inner::Bf16 {
                weight,
                bias,
                kernel,
            } => xs.contiguous()?.apply_op1_no_bwd(&LinearOp {
                weight,
                bias: bias.as_deref().map(Vec::as_slice),
                kernel: *kernel,
            }),
        }
    }
}

/// The bias as plain f32 values, checked against the `n` outputs.
fn plain_bias(bias: Option<Tensor>, n: usize) -> Result<Option<Arc<Vec<f32>>>> {
    let Some(b) = bias else {
        return Ok(None);
    };
    if b.dims() != [n] {
        bail!("linear: bias {:?} for {n} outputs", b.dims());
    }
    Ok(Some(Arc::new(b.to_dtype(DType::F32)?.to_vec1::<f32>()?)))
}

struct LinearF32Op<'a> {
    bias: Option<&'a [f32]>,
}

impl CustomOp2 for LinearF32Op<'_> {
    fn name(&self) -> &'static str {
        "easel-linear-f32"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, k) = l2.shape().dims2()?;
        let dims = l1.dims();
        if dims.last() != Some(&k) || !l1.is_contiguous() || !l2.is_contiguous() {
            bail!("linear: input {dims:?} (contiguous) for {k} input features");
        }
        let (x, w) = (operand(s1, l1)?, operand(s2, l2)?);
        let out = matmul_f32(x, w, n, k, self.bias);
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("checked above") = n;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// The elements a contiguous layout covers.
fn operand<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let all = s.as_slice::<f32>()?;
    let (start, len) = (l.start_offset(), l.shape().elem_count());
    match all.get(start..start + len) {
        Some(v) => Ok(v),
        None => bail!("linear: operand outside its storage"),
    }
}

/// Rows per f32 task: a tile of 128 rows × a few hundred outputs stays in
/// L2 for the bias pass.
const F32_TASK_ROWS: usize = 128;

/// Fewest output columns an f32 task takes when columns are split.
const F32_MIN_COLS: usize = 64;

/// `x` `[M, K]` times `w` `[N, K]` transposed, plus `bias`: `[M, N]`.
fn matmul_f32(x: &[f32], w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let m = x.len() / k.max(1);
    let mut out = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return out;
    }
    let threads = utils::get_num_threads().max(1);
    let row_tasks = m.div_ceil(F32_TASK_ROWS);
    // Few rows (the time embedding, the text context): split the outputs.
    let col_tasks = if row_tasks >= 2 * threads {
        1
    } else {
        (2 * threads)
            .div_ceil(row_tasks)
            .min(n.div_ceil(F32_MIN_COLS))
            .max(1)
    };
    let rows = m.div_ceil(row_tasks);
    let cols = n.div_ceil(col_tasks);
    let out_ptr = OutPtr(out.as_mut_ptr());
    let run = |task: usize| {
        let (r0, c0) = ((task / col_tasks) * rows, (task % col_tasks) * cols);
        let (mr, nc) = (rows.min(m - r0), cols.min(n - c0));
        // SAFETY: rows r0..r0 + mr of x (K each) and rows c0..c0 + nc of w
        // (K each) lie inside the slices (m·K and n·K floats); the
        // destination is rows r0.., columns c0.. of the M × N output,
        // written by this task only (see `OutPtr`).
        unsafe {
            gemm::gemm(
                mr,
                nc,
                k,
                out_ptr.at(r0 * n + c0),
                1,
                n as isize,
                false,
                x.as_ptr().add(r0 * k),
                1,
                k as isize,
                w.as_ptr().add(c0 * k),
                k as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        if let Some(b) = bias {
            let b = &b[c0..c0 + nc];
            for r in r0..r0 + mr {
                // SAFETY: as above, this task's tile.
                let row = unsafe { std::slice::from_raw_parts_mut(out_ptr.at(r * n + c0), nc) };
                for (o, &bv) in row.iter_mut().zip(b) {
                    *o += bv;
                }
            }
        }
    };
    let tasks = row_tasks * col_tasks;
    if threads == 1 || tasks == 1 {
        (0..tasks).for_each(run);
    } else {
        (0..tasks).into_par_iter().for_each(run);
    }
    out
}

struct LinearOp<'a> {
    weight: &'a PackedB,
    bias: Option<&'a [f32]>,
    kernel: Bf16Kernel,
}

impl CustomOp1 for LinearOp<'_> {
    fn name(&self) -> &'static str {
        "easel-linear-bf16"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (w, k) = (self.weight, self.weight.k);
        let dims = l.dims();
        if dims.last() != Some(&k) || !l.is_contiguous() {
            bail!("linear: input {dims:?} (contiguous) for {k} input features");
        }
        let Some(x) = s
            .as_slice::<f32>()?
            .get(l.start_offset()..l.start_offset() + l.shape().elem_count())
        else {
            bail!("linear: input outside its storage");
        };
        let out = matmul(x, w, self.bias, self.kernel);
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("checked above") = w.n;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// Rows of `A` per task.
const TASK_ROWS: usize = 4 * MB;

/// `x` `[M, K]` (row-major) times `w` (`Wᵀ`, packed) plus `bias`: `[M, N]`.
pub(crate) fn matmul(x: &[f32], w: &PackedB, bias: Option<&[f32]>, kernel: Bf16Kernel) -> Vec<f32> {
    let (k, k_pad, n, n_pad) = (w.k, w.k_pad, w.n, w.n_pad);
    let m = x.len() / k;
    let m_pad = m.max(1).next_multiple_of(MB);
    debug_assert!(k_pad.is_multiple_of(KB) && n_pad.is_multiple_of(NB));
    let threads = utils::get_num_threads().max(1);
    // A: the input rounded to bf16, padded with zero rows and columns.
    let mut a = vec![0u16; m_pad * k_pad];
    let round = |(dst, src): (&mut [u16], &[f32])| round_row(src, &mut dst[..k]);
    if threads > 1 && m >= 2 * MB {
        a.par_chunks_mut(k_pad).zip(x.par_chunks(k)).for_each(round);
    } else {
        a.chunks_mut(k_pad).zip(x.chunks(k)).for_each(round);
    }
    // Tasks: row blocks, and column blocks too while there are fewer than
    // two tasks per thread.
    let row_tasks = m_pad.div_ceil(TASK_ROWS);
    let col_split = (2 * threads).div_ceil(row_tasks).min(n_pad / NB).max(1);
    let cols = (n_pad / NB).div_ceil(col_split) * NB;
    let col_tasks = n_pad.div_ceil(cols);
    let mut c = vec![0f32; m_pad * n_pad];
    let c_ptr = OutPtr(c.as_mut_ptr());
    let task = |t: usize| {
        let (r0, c0) = ((t / col_tasks) * TASK_ROWS, (t % col_tasks) * cols);
        let g = Gemm {
            m: TASK_ROWS.min(m_pad - r0),
            n: cols.min(n_pad - c0),
            k: k_pad,
            lda: k_pad,
            ldb: n_pad,
            ldc: n_pad,
        };
        let seg = Segment {
            a: a[r0 * k_pad..].as_ptr(),
            b: w.data[c0..].as_ptr(),
        };
        // SAFETY: A holds m_pad rows of k_pad values, B k_pad / 2 rows of
        // n_pad pairs, C m_pad rows of n_pad floats; this task's block
        // (rows r0.., columns c0..) lies inside each and is written by this
        // task only (see `OutPtr`); `kernel` was detected on this CPU.
        unsafe { g.run(kernel, &[seg], c_ptr.at(r0 * n_pad + c0)) };
    };
    let tasks = row_tasks * col_tasks;
    if threads == 1 || tasks == 1 {
        (0..tasks).for_each(task);
    } else {
        (0..tasks).into_par_iter().for_each(task);
    }
    // Drop the padding; add the bias.
    if n_pad != n {
        for r in 0..m {
            c.copy_within(r * n_pad..r * n_pad + n, r * n);
        }
    }
    c.truncate(m * n);
    if let Some(b) = bias {
        for row in c.chunks_exact_mut(n) {
            for (o, b) in row.iter_mut().zip(b) {
                *o += b;
            }
        }
    }
    c
}
