//! The KL autoencoder that maps between latents and pixels.
//!
//! Built from the engine's layers rather than candle's `AutoEncoderKL`,
//! because that type hides the encoder's mean and standard deviation and
//! samples the posterior from candle's device-global RNG; image-to-image
//! must sample it from each image's own generator (see [`crate::pipeline`]).
//! The mid-block self-attention is our own (see [`SelfAttention`]); the
//! resnets and encoder/decoder blocks are ports of candle's onto the
//! engine's convolution and group norm (`crate::layers`, [`crate::ops`]).
//! The layer structure follows candle's `vae.rs` (itself a port of
//! diffusers' `AutoencoderKL`), with the scaling and shift factors of
//! `vae/config.json` applied here, since candle's `decode` does not.

use candle_core::{Device, Module, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::error::{EngineError, Result};
use crate::layers::{Downsample2D, ResnetBlock2D, ResnetBlock2DConfig, Upsample2D};
use crate::loader::{ModelFolder, WeightStore, read_json};
use crate::ops::attention::{Mask, attention};
use crate::ops::conv::{Conv2d, ConvParams};
use crate::ops::group_norm::GroupNorm;
use crate::ops::linear::{Linear, linear_f32};

/// The fields of diffusers' `AutoencoderKL` config the engine reads.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct VaeConfig {
    #[serde(default)]
    _class_name: Option<String>,
    #[serde(default = "three")]
    in_channels: usize,
    #[serde(default = "three")]
    out_channels: usize,
    block_out_channels: Vec<usize>,
    #[serde(default)]
    down_block_types: Vec<String>,
    #[serde(default)]
    up_block_types: Vec<String>,
    #[serde(default = "one")]
    layers_per_block: usize,
    /// Latent channels (4 for SD).
    #[serde(default = "four")]
    pub latent_channels: usize,
    #[serde(default = "groups")]
    norm_num_groups: usize,
    /// Latents are multiplied by this after encoding (0.18215 for SD 1/2).
    #[serde(default = "sd_scale")]
    pub scaling_factor: f64,
    /// Subtracted before scaling (SD3-style VAEs); `None` for SD.
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "yes")]
    use_quant_conv: bool,
    #[serde(default = "yes")]
    use_post_quant_conv: bool,
    #[serde(default = "yes")]
    mid_block_add_attention: bool,
}

fn one() -> usize {
    1
}
fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn groups() -> usize {
    32
}
fn sd_scale() -> f64 {
    0.18215
}
fn yes() -> bool {
    true
}

impl VaeConfig {
    /// Reads and checks `vae/config.json`.
    pub(crate) fn load(path: &std::path::Path) -> Result<Self> {
        let cfg: Self = read_json(path)?;
        let bad = |detail: String| Err(EngineError::UnknownArchitecture { detail });
        if let Some(c) = &cfg._class_name
            && c != "AutoencoderKL"
        {
            return bad(format!("VAE class `{c}` (supported: AutoencoderKL)"));
        }
        if cfg
            .down_block_types
            .iter()
            .any(|t| t != "DownEncoderBlock2D")
            || cfg.up_block_types.iter().any(|t| t != "UpDecoderBlock2D")
        {
            return bad(format!(
                "VAE blocks {:?}/{:?} (supported: DownEncoderBlock2D/UpDecoderBlock2D)",
                cfg.down_block_types, cfg.up_block_types
            ));
        }
        if !cfg.mid_block_add_attention || cfg.block_out_channels.is_empty() {
            return bad("VAE without mid-block attention or without blocks".into());
        }
        Ok(cfg)
    }

    /// Pixels per latent along each side.
    pub(crate) fn scale_factor(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }
}

fn conv3(vb: VarBuilder, cin: usize, cout: usize) -> candle_core::Result<Conv2d> {
    Conv2d::new(vb, cin, cout, 3, ConvParams::same(1))
}

fn conv1(vb: VarBuilder, ch: usize) -> candle_core::Result<Conv2d> {
    Conv2d::new(vb, ch, ch, 1, ConvParams::default())
}

/// The resnets of one encoder or decoder block: no time embedding.
fn resnets(
    vb: VarBuilder,
    cin: usize,
    cout: usize,
    layers: usize,
    groups: usize,
) -> candle_core::Result<Vec<ResnetBlock2D>> {
    let cfg = ResnetBlock2DConfig {
        out_channels: Some(cout),
        temb_channels: None,
        groups,
        eps: 1e-6,
        output_scale_factor: 1.0,
    };
    (0..layers)
        .map(|i| ResnetBlock2D::new(vb.pp("resnets").pp(i), if i == 0 { cin } else { cout }, cfg))
        .collect()
}

