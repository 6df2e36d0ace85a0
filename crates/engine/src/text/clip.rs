//! The CLIP text transformer, written here rather than taken from
//! candle-transformers because candle's `ClipTextConfig` fields are private
//! (so it cannot be built from a folder's `config.json`), it hard-codes the
//! activation per preset (tanh-approximated GELU where OpenCLIP's SD 2.x
//! encoder uses exact GELU) and it expects the `text_model.` prefix that
//! recent transformers versions no longer write.
//!
//! Port of transformers' `CLIPTextTransformer`:
//! <https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/clip/modeling_clip.py#L1000>.

use candle_core::{IndexOp, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use serde::Deserialize;

use crate::error::{EngineError, Result};
use crate::ops::attention::{Mask, attention};
use crate::ops::linear::{Linear, linear_f32, linear_f32_no_bias};

/// The fields of a `CLIPTextConfig` the engine uses.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ClipTextConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the transformer.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Positions (77 for every Stable Diffusion).
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    /// `quick_gelu` (OpenAI CLIP, SD 1.x) or `gelu` (OpenCLIP, SD 2.x).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Layer-norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Width of `text_projection` (CLIPTextModelWithProjection, SDXL's
    /// second encoder); `None` for a plain CLIPTextModel.
    #[serde(default)]
    pub projection_dim: Option<usize>,
    /// `architectures` from the config.
    #[serde(default)]
    pub architectures: Vec<String>,
}

fn default_positions() -> usize {
    77
}
fn default_act() -> String {
    "quick_gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    QuickGelu,
    Gelu,
    GeluTanh,
}

impl Activation {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "quick_gelu" => Ok(Self::QuickGelu),
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            other => Err(EngineError::UnknownArchitecture {
                detail: format!(
                    "CLIP text encoder activation `{other}` (supported: quick_gelu, gelu, gelu_new)"
                ),
            }),
        }
    }

    fn apply(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            Self::Gelu => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
        }
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(vb: VarBuilder, cfg: &ClipTextConfig) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            q: linear_f32(h, h, vb.pp("q_proj"))?,
            k: linear_f32(h, h, vb.pp("k_proj"))?,
            v: linear_f32(h, h, vb.pp("v_proj"))?,
            out: linear_f32(h, h, vb.pp("out_proj"))?,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
        })
    }

    /// Causal self-attention on the fused kernel ([`crate::ops::attention`]).
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l, h) = xs.dims3()?;
        let split = |t: Tensor| {
            t.reshape((b, l, self.heads, self.head_dim))?
                .transpose(1, 2)
        };
        let scale = (self.head_dim as f64).powf(-0.5);
        let q = split(self.q.forward(xs)?)?;
        let k = split(self.k.forward(xs)?)?;
        let v = split(self.v.forward(xs)?)?;
        let ctx = attention(&q, &k, &v, scale, Mask::Causal)?
            .transpose(1, 2)?
            .reshape((b, l, h))?;
        self.out.forward(&ctx)
    }
}

struct Layer {
    ln1: LayerNorm,
    attn: Attention,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl Layer {
    fn new(vb: VarBuilder, cfg: &ClipTextConfig, act: Activation) -> candle_core::Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            ln1: candle_nn::layer_norm(h, cfg.layer_norm_eps, vb.pp("layer_norm1"))?,
            attn: Attention::new(vb.pp("self_attn"), cfg)?,
            ln2: candle_nn::layer_norm(h, cfg.layer_norm_eps, vb.pp("layer_norm2"))?,
            fc1: linear_f32(h, i, vb.pp("mlp").pp("fc1"))?,
            fc2: linear_f32(i, h, vb.pp("mlp").pp("fc2"))?,
            act,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let xs = (xs + self.attn.forward(&self.ln1.forward(xs)?)?)?;
        let hidden = self
            .act
            .apply(&self.fc1.forward(&self.ln2.forward(&xs)?)?)?;
        xs + self.fc2.forward(&hidden)?
    }
}

