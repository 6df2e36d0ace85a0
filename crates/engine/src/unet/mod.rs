//! The denoising UNet (diffusers' `UNet2DConditionModel`), built from its
//! `unet/config.json`.
//!
//! - `config`: the config and the check of what is supported.
//! - `blocks`: down, mid and up blocks (ours; see there why).
//! - `attention`: the spatial transformers, ported from candle onto the
//!   fused attention kernel.
//!
//! The top level follows candle's `unet_2d.rs` and diffusers'
//! `unet_2d_condition.py`: time embedding, `conv_in`, down blocks collecting
//! skip connections, the cross-attention mid block, up blocks consuming
//! them, group norm, SiLU, `conv_out`. One timestep serves the whole batch
//! (every image of a batch shares its plan).

mod attention;
mod blocks;
mod config;

pub(crate) use config::UNetConfig;

use candle_core::{Device, Module, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::stable_diffusion::embeddings::{TimestepEmbedding, Timesteps};

use crate::error::Result;
use crate::loader::lora::Overlay;
use crate::loader::{ModelFolder, WeightStore};
use crate::ops::conv::{Conv2d, ConvParams};
use crate::ops::group_norm::GroupNorm;
use blocks::{Attn, DownBlock, MidBlock, Shared, UpBlock};

struct Network {
    time_proj: Timesteps,
    time_embedding: TimestepEmbedding,
    conv_in: Conv2d,
    down: Vec<DownBlock>,
    mid: MidBlock,
    up: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    center_input: bool,
    /// SDXL: `add_time_proj` and `add_embedding`.
    added: Option<(Timesteps, TimestepEmbedding)>,
}

/// SDXL's extra conditioning for a batch.
pub(crate) struct Added<'a> {
    /// Pooled text embedding of the second encoder, `[B, P]`.
    pub text_embeds: &'a Tensor,
    /// `[B, 6]`: original size, crop top-left, target size.
    pub time_ids: &'a Tensor,
}

fn conv3(vb: VarBuilder, cin: usize, cout: usize) -> candle_core::Result<Conv2d> {
    Conv2d::new(vb, cin, cout, 3, ConvParams::same(1))
}