/// diffusers' `DownEncoderBlock2D`: resnets, then (except in the last
/// block) a stride-2 convolution with diffusers' bottom-right padding
/// (`downsample_padding = 0`, as every `AutoencoderKL` sets it). As
/// candle-transformers 0.11.1's (`stable_diffusion/unet_2d_blocks.rs`) on
/// the engine's layers.
struct DownEncoderBlock {
    resnets: Vec<ResnetBlock2D>,
    downsample: Option<Downsample2D>,
}

impl DownEncoderBlock {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let mut xs = xs.clone();
        for r in &self.resnets {
            xs = r.forward(&xs, None)?;
        }
        match &self.downsample {
            Some(d) => d.forward(&xs),
            None => Ok(xs),
        }
    }
}

/// diffusers' `UpDecoderBlock2D`: resnets, then (except in the last block)
/// nearest-neighbour doubling and a 3×3 convolution. As candle-transformers
/// 0.11.1's on the engine's layers.
struct UpDecoderBlock {
    resnets: Vec<ResnetBlock2D>,
    upsample: Option<Upsample2D>,
}

impl UpDecoderBlock {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let mut xs = xs.clone();
        for r in &self.resnets {
            xs = r.forward(&xs, None)?;
        }
        match &self.upsample {
            Some(u) => u.forward(&xs, None),
            None => Ok(xs),
        }
    }
}

/// The VAE's single-head self-attention (diffusers' `Attention` as used by
/// `UNetMidBlock2D`). Ours because candle's `AttentionBlock` gave results
/// 0.14 off diffusers on the golden fixture (a batch of two 8×8 latents),
/// while the same computation written out here matches to 2e-7. Runs on
/// the fused attention kernel ([`crate::ops::attention`]): at a 64×64
/// latent the full score matrix would be 4096 × 4096 per image.
struct SelfAttention {
    norm: GroupNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
}

