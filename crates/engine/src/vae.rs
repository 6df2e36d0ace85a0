//! The KL autoencoder that maps between latents and pixels.
//!
//! Built from candle's public UNet blocks rather than its `AutoEncoderKL`,
//! because that type hides the encoder's mean and standard deviation and
//! samples the posterior from candle's device-global RNG; image-to-image
//! must sample it from each image's own generator (see [`crate::pipeline`]).
//! The mid-block self-attention is our own (see [`SelfAttention`]).
//! The layer structure follows candle's `vae.rs` (itself a port of
//! diffusers' `AutoencoderKL`), with the scaling and shift factors of
//! `vae/config.json` applied here, since candle's `decode` does not.

use candle_core::{Device, Module, Tensor};
use candle_nn::Linear;
use candle_nn::{Conv2d, Conv2dConfig, GroupNorm, VarBuilder};
use candle_transformers::models::stable_diffusion::resnet::{ResnetBlock2D, ResnetBlock2DConfig};
use candle_transformers::models::stable_diffusion::unet_2d_blocks::{
    DownEncoderBlock2D, DownEncoderBlock2DConfig, UpDecoderBlock2D, UpDecoderBlock2DConfig,
};
use serde::Deserialize;

use crate::error::{EngineError, Result};
use crate::loader::{ModelFolder, WeightStore, read_json};
use crate::ops::attention::{Mask, attention};

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
    let cfg = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    candle_nn::conv2d(cin, cout, 3, cfg, vb)
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
        let lin = |name: &str| candle_nn::linear(ch, ch, vb.pp(name));
        Ok(Self {
            norm: candle_nn::group_norm(groups, ch, 1e-6, vb.pp("group_norm"))?,
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
    down: Vec<DownEncoderBlock2D>,
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
                let cfg = DownEncoderBlock2DConfig {
                    num_layers: c.layers_per_block,
                    resnet_eps: 1e-6,
                    resnet_groups: c.norm_num_groups,
                    add_downsample: i + 1 < ch.len(),
                    downsample_padding: 0,
                    ..Default::default()
                };
                let cin = if i > 0 { ch[i - 1] } else { ch[0] };
                DownEncoderBlock2D::new(e.pp("down_blocks").pp(i), cin, ch[i], cfg)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let lc = c.latent_channels;
        Ok(Self {
            conv_in: conv3(e.pp("conv_in"), c.in_channels, ch[0])?,
            down,
            mid: MidBlock::new(e.pp("mid_block"), last, c.norm_num_groups)?,
            norm_out: candle_nn::group_norm(c.norm_num_groups, last, 1e-6, e.pp("conv_norm_out"))?,
            conv_out: conv3(e.pp("conv_out"), last, 2 * lc)?,
            quant_conv: if c.use_quant_conv {
                Some(candle_nn::conv2d(
                    2 * lc,
                    2 * lc,
                    1,
                    Default::default(),
                    vb.pp("quant_conv"),
                )?)
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
        let xs = candle_nn::ops::silu(&self.norm_out.forward(&xs)?)?;
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
    up: Vec<UpDecoderBlock2D>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn new(vb: VarBuilder, c: &VaeConfig) -> candle_core::Result<Self> {
        let rev: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let d = vb.pp("decoder");
        let up = (0..rev.len())
            .map(|i| {
                let cfg = UpDecoderBlock2DConfig {
                    num_layers: c.layers_per_block + 1,
                    resnet_eps: 1e-6,
                    resnet_groups: c.norm_num_groups,
                    add_upsample: i + 1 < rev.len(),
                    ..Default::default()
                };
                let cin = if i > 0 { rev[i - 1] } else { rev[0] };
                UpDecoderBlock2D::new(d.pp("up_blocks").pp(i), cin, rev[i], cfg)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let lc = c.latent_channels;
        let first = c.block_out_channels[0];
        Ok(Self {
            post_quant_conv: if c.use_post_quant_conv {
                Some(candle_nn::conv2d(
                    lc,
                    lc,
                    1,
                    Default::default(),
                    vb.pp("post_quant_conv"),
                )?)
            } else {
                None
            },
            conv_in: conv3(d.pp("conv_in"), lc, rev[0])?,
            mid: MidBlock::new(d.pp("mid_block"), rev[0], c.norm_num_groups)?,
            up,
            norm_out: candle_nn::group_norm(c.norm_num_groups, first, 1e-6, d.pp("conv_norm_out"))?,
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
        let xs = candle_nn::ops::silu(&self.norm_out.forward(&xs)?)?;
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
}
