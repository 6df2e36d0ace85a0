//! The UNet's down and up blocks.
//!
//! Ours rather than candle's `DownBlock2D`/`UpBlock2D` (and the cross-
//! attention blocks built on them) because candle's leave the resnets'
//! group count at its default of 32 whatever `norm_num_groups` says: a
//! model trained with 16 groups (the bundled one) would load without error
//! and compute the wrong group norm. The resnets, downsamplers and
//! upsamplers are the engine's (`crate::layers`, on its convolution
//! kernel); the spatial transformers are our port (`super::attention`),
//! which runs the fused attention kernel. The mid block is ours for the
//! same reason. Structure as in
//! diffusers' `unet_2d_blocks.py`
//! (<https://github.com/huggingface/diffusers/blob/v0.31.0/src/diffusers/models/unets/unet_2d_blocks.py>).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::{Downsample2D, ResnetBlock2D, ResnetBlock2DConfig, Upsample2D};

use super::attention::{SpatialTransformer, SpatialTransformerConfig};

/// Settings every block of one UNet shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shared {
    pub groups: usize,
    pub eps: f64,
    pub temb: usize,
    pub context_dim: usize,
    pub linear_projection: bool,
    pub downsample_padding: usize,
}

impl Shared {
    fn resnet(&self, vb: VarBuilder, cin: usize, cout: usize) -> Result<ResnetBlock2D> {
        let cfg = ResnetBlock2DConfig {
            out_channels: Some(cout),
            temb_channels: Some(self.temb),
            groups: self.groups,
            eps: self.eps,
            output_scale_factor: 1.0,
        };
        ResnetBlock2D::new(vb, cin, cfg)
    }

    fn transformer(
        &self,
        vb: VarBuilder,
        channels: usize,
        heads: usize,
        depth: usize,
    ) -> Result<SpatialTransformer> {
        let cfg = SpatialTransformerConfig {
            depth,
            num_groups: self.groups,
            context_dim: Some(self.context_dim),
            use_linear_projection: self.linear_projection,
        };
        SpatialTransformer::new(vb, channels, heads, channels / heads, cfg)
    }
}

/// `UNetMidBlock2DCrossAttn` with one layer: resnet, spatial transformer,
/// resnet, the resnets' output scaled by `mid_block_scale_factor`. As
/// candle's (`unet_2d_blocks.rs`, candle-transformers 0.11.1) but on our
/// spatial transformer.
pub(crate) struct MidBlock {
    first: ResnetBlock2D,
    attn: SpatialTransformer,
    second: ResnetBlock2D,
}

impl MidBlock {
    pub(crate) fn new(
        vb: VarBuilder,
        s: &Shared,
        ch: usize,
        attn: Attn,
        output_scale_factor: f64,
    ) -> Result<Self> {
        let cfg = ResnetBlock2DConfig {
            out_channels: Some(ch),
            temb_channels: Some(s.temb),
            groups: s.groups,
            eps: s.eps,
            output_scale_factor,
        };
        Ok(Self {
            first: ResnetBlock2D::new(vb.pp("resnets").pp(0), ch, cfg)?,
            attn: s.transformer(vb.pp("attentions").pp(0), ch, attn.heads, attn.depth)?,
            second: ResnetBlock2D::new(vb.pp("resnets").pp(1), ch, cfg)?,
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor, temb: &Tensor, context: &Tensor) -> Result<Tensor> {
        let xs = self.first.forward(xs, Some(temb))?;
        let xs = self.attn.forward(&xs, Some(context))?;
        self.second.forward(&xs, Some(temb))
    }
}

/// Cross-attention settings of a block: `None` for a plain block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attn {
    pub heads: usize,
    pub depth: usize,
}

/// `DownBlock2D` or `CrossAttnDownBlock2D`.
pub(crate) struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<SpatialTransformer>,
    downsample: Option<Downsample2D>,
}

impl DownBlock {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        vb: VarBuilder,
        s: &Shared,
        cin: usize,
        cout: usize,
        layers: usize,
        attn: Option<Attn>,
        add_downsample: bool,
    ) -> Result<Self> {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for i in 0..layers {
            let c = if i == 0 { cin } else { cout };
            resnets.push(s.resnet(vb.pp("resnets").pp(i), c, cout)?);
            if let Some(a) = attn {
                attentions.push(s.transformer(
                    vb.pp("attentions").pp(i),
                    cout,
                    a.heads,
                    a.depth,
                )?);
            }
        }
        let downsample = if add_downsample {
            Some(Downsample2D::new(
                vb.pp("downsamplers").pp(0),
                cout,
                s.downsample_padding,
            )?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            attentions,
            downsample,
        })
    }

    /// Returns the output and the skip connections it adds.
    pub(crate) fn forward(
        &self,
        xs: &Tensor,
        temb: &Tensor,
        context: &Tensor,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut skips = Vec::new();
        let mut xs = xs.clone();
        for (i, resnet) in self.resnets.iter().enumerate() {
            xs = resnet.forward(&xs, Some(temb))?;
            if let Some(attn) = self.attentions.get(i) {
                xs = attn.forward(&xs, Some(context))?;
            }
            skips.push(xs.clone());
        }
        if let Some(d) = &self.downsample {
            xs = d.forward(&xs)?;
            skips.push(xs.clone());
        }
        Ok((xs, skips))
    }
}

/// `UpBlock2D` or `CrossAttnUpBlock2D`.
pub(crate) struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<SpatialTransformer>,
    upsample: Option<Upsample2D>,
}

impl UpBlock {
    /// `cin` is the width of the matching down block's input, `prev` the
    /// width coming from below, `cout` this block's width.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        vb: VarBuilder,
        s: &Shared,
        cin: usize,
        prev: usize,
        cout: usize,
        layers: usize,
        attn: Option<Attn>,
        add_upsample: bool,
    ) -> Result<Self> {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for i in 0..layers {
            let skip = if i == layers - 1 { cin } else { cout };
            let from = if i == 0 { prev } else { cout };
            resnets.push(s.resnet(vb.pp("resnets").pp(i), from + skip, cout)?);
            if let Some(a) = attn {
                attentions.push(s.transformer(
                    vb.pp("attentions").pp(i),
                    cout,
                    a.heads,
                    a.depth,
                )?);
            }
        }
        let upsample = if add_upsample {
            Some(Upsample2D::new(vb.pp("upsamplers").pp(0), cout)?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            attentions,
            upsample,
        })
    }

    /// Number of skip connections this block consumes.
    pub(crate) fn len(&self) -> usize {
        self.resnets.len()
    }

    pub(crate) fn forward(
        &self,
        xs: &Tensor,
        skips: &[Tensor],
        temb: &Tensor,
        context: &Tensor,
        upsample_size: Option<(usize, usize)>,
    ) -> Result<Tensor> {
        let mut xs = xs.clone();
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = &skips[skips.len() - 1 - i];
            xs = Tensor::cat(&[&xs, skip], 1)?.contiguous()?;
            xs = resnet.forward(&xs, Some(temb))?;
            if let Some(attn) = self.attentions.get(i) {
                xs = attn.forward(&xs, Some(context))?;
            }
        }
        match &self.upsample {
            Some(u) => u.forward(&xs, upsample_size),
            None => Ok(xs),
        }
    }
}