/// Outputs of one CLIP text forward pass.
pub(crate) struct ClipOutput {
    /// Final hidden states after the final layer norm, `[B, L, H]` (with a
    /// clip skip, those of the last layer run).
    pub last: Tensor,
    /// Hidden states entering the last layer run, `[B, L, H]` (SDXL conditions on these).
    pub penultimate: Tensor,
    /// `text_projection` of the final state at the end-of-text token, `[B, P]`
    /// (with-projection models only).
    pub pooled: Option<Tensor>,
}

/// CLIP's text transformer.
pub(crate) struct ClipTextModel {
    token_embedding: Embedding,
    position_embedding: Tensor,
    layers: Vec<Layer>,
    final_ln: LayerNorm,
    projection: Option<Linear>,
}

impl ClipTextModel {
    /// Builds from weights with or without the `text_model.` prefix.
    pub(crate) fn new(vb: VarBuilder, cfg: &ClipTextConfig) -> candle_core::Result<Self> {
        let act = Activation::parse(&cfg.hidden_act)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let projection = match cfg.projection_dim {
            Some(p)
                if cfg
                    .architectures
                    .iter()
                    .any(|a| a.ends_with("WithProjection")) =>
            {
                Some(linear_f32_no_bias(
                    cfg.hidden_size,
                    p,
                    vb.pp("text_projection"),
                )?)
            }
            _ => None,
        };
        let vb = if vb.contains_tensor("text_model") {
            vb.pp("text_model")
        } else {
            vb
        };
        let emb = vb.pp("embeddings");
        let token_embedding =
            candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, emb.pp("token_embedding"))?;
        let position_embedding = emb.get(
            (cfg.max_position_embeddings, cfg.hidden_size),
            "position_embedding.weight",
        )?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(vb.pp("encoder").pp("layers").pp(i), cfg, act))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let final_ln = candle_nn::layer_norm(
            cfg.hidden_size,
            cfg.layer_norm_eps,
            vb.pp("final_layer_norm"),
        )?;
        Ok(Self {
            token_embedding,
            position_embedding,
            layers,
            final_ln,
            projection,
        })
    }

    /// Checks the activation name before any weight is read.
    pub(crate) fn validate(cfg: &ClipTextConfig) -> Result<()> {
        Activation::parse(&cfg.hidden_act).map(|_| ())
    }

    /// Number of transformer layers.
    pub(crate) fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Encodes `ids` (`[B, L]`, u32) with CLIP's causal mask. `eos` is the
    /// end-of-text id; the pooled output is taken at its first occurrence
    /// (transformers' rule for configs with a real `eos_token_id`).
    ///
    /// `clip_skip` (A1111's "Clip skip", at least 1) stops after the first
    /// `layers − (clip_skip − 1)` layers: 1 runs them all, 2 takes the
    /// penultimate layer's output, and so on; the final layer norm is
    /// applied to whichever output is taken, as A1111 does
    /// (`hidden_states[-clip_skip]` then `final_layer_norm`).
    pub(crate) fn forward(
        &self,
        ids: &Tensor,
        eos: u32,
        clip_skip: usize,
    ) -> candle_core::Result<ClipOutput> {
        let (_, l) = ids.dims2()?;
        let run = self.layers.len() + 1 - clip_skip.clamp(1, self.layers.len());
        let pos = self.position_embedding.i(..l)?;
        let mut xs = self.token_embedding.forward(ids)?.broadcast_add(&pos)?;
        let mut penultimate = xs.clone();
        for layer in &self.layers[..run] {
            penultimate = xs.clone();
            xs = layer.forward(&xs)?;
        }
        let last = self.final_ln.forward(&xs)?;
        let pooled = match &self.projection {
            None => None,
            Some(proj) => {
                let rows = ids.to_vec2::<u32>()?;
                let picked = rows
                    .iter()
                    .enumerate()
                    .map(|(b, row)| {
                        let at = row.iter().position(|&t| t == eos).unwrap_or(l - 1);
                        last.i((b, at))?.unsqueeze(0)
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Some(proj.forward(&Tensor::cat(&picked, 0)?)?)
            }
        };
        Ok(ClipOutput {
            last,
            penultimate,
            pooled,
        })
    }
}
