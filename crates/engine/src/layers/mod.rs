//! Network layers shared by the UNet and the VAE, built on the kernels of
//! [`crate::ops`].
//!
//! # Layout
//! - `resnet`: diffusers' `ResnetBlock2D`, ported from candle-transformers
//!   onto the engine's convolution and fused group norm + SiLU.
//! - `sample`: the stride-2 convolution that halves a feature map and the
//!   nearest-neighbour doubling followed by a 3×3 convolution.

mod resnet;
mod sample;

pub(crate) use resnet::{ResnetBlock2D, ResnetBlock2DConfig};
pub(crate) use sample::{Downsample2D, Upsample2D};
