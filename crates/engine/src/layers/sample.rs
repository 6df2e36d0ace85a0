//! diffusers' `Downsample2D` and `Upsample2D` with a convolution, as the
//! UNet and the VAE use them, on the engine's convolution. As in diffusers'
//! <https://github.com/huggingface/diffusers/blob/v0.31.0/src/diffusers/models/downsampling.py>
//! and
//! <https://github.com/huggingface/diffusers/blob/v0.31.0/src/diffusers/models/upsampling.py>,
//! and candle-transformers 0.11.1's private copies in
//! `stable_diffusion/unet_2d_blocks.rs`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::ops::conv::{Conv2d, ConvParams, Padding};

/// A 3×3 convolution at stride 2 (`conv`).
#[derive(Debug)]
pub(crate) struct Downsample2D(Conv2d);

impl Downsample2D {
    /// `padding` 0 means one row and column of zeros below and right (as
    /// diffusers pads before the convolution; here the kernel reads them
    /// as padding, without a padded copy of the input).
    pub(crate) fn new(vb: VarBuilder, ch: usize, padding: usize) -> Result<Self> {
        let padding = if padding == 0 {
            Padding::bottom_right(1)
        } else {
            Padding::uniform(padding)
        };
        let params = ConvParams { stride: 2, padding };
        Ok(Self(Conv2d::new(vb.pp("conv"), ch, ch, 3, params)?))
    }
}

impl Module for Downsample2D {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.0.forward(xs)
    }
}

/// Nearest-neighbour upsampling then a 3×3 convolution (`conv`).
#[derive(Debug)]
pub(crate) struct Upsample2D(Conv2d);

impl Upsample2D {
    pub(crate) fn new(vb: VarBuilder, ch: usize) -> Result<Self> {
        Ok(Self(Conv2d::new(
            vb.pp("conv"),
            ch,
            ch,
            3,
            ConvParams::same(1),
        )?))
    }

    /// Doubles `xs`, or resizes it to `size` (`(H, W)`) where the down path
    /// had odd sizes.
    pub(crate) fn forward(&self, xs: &Tensor, size: Option<(usize, usize)>) -> Result<Tensor> {
        let xs = match size {
            Some((h, w)) => xs.upsample_nearest2d(h, w)?,
            None => {
                let (_, _, h, w) = xs.dims4()?;
                xs.upsample_nearest2d(2 * h, 2 * w)?
            }
        };
        self.0.forward(&xs)
    }
}