impl SelfAttention {
    fn new(vb: VarBuilder, ch: usize, groups: usize) -> candle_core::Result<Self> {
        let lin = |name: &str| linear_f32(ch, ch, vb.pp(name));
        Ok(Self {
            norm: GroupNorm::new(vb.pp("group_norm"), groups, ch, 1e-6)?,
            q: lin("to_q")?,
            k: lin("to_k")?,
            v: lin("to_v")?,
            out: lin("to_out.0")?,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let hs = self
            .norm
            .forward(xs)?
            .reshape((b, c, h * w))?
            .transpose(1, 2)?
            .contiguous()?;
        let scale = (c as f64).powf(-0.5);
        // One head: [B, H·W, C] → [B, 1, H·W, C].
        let q = self.q.forward(&hs)?.unsqueeze(1)?;
        let k = self.k.forward(&hs)?.unsqueeze(1)?;
        let v = self.v.forward(&hs)?.unsqueeze(1)?;
        let attn = attention(&q, &k, &v, scale, Mask::None)?.squeeze(1)?;
        let out = self.out.forward(&attn)?;
        out.transpose(1, 2)?.reshape((b, c, h, w))? + xs
    }
}

/// `UNetMidBlock2D` without time embedding: resnet, attention, resnet.
struct MidBlock {
    first: ResnetBlock2D,
    attn: SelfAttention,
    second: ResnetBlock2D,
}

impl MidBlock {
    fn new(vb: VarBuilder, ch: usize, groups: usize) -> candle_core::Result<Self> {
        let cfg = ResnetBlock2DConfig {
            groups,
            eps: 1e-6,
            temb_channels: None,
            ..Default::default()
        };
        Ok(Self {
            first: ResnetBlock2D::new(vb.pp("resnets").pp(0), ch, cfg)?,
            attn: SelfAttention::new(vb.pp("attentions").pp(0), ch, groups)?,
            second: ResnetBlock2D::new(vb.pp("resnets").pp(1), ch, cfg)?,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let xs = self.first.forward(xs, None)?;
        let xs = self.attn.forward(&xs)?;
        self.second.forward(&xs, None)
    }
}

struct Encoder {
    conv_in: Conv2d,
    down: Vec<DownEncoderBlock>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    quant_conv: Option<Conv2d>,
}

impl Encoder {
    fn new(vb: VarBuilder, c: &VaeConfig) -> candle_core::Result<Self> {
        let ch = &c.block_out_channels;
        let last = *ch.last().unwrap_or(&0);
        let e = vb.pp("encoder");
        let down = (0..ch.len())
            .map(|i| {
                let vb = e.pp("down_blocks").pp(i);
                let cin = if i > 0 { ch[i - 1] } else { ch[0] };
                let last = i + 1 == ch.len();
                Ok(DownEncoderBlock {
                    resnets: resnets(
                        vb.clone(),
                        cin,
                        ch[i],
                        c.layers_per_block,
                        c.norm_num_groups,
                    )?,
                    downsample: if last {
                        None
                    } else {
                        Some(Downsample2D::new(vb.pp("downsamplers").pp(0), ch[i], 0)?)
                    },
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let lc = c.latent_channels;
        Ok(Self {
            conv_in: conv3(e.pp("conv_in"), c.in_channels, ch[0])?,
            down,
            mid: MidBlock::new(e.pp("mid_block"), last, c.norm_num_groups)?,
            norm_out: GroupNorm::new(e.pp("conv_norm_out"), c.norm_num_groups, last, 1e-6)?,
            conv_out: conv3(e.pp("conv_out"), last, 2 * lc)?,
            quant_conv: if c.use_quant_conv {
                Some(conv1(vb.pp("quant_conv"), 2 * lc)?)
            } else {
                None
            },
        })
    }

    /// Mean and standard deviation of the latent posterior.
    fn forward(&self, xs: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let mut xs = self.conv_in.forward(xs)?;
        for block in &self.down {
            xs = block.forward(&xs)?;
        }
        let xs = self.mid.forward(&xs)?;
        let xs = self.norm_out.forward_silu(&xs)?;
        let mut params = self.conv_out.forward(&xs)?;
        if let Some(q) = &self.quant_conv {
            params = q.forward(&params)?;
        }
        let halves = params.chunk(2, 1)?;
        // diffusers clamps the log-variance to [-30, 20].
        let std = (halves[1].clamp(-30f32, 20f32)? * 0.5)?.exp()?;
        Ok((halves[0].clone(), std))
    }
}

struct Decoder {
    post_quant_conv: Option<Conv2d>,
    conv_in: Conv2d,
    mid: MidBlock,
    up: Vec<UpDecoderBlock>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn new(vb: VarBuilder, c: &VaeConfig) -> candle_core::Result<Self> {
        let rev: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let d = vb.pp("decoder");
        let up = (0..rev.len())
            .map(|i| {
                let vb = d.pp("up_blocks").pp(i);
                let cin = if i > 0 { rev[i - 1] } else { rev[0] };
                let last = i + 1 == rev.len();
                let layers = c.layers_per_block + 1;
                Ok(UpDecoderBlock {
                    resnets: resnets(vb.clone(), cin, rev[i], layers, c.norm_num_groups)?,
                    upsample: if last {
                        None
                    } else {
                        Some(Upsample2D::new(vb.pp("upsamplers").pp(0), rev[i])?)
                    },
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let lc = c.latent_channels;
        let first = c.block_out_channels[0];
        Ok(Self {
            post_quant_conv: if c.use_post_quant_conv {
                Some(conv1(vb.pp("post_quant_conv"), lc)?)
            } else {
                None
            },
            conv_in: conv3(d.pp("conv_in"), lc, rev[0])?,
            mid: MidBlock::new(d.pp("mid_block"), rev[0], c.norm_num_groups)?,
            up,
            norm_out: GroupNorm::new(d.pp("conv_norm_out"), c.norm_num_groups, first, 1e-6)?,
            conv_out: conv3(d.pp("conv_out"), first, c.out_channels)?,
        })
    }

    fn forward(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        let z = match &self.post_quant_conv {
            Some(p) => p.forward(z)?,
            None => z.clone(),
        };
        let mut xs = self.mid.forward(&self.conv_in.forward(&z)?)?;
        for block in &self.up {
            xs = block.forward(&xs)?;
        }
        let xs = self.norm_out.forward_silu(&xs)?;
        self.conv_out.forward(&xs)
    }
}

/// A loaded VAE with its latent scaling.
pub(crate) struct Vae {
    encoder: Encoder,
    decoder: Decoder,
    /// Its config.
    pub config: VaeConfig,
    /// Bytes of weights held.
    pub weight_bytes: u64,
}

impl Vae {
    /// Loads `vae/` with an already checked config.
    pub(crate) fn load(folder: &ModelFolder, config: VaeConfig, device: &Device) -> Result<Self> {
        let store = WeightStore::open(&folder.weight_files("vae")?)?;
        let vb = store.var_builder(device);
        let encoder = Encoder::new(vb.clone(), &config).map_err(|e| store.explain(e))?;
        let decoder = Decoder::new(vb, &config).map_err(|e| store.explain(e))?;
        Ok(Self {
            encoder,
            decoder,
            config,
            weight_bytes: store.loaded_bytes(),
        })
    }

    /// Pixels in [-1, 1] to the latent posterior `(mean, std)`, both already
    /// shifted and scaled into the UNet's latent space.
    pub(crate) fn encode(&self, pixels: &Tensor) -> Result<(Tensor, Tensor)> {
        let (mean, std) = self.encoder.forward(pixels)?;
        let s = self.config.scaling_factor;
        let shift = self.config.shift_factor.unwrap_or(0.0);
        Ok((((mean - shift)? * s)?, (std * s)?))
    }

    /// UNet-space latents to pixels in (about) [-1, 1].
    pub(crate) fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let shift = self.config.shift_factor.unwrap_or(0.0);
        let z = ((latents / self.config.scaling_factor)? + shift)?;
        Ok(self.decoder.forward(&z)?)
    }

    /// How many images one [`Vae::encode`] of `height × width` pixels
    /// should take at once to stay within [`ACTIVATION_BUDGET_BYTES`] (at
    /// least 1). The encoder's levels run from full resolution down, block
    /// `i` at `1/2^i` of the side.
    pub(crate) fn encode_images_per_call(&self, height: usize, width: usize) -> usize {
        let ch = &self.config.block_out_channels;
        let levels = (0..ch.len()).map(|i| {
            // Block `i` reads block `i - 1`'s channels (downsampled) and
            // writes its own.
            let c = ch[i].max(ch[i.saturating_sub(1)]);
            c * (height >> i).max(1) * (width >> i).max(1)
        });
        images_per_call(levels.max().unwrap_or(0))
    }

    /// How many images one [`Vae::decode`] of `height × width` *latents*
    /// should take at once to stay within [`ACTIVATION_BUDGET_BYTES`] (at
    /// least 1). The decoder's levels run from latent resolution up, block
    /// `i` at `2^i` times the latent side, so the largest maps are the last
    /// levels' (256 channels at 512 × 512 for SD 1.5 at 512 × 512: 256 MiB
    /// each in f32).
    pub(crate) fn decode_images_per_call(&self, height: usize, width: usize) -> usize {
        let rev: Vec<usize> = self
            .config
            .block_out_channels
            .iter()
            .rev()
            .copied()
            .collect();
        let levels = (0..rev.len()).map(|i| {
            // Block `i` reads block `i - 1`'s channels (upsampled to this
            // level by block `i - 1`) and writes its own.
            let c = rev[i].max(rev[i.saturating_sub(1)]);
            c * (height << i) * (width << i)
        });
        images_per_call(levels.max().unwrap_or(0))
    }
}

/// Activation memory one VAE call may use, estimated as
/// [`LIVE_MAPS`] × the largest feature map × 4 bytes (f32) per image. The
/// pipeline splits a batch's VAE encode and decode into calls of at most
/// this much, so a batch's peak stays that of about one budget above the
/// weights however many images it holds: SD 1.5 at 512 × 512 (an estimated
/// 1 GiB an image) decodes one image per call, SD 1.5 at 256 × 256 four,
/// the tiny test fixtures a whole batch. One decode per image costs little
/// next to the `2 × steps` UNet rows of the same image, so the batching
/// speed-up forgone there is small, while a decode of 4 SD images at once
/// would hold 4 GiB more.
pub(crate) const ACTIVATION_BUDGET_BYTES: usize = 1 << 30;

/// Feature maps of the largest level alive at once in a VAE call, for the
/// memory estimate: inside a resnet its input (kept for the residual), the
/// normalised input, the first convolution's output, and the second
/// normalisation or convolution being written.
const LIVE_MAPS: usize = 4;

/// Images per VAE call when the largest feature map has `floats` values
/// per image.
fn images_per_call(floats: usize) -> usize {
    let per_image = LIVE_MAPS * floats * std::mem::size_of::<f32>();
    (ACTIVATION_BUDGET_BYTES / per_image.max(1)).max(1)
}
