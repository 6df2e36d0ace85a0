//! diffusers' `ResnetBlock2D`: group norm, SiLU, 3×3 convolution, the time
//! embedding added per channel, group norm, SiLU, 3×3 convolution, plus the
//! input (through a 1×1 convolution when the widths differ).
//!
//! Ported from candle-transformers 0.11.1, `ResnetBlock2D` in
//! (<https://docs.rs/crate/candle-transformers/0.11.1/source/src/models/stable_diffusion/resnet.rs>),
//! itself a port of diffusers' `resnet.py`
//! (<https://github.com/huggingface/diffusers/blob/v0.31.0/src/diffusers/models/resnet.py>),
//! so that its convolutions run on the engine's kernel
//! ([`crate::ops::conv`]) rather than candle's im2col, and each group norm
//! and the SiLU after it are one fused kernel ([`crate::ops::group_norm`])
//! rather than about ten tensor operations. Same weight names, same
//! computation; candle's `groups_out` and `use_in_shortcut` options,
//! which no diffusers config the engine loads sets, are left out (the
//! shortcut convolution exists exactly when the widths differ).

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::ops::conv::{Conv2d, ConvParams};
use crate::ops::group_norm::GroupNorm;

/// Shape of one block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResnetBlock2DConfig {
    /// Output width; default the input width.
    pub out_channels: Option<usize>,
    /// Width of the time embedding; `None` (the VAE) for no `time_emb_proj`.
    pub temb_channels: Option<usize>,
    /// Groups of both group norms (default 32).
    pub groups: usize,
    /// Epsilon of both group norms (default 1e-6).
    pub eps: f64,
    /// The output is divided by this (default 1).
    pub output_scale_factor: f64,
}

impl Default for ResnetBlock2DConfig {
    fn default() -> Self {
        Self {
            out_channels: None,
            temb_channels: Some(512),
            groups: 32,
            eps: 1e-6,
            output_scale_factor: 1.0,
        }
    }
}

/// One residual block.
#[derive(Debug)]
pub(crate) struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    time_emb_proj: Option<Linear>,
    conv_shortcut: Option<Conv2d>,
    output_scale_factor: f64,
}

impl ResnetBlock2D {
    /// Loads `norm1`, `conv1`, `norm2`, `conv2`, and where present
    /// `time_emb_proj` and `conv_shortcut` (when the widths differ).
    pub(crate) fn new(vb: VarBuilder, cin: usize, config: ResnetBlock2DConfig) -> Result<Self> {
        let cout = config.out_channels.unwrap_or(cin);
        let conv3 = |cin, name| Conv2d::new(vb.pp(name), cin, cout, 3, ConvParams::same(1));
        let conv_shortcut = if cin != cout {
            Some(Conv2d::new(
                vb.pp("conv_shortcut"),
                cin,
                cout,
                1,
                ConvParams::default(),
            )?)
        } else {
            None
        };
        let time_emb_proj = match config.temb_channels {
            Some(t) => Some(candle_nn::linear(t, cout, vb.pp("time_emb_proj"))?),
            None => None,
        };
        Ok(Self {
            norm1: GroupNorm::new(vb.pp("norm1"), config.groups, cin, config.eps)?,
            conv1: conv3(cin, "conv1")?,
            norm2: GroupNorm::new(vb.pp("norm2"), config.groups, cout, config.eps)?,
            conv2: conv3(cout, "conv2")?,
            time_emb_proj,
            conv_shortcut,
            output_scale_factor: config.output_scale_factor,
        })
    }

    /// `xs` `[B, Cin, H, W]`, `temb` `[B, T]` → `[B, Cout, H, W]`.
    pub(crate) fn forward(&self, xs: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(xs)?,
            None => xs.clone(),
        };
        let hs = self.norm1.forward_silu(xs)?;
        let hs = self.conv1.forward(&hs)?;
        let hs = match (temb, &self.time_emb_proj) {
            (Some(temb), Some(proj)) => proj
                .forward(&candle_nn::ops::silu(temb)?)?
                .unsqueeze(D::Minus1)?
                .unsqueeze(D::Minus1)?
                .broadcast_add(&hs)?,
            _ => hs,
        };
        let hs = self.norm2.forward_silu(&hs)?;
        let hs = self.conv2.forward(&hs)?;
        (shortcut + hs)? / self.output_scale_factor
    }
}
