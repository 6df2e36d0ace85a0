//! The UNet's spatial transformers (diffusers' `Transformer2DModel` with
//! `BasicTransformerBlock`s), ported from candle-transformers 0.11.1
//! (<https://docs.rs/crate/candle-transformers/0.11.1/source/src/models/stable_diffusion/attention.rs>,
//! `SpatialTransformer`, `BasicTransformerBlock`, `CrossAttention`,
//! `FeedForward`, `GeGlu`) so that the attention runs on the engine's fused
//! kernel ([`crate::ops::attention`]) instead of candle's matmul → softmax
//! → matmul. Weight names and shapes are candle's, which are diffusers'
//! checkpoint names, so every folder loads unchanged.
//!
//! Changes from candle's file: the attention call; heads are split with a
//! reshape and a transposed view instead of a copy per tensor; candle's
//! sliced and flash-attention variants (unused by the engine) are left
//! out; `proj_out` of the linear projection is declared `inner → channels`
//! as diffusers has it (candle declares `channels → inner`, the same shape
//! whenever the two are equal, as in every Stable Diffusion config); the
//! 1×1 `proj_in`/`proj_out` convolutions of SD 1.x run on the engine's
//! convolution ([`crate::ops::conv`]), which reads `proj_out`'s transposed
//! input in place, and the input group norm on the engine's
//! ([`crate::ops::group_norm`]).
//! The feed-forward's GEGLU is one fused kernel ([`crate::ops::geglu`])
//! with diffusers' exact GELU, where candle's uses the tanh approximation.

