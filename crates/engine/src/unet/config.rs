//! diffusers' `unet/config.json`, checked against what [`super::UNet`] implements.
//!
//! Supported: down blocks `CrossAttnDownBlock2D`/`DownBlock2D` mirrored by
//! `CrossAttnUpBlock2D`/`UpBlock2D`, a `UNetMidBlock2DCrossAttn`, positional
//! time embedding and SiLU (the Stable Diffusion 1.x/2.x family and the
//! bundled pixel model). Anything else (class or addition embeddings as in
//! SDXL, scale-shift time conditioning, other block types) is rejected as
//! [`EngineError::UnknownArchitecture`] before any weight is read, since
//! ignoring it would silently produce wrong images.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{EngineError, Result};

/// An integer or one integer per block, as diffusers allows.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum PerBlock {
    /// The same value for every block.
    One(usize),
    /// One value per down block.
    Each(Vec<usize>),
}

impl PerBlock {
    fn get(&self, i: usize) -> usize {
        match self {
            PerBlock::One(v) => *v,
            PerBlock::Each(v) => v.get(i).copied().unwrap_or(*v.last().unwrap_or(&1)),
        }
    }
}

/// The fields of diffusers' `UNet2DConditionModel` config the engine reads.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct UNetConfig {
    #[serde(default)]
    _class_name: Option<String>,
    /// Input channels (4 for latent models, 3 for pixel models, 9 for
    /// inpainting models).
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Native latent (or pixel) side.
    #[serde(default)]
    pub sample_size: Option<usize>,
    pub(crate) block_out_channels: Vec<usize>,
    down_block_types: Vec<String>,
    up_block_types: Vec<String>,
    #[serde(default)]
    mid_block_type: Option<String>,
    #[serde(default = "two")]
    pub(crate) layers_per_block: usize,
    #[serde(default)]
    attention_head_dim: Option<PerBlock>,
    #[serde(default)]
    num_attention_heads: Option<PerBlock>,
    /// Width of the text embeddings attended to.
    pub cross_attention_dim: PerBlock,
    #[serde(default)]
    transformer_layers_per_block: Option<PerBlock>,
    #[serde(default = "groups")]
    pub(crate) norm_num_groups: usize,
    #[serde(default = "eps")]
    pub(crate) norm_eps: f64,
    #[serde(default = "yes")]
    pub(crate) flip_sin_to_cos: bool,
    #[serde(default)]
    pub(crate) freq_shift: f64,
    #[serde(default = "one")]
    pub(crate) downsample_padding: usize,
    #[serde(default = "onef")]
    pub(crate) mid_block_scale_factor: f64,
    #[serde(default)]
    pub(crate) use_linear_projection: bool,
    #[serde(default)]
    pub(crate) center_input_sample: bool,
    #[serde(default)]
    addition_embed_type: Option<String>,
    #[serde(default)]
    addition_time_embed_dim: Option<usize>,
    #[serde(default)]
    projection_class_embeddings_input_dim: Option<usize>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

fn two() -> usize {
    2
}
fn one() -> usize {
    1
}
fn onef() -> f64 {
    1.0
}
fn groups() -> usize {
    32
}
fn eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}

impl UNetConfig {
    /// Reads and checks `unet/config.json`.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let cfg: Self = crate::loader::read_json(path)?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Number of times the UNet halves the resolution.
    #[allow(dead_code)]
    pub(crate) fn downsamples(&self) -> usize {
        self.block_out_channels.len().saturating_sub(1)
    }