impl Network {
    fn new(vb: VarBuilder, c: &UNetConfig) -> candle_core::Result<Self> {
        let ch = &c.block_out_channels;
        let n = ch.len();
        let temb = ch[0] * 4;
        let shared = Shared {
            groups: c.norm_num_groups,
            eps: c.norm_eps,
            temb,
            context_dim: c.context_dim(),
            linear_projection: c.use_linear_projection,
            downsample_padding: c.downsample_padding,
        };
        let attn = |i: usize| {
            c.has_attention(i).then(|| Attn {
                heads: c.heads(i),
                depth: c.depth(i),
            })
        };
        let down = (0..n)
            .map(|i| {
                let cin = if i == 0 { ch[0] } else { ch[i - 1] };
                DownBlock::new(
                    vb.pp("down_blocks").pp(i),
                    &shared,
                    cin,
                    ch[i],
                    c.layers_per_block,
                    attn(i),
                    i + 1 < n,
                )
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mid = MidBlock::new(
            vb.pp("mid_block"),
            &shared,
            ch[n - 1],
            Attn {
                heads: c.heads(n - 1),
                depth: c.depth(n - 1),
            },
            c.mid_block_scale_factor,
        )?;
        let up = (0..n)
            .map(|i| {
                let b = n - 1 - i; // the down block this up block mirrors
                let prev = if i == 0 { ch[n - 1] } else { ch[b + 1] };
                let cin = if b == 0 { ch[0] } else { ch[b - 1] };
                UpBlock::new(
                    vb.pp("up_blocks").pp(i),
                    &shared,
                    cin,
                    prev,
                    ch[b],
                    c.layers_per_block + 1,
                    attn(b),
                    i + 1 < n,
                )
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            time_proj: Timesteps::new(ch[0], c.flip_sin_to_cos, c.freq_shift),
            time_embedding: TimestepEmbedding::new(vb.pp("time_embedding"), ch[0], temb)?,
            conv_in: conv3(vb.pp("conv_in"), c.in_channels, ch[0])?,
            down,
            mid,
            up,
            norm_out: GroupNorm::new(vb.pp("conv_norm_out"), c.norm_num_groups, ch[0], c.norm_eps)?,
            conv_out: conv3(vb.pp("conv_out"), ch[0], c.out_channels)?,
            center_input: c.center_input_sample,
            added: match c.text_time() {
                Some((time_dim, input_dim)) => Some((
                    Timesteps::new(time_dim, c.flip_sin_to_cos, c.freq_shift),
                    TimestepEmbedding::new(vb.pp("add_embedding"), input_dim, temb)?,
                )),
                None => None,
            },
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        timestep: f64,
        context: &Tensor,
        added: Option<&Added>,
    ) -> candle_core::Result<Tensor> {
        let (b, _, h, w) = xs.dims4()?;
        let xs = if self.center_input {
            ((xs * 2.0)? - 1.0)?
        } else {
            xs.clone()
        };
        let t = (Tensor::ones(b, xs.dtype(), xs.device())? * timestep)?;
        let mut temb = self.time_embedding.forward(&self.time_proj.forward(&t)?)?;
        // SDXL: emb += add_embedding(cat(text_embeds, time_proj(time_ids))),
        // as diffusers' `get_aug_embed` for `text_time`.
        match (&self.added, added) {
            (Some((proj, embed)), Some(a)) => {
                let ids = a.time_ids.flatten_all()?;
                let time = proj.forward(&ids)?.reshape((b, ()))?;
                let input = Tensor::cat(&[a.text_embeds, &time], 1)?;
                temb = (temb + embed.forward(&input)?)?;
            }
            (Some(_), None) => {
                candle_core::bail!("this UNet needs SDXL's pooled text embeddings and time ids")
            }
            _ => {}
        }
        let mut xs = self.conv_in.forward(&xs)?;
        let mut skips = vec![xs.clone()];
        for block in &self.down {
            let (next, s) = block.forward(&xs, &temb, context)?;
            skips.extend(s);
            xs = next;
        }
        xs = self.mid.forward(&xs, &temb, context)?;
        // Sizes that do not halve evenly: upsample to the skip's size, as
        // diffusers does (`forward_upsample_size`).
        let factor = 1usize << (self.down.len() - 1);
        let uneven = h % factor != 0 || w % factor != 0;
        let n_up = self.up.len();
        for (i, block) in self.up.iter().enumerate() {
            let rest = skips.split_off(skips.len() - block.len());
            let size = if uneven && i + 1 < n_up {
                let (_, _, sh, sw) = skips.last().expect("skips remain").dims4()?;
                Some((sh, sw))
            } else {
                None
            };
            xs = block.forward(&xs, &rest, &temb, context, size)?;
        }
        let xs = self.norm_out.forward_silu(&xs)?;
        self.conv_out.forward(&xs)
    }
}

/// A loaded UNet.
pub(crate) struct UNet {
    net: Network,
    /// Its config.
    pub config: UNetConfig,
    /// Bytes of weights held.
    pub weight_bytes: u64,
}

impl UNet {
    /// Loads `unet/` with an already checked config, adding `overlay`'s
    /// LoRA updates to its weights.
    pub(crate) fn load(
        folder: &ModelFolder,
        config: UNetConfig,
        device: &Device,
        overlay: Overlay,
    ) -> Result<Self> {
        let store = WeightStore::open_with_overlay(&folder.weight_files("unet")?, overlay)?;
        let net = Network::new(store.var_builder(device), &config).map_err(|e| store.explain(e))?;
        Ok(Self {
            net,
            config,
            weight_bytes: store.loaded_bytes(),
        })
    }

    /// One network call: `x` `[B, C, H, W]`, one timestep for the batch,
    /// `context` `[B, L, D]`.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        timestep: f64,
        context: &Tensor,
        added: Option<&Added>,
    ) -> Result<Tensor> {
        Ok(self.net.forward(x, timestep, context, added)?)
    }
}