use candle_core::{Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use crate::ops::attention::{Mask, attention};
use crate::ops::conv::{Conv2d, ConvParams};
use crate::ops::group_norm::GroupNorm;
use crate::ops::linear::{Linear, linear, linear_no_bias};

/// `GEGLU`: a projection to twice the width, one half gating the other.
struct GeGlu {
    proj: Linear,
}

impl GeGlu {
    fn new(vb: VarBuilder, dim_in: usize, dim_out: usize) -> Result<Self> {
        Ok(Self {
            proj: linear(dim_in, dim_out * 2, vb.pp("proj"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        crate::ops::geglu::geglu(&self.proj.forward(xs)?)
    }
}

/// The transformer block's feed-forward: GEGLU to 4× the width, then back.
struct FeedForward {
    project_in: GeGlu,
    linear: Linear,
}

impl FeedForward {
    fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        let inner = dim * 4;
        let vb = vb.pp("net");
        Ok(Self {
            project_in: GeGlu::new(vb.pp("0"), dim, inner)?,
            linear: linear(inner, dim, vb.pp("2"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.linear.forward(&self.project_in.forward(xs)?)
    }
}

/// Multi-head attention of the latent's positions over themselves
/// (`attn1`) or over the text embedding (`attn2`).
struct CrossAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    head_dim: usize,
    scale: f64,
}

impl CrossAttention {
    /// `context_dim`: the width of what is attended to; `None` for
    /// self-attention.
    fn new(
        vb: VarBuilder,
        query_dim: usize,
        context_dim: Option<usize>,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self> {
        let inner = heads * head_dim;
        let context_dim = context_dim.unwrap_or(query_dim);
        Ok(Self {
            to_q: linear_no_bias(query_dim, inner, vb.pp("to_q"))?,
            to_k: linear_no_bias(context_dim, inner, vb.pp("to_k"))?,
            to_v: linear_no_bias(context_dim, inner, vb.pp("to_v"))?,
            to_out: linear(inner, query_dim, vb.pp("to_out.0"))?,
            heads,
            head_dim,
            scale: 1.0 / (head_dim as f64).sqrt(),
        })
    }

    /// `xs`: `[B, Lq, query_dim]`; `context`: `[B, Lk, context_dim]`, or
    /// `None` to attend to `xs`.
    fn forward(&self, xs: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let (b, lq, _) = xs.dims3()?;
        let context = context.unwrap_or(xs);
        let lk = context.dim(1)?;
        // [B, L, H·D] → a [B, H, L, D] view: no copy.
        let heads = |t: Tensor, l: usize| {
            t.reshape((b, l, self.heads, self.head_dim))?
                .transpose(1, 2)
        };
        let q = heads(self.to_q.forward(xs)?, lq)?;
        let k = heads(self.to_k.forward(context)?, lk)?;
        let v = heads(self.to_v.forward(context)?, lk)?;
        let out = attention(&q, &k, &v, self.scale, Mask::None)?
            .transpose(1, 2)?
            .reshape((b, lq, self.heads * self.head_dim))?;
        self.to_out.forward(&out)
    }
}

/// Self-attention, cross-attention and feed-forward, each after a layer
/// norm and added to its input.
struct BasicTransformerBlock {
    attn1: CrossAttention,
    ff: FeedForward,
    attn2: CrossAttention,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: LayerNorm,
}

impl BasicTransformerBlock {
    fn new(
        vb: VarBuilder,
        dim: usize,
        heads: usize,
        head_dim: usize,
        context_dim: Option<usize>,
    ) -> Result<Self> {
        Ok(Self {
            attn1: CrossAttention::new(vb.pp("attn1"), dim, None, heads, head_dim)?,
            ff: FeedForward::new(vb.pp("ff"), dim)?,
            attn2: CrossAttention::new(vb.pp("attn2"), dim, context_dim, heads, head_dim)?,
            norm1: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm1"))?,
            norm2: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm2"))?,
            norm3: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm3"))?,
        })
    }

    fn forward(&self, xs: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let xs = (self.attn1.forward(&self.norm1.forward(xs)?, None)? + xs)?;
        let xs = (self.attn2.forward(&self.norm2.forward(&xs)?, context)? + xs)?;
        self.ff.forward(&self.norm3.forward(&xs)?)? + xs
    }
}

/// How a [`SpatialTransformer`] is built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpatialTransformerConfig {
    /// Transformer blocks (`transformer_layers_per_block`).
    pub depth: usize,
    /// Groups of the input group norm (the UNet's `norm_num_groups`).
    pub num_groups: usize,
    /// Width of the text embedding (`cross_attention_dim`); `None` makes
    /// `attn2` a second self-attention.
    pub context_dim: Option<usize>,
    /// Linear `proj_in`/`proj_out` (SD 2.x, SDXL) instead of 1×1
    /// convolutions (SD 1.x).
    pub use_linear_projection: bool,
}

enum Proj {
    Conv2d(Conv2d),
    Linear(Linear),
}

/// diffusers' `Transformer2DModel`: group norm, projection in, transformer
/// blocks over the `H·W` positions, projection out, plus the input.
pub(crate) struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Proj,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Proj,
}

impl SpatialTransformer {
    pub(crate) fn new(
        vb: VarBuilder,
        channels: usize,
        heads: usize,
        head_dim: usize,
        config: SpatialTransformerConfig,
    ) -> Result<Self> {
        let inner = heads * head_dim;
        let norm = GroupNorm::new(vb.pp("norm"), config.num_groups, channels, 1e-6)?;
        let (proj_in, proj_out) = if config.use_linear_projection {
            (
                Proj::Linear(linear(channels, inner, vb.pp("proj_in"))?),
                Proj::Linear(linear(inner, channels, vb.pp("proj_out"))?),
            )
        } else {
            let conv =
                |cin, cout, name| Conv2d::new(vb.pp(name), cin, cout, 1, ConvParams::default());
            (
                Proj::Conv2d(conv(channels, inner, "proj_in")?),
                Proj::Conv2d(conv(inner, channels, "proj_out")?),
            )
        };
        let blocks = (0..config.depth)
            .map(|i| {
                BasicTransformerBlock::new(
                    vb.pp("transformer_blocks").pp(i),
                    inner,
                    heads,
                    head_dim,
                    config.context_dim,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            norm,
            proj_in,
            blocks,
            proj_out,
        })
    }

    /// `xs`: `[B, C, H, W]`; `context`: `[B, L, context_dim]`.
    pub(crate) fn forward(&self, xs: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let (b, _, h, w) = xs.dims4()?;
        let residual = xs;
        let xs = self.norm.forward(xs)?;
        // [B, C, H, W] → [B, H·W, C]
        let to_rows = |t: &Tensor, c: usize| t.transpose(1, 2)?.t()?.reshape((b, h * w, c));
        let (inner, mut xs) = match &self.proj_in {
            Proj::Conv2d(p) => {
                let xs = p.forward(&xs)?;
                let inner = xs.dim(1)?;
                (inner, to_rows(&xs, inner)?)
            }
            Proj::Linear(p) => {
                let c = xs.dim(1)?;
                let xs = p.forward(&to_rows(&xs, c)?)?;
                (xs.dim(2)?, xs)
            }
        };
        for block in &self.blocks {
            xs = block.forward(&xs, context)?;
        }
        // [B, H·W, C] → [B, C, H, W]
        let to_image = |t: &Tensor, c: usize| t.reshape((b, h, w, c))?.t()?.transpose(1, 2);
        let xs = match &self.proj_out {
            Proj::Conv2d(p) => p.forward(&to_image(&xs, inner)?)?,
            Proj::Linear(p) => {
                let xs = p.forward(&xs)?;
                let c = xs.dim(2)?;
                to_image(&xs, c)?
            }
        };
        xs + residual
    }
}