    fn check(&self) -> Result<()> {
        let bad = |detail: String| Err(EngineError::UnknownArchitecture { detail });
        if let Some(c) = &self._class_name
            && c != "UNet2DConditionModel"
        {
            return bad(format!(
                "UNet class `{c}` (supported: UNet2DConditionModel)"
            ));
        }
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad(format!(
                "UNet with {n} block widths, {} down and {} up blocks",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        for (i, down) in self.down_block_types.iter().enumerate() {
            let up = &self.up_block_types[n - 1 - i];
            let ok = matches!(
                (down.as_str(), up.as_str()),
                ("CrossAttnDownBlock2D", "CrossAttnUpBlock2D") | ("DownBlock2D", "UpBlock2D")
            );
            if !ok {
                return bad(format!(
                    "UNet down block {i} `{down}` with up block `{up}` (supported: \
                     CrossAttnDownBlock2D/CrossAttnUpBlock2D and DownBlock2D/UpBlock2D, mirrored)"
                ));
            }
        }
        match self.mid_block_type.as_deref() {
            None | Some("UNetMidBlock2DCrossAttn") => {}
            Some(other) => {
                return bad(format!(
                    "UNet mid block `{other}` (supported: UNetMidBlock2DCrossAttn)"
                ));
            }
        }
        if let PerBlock::Each(_) = self.cross_attention_dim {
            return bad("per-block cross_attention_dim".into());
        }
        match self.addition_embed_type.as_deref() {
            None => {}
            Some("text_time")
                if self.addition_time_embed_dim.is_some()
                    && self.projection_class_embeddings_input_dim.is_some() => {}
            Some(other) => {
                return bad(format!(
                    "UNet addition_embed_type `{other}` (supported: none, or SDXL's text_time \
                     with addition_time_embed_dim and projection_class_embeddings_input_dim)"
                ));
            }
        }
        // Settings the UNet does not implement; each must hold its default.
        let defaults: [(&str, Value); 19] = [
            ("class_embed_type", Value::Null),
            ("encoder_hid_dim", Value::Null),
            ("time_cond_proj_dim", Value::Null),
            ("time_embedding_type", Value::from("positional")),
            ("resnet_time_scale_shift", Value::from("default")),
            ("act_fn", Value::from("silu")),
            ("only_cross_attention", Value::from(false)),
            ("dual_cross_attention", Value::from(false)),
            ("conv_in_kernel", Value::from(3)),
            ("conv_out_kernel", Value::from(3)),
            ("num_class_embeds", Value::Null),
            ("encoder_hid_dim_type", Value::Null),
            ("time_embedding_dim", Value::Null),
            ("time_embedding_act_fn", Value::Null),
            ("timestep_post_act", Value::Null),
            ("resnet_skip_time_act", Value::from(false)),
            ("resnet_out_scale_factor", Value::from(1.0)),
            ("attention_type", Value::from("default")),
            ("cross_attention_norm", Value::Null),
        ];
        for (key, default) in defaults {
            if let Some(v) = self.rest.get(key)
                && !same_setting(v, &default)
            {
                return bad(format!(
                    "UNet setting `{key}: {v}` (only `{default}` is supported)"
                ));
            }
        }
        if self.layers_per_block == 0 {
            return bad("UNet with layers_per_block 0".into());
        }
        Ok(())
    }

    /// SDXL's added conditioning: `(addition_time_embed_dim,
    /// projection_class_embeddings_input_dim)` when `addition_embed_type`
    /// is `text_time`.
    pub(crate) fn text_time(&self) -> Option<(usize, usize)> {
        match self.addition_embed_type.as_deref() {
            Some("text_time") => Some((
                self.addition_time_embed_dim?,
                self.projection_class_embeddings_input_dim?,
            )),
            _ => None,
        }
    }

    /// Whether this is an inpainting UNet: its input is the latents, a
    /// one-channel mask and the masked image's latents (`in_channels =
    /// 2·out_channels + 1`, 9 for Stable Diffusion's inpainting models).
    pub(crate) fn inpainting(&self) -> bool {
        self.in_channels == 2 * self.out_channels + 1
    }

    /// Width of the text embeddings the UNet attends to.
    pub(crate) fn context_dim(&self) -> usize {
        self.cross_attention_dim.get(0)
    }

    /// Attention heads of block `i` (diffusers' legacy `attention_head_dim`
    /// means heads: `num_attention_heads = num_attention_heads or
    /// attention_head_dim`).
    pub(crate) fn heads(&self, i: usize) -> usize {
        self.num_attention_heads
            .as_ref()
            .or(self.attention_head_dim.as_ref())
            .map_or(8, |h| h.get(i))
    }

    /// Transformer layers in block `i`.
    pub(crate) fn depth(&self, i: usize) -> usize {
        self.transformer_layers_per_block
            .as_ref()
            .map_or(1, |d| d.get(i))
    }

    /// Whether down block `i` has cross-attention.
    pub(crate) fn has_attention(&self, i: usize) -> bool {
        self.down_block_types[i] == "CrossAttnDownBlock2D"
    }
}

/// Config values compare as JSON, except that numbers compare by value
/// (`1` and `1.0` are the same setting).
fn same_setting(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}
