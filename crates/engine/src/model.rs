//! A loaded model: the public handle the rest of Easel uses.
//!
//! CONTRACT (other crates compile against these signatures; keep them):
//! `Model::load(dir, &LoadOptions)`, `Model::info()`, `Model::generate(...)`.
//!
//! Loading reads the folder's configs first and rejects what the engine
//! cannot run (unknown architecture, unsupported UNet features) before
//! mapping any weights; it then plans the LoRAs of [`LoadOptions::loras`]
//! against the weight names (rejecting a LoRA that does not fit, see
//! [`crate::loader::lora`]), builds the text encoder, the UNet and (for
//! latent models) the VAE with the LoRAs merged into their weights, and
//! names the model by the content hash of its weight files (see
//! [`crate::loader::hash`]; the LoRAs are in [`Model::loras`]).
//!
//! An optional `easel.json` at the folder root overrides the defaults the
//! engine otherwise derives from the configs:
//! `{"default_steps": 20, "default_guidance": 7.5, "default_width": 512,
//! "default_height": 512, "max_side": 1024}` (every key optional).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use easel_core::{SamplerKind, Size, limits};
use serde::Deserialize;

pub use crate::device::DeviceChoice;
use crate::error::{EngineError, Result};
use crate::loader::hash::{HashCache, content_hash};
use crate::loader::inspect::{Configs, read_configs, weight_files};
use crate::loader::lora::{LoraComponent, LoraPlan, LoraSet};
use crate::loader::{ModelFolder, read_json, select_device};
use crate::ops::bf16::{Bf16Kernel, Compute, building_with};
use crate::request::{CancelToken, GeneratedImage, ImageRequest, ProgressSink};
use crate::sampling::{NoiseSource, SchedulerConfig};
use crate::text::TextEncoder;
use crate::unet::UNet;
use crate::vae::Vae;

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Device to compute on. Default: CPU.
    pub device: DeviceChoice,
    /// What the UNet's and the VAE's convolutions and linear layers
    /// compute in. Default: f32.
    pub precision: Precision,
    /// Name to report; default: the folder's name.
    pub name: Option<String>,
    /// Where per-file content hashes are cached. Default: a sidecar file
    /// `.easel-content-hash.json` in the model folder (skipped silently
    /// when the folder is read-only).
    pub hash_cache: HashCache,
    /// LoRA adapters merged into the weights as they are read, each at its
    /// weight. Default: none (the base model).
    pub loras: LoraSet,
}

/// The accepted text forms of [`Precision`], for error messages.
pub const PRECISION_FORMS: &str = "`f32` or `bf16`";

/// What the heavy layers compute in (the server's `pool.precision`,
/// `--precision` on the command line).
///
/// `Bf16` rounds the weights of the UNet's and the VAE's convolutions and
/// linear layers to bf16 once at load (half their memory) and their inputs
/// on the fly, and accumulates in f32 (see [`crate::ops::bf16`]); norms,
/// attention, the text encoder and the sampler stay f32. It needs a CPU
/// with AMX-BF16 or AVX512-BF16: elsewhere (other CPUs, other devices) the
/// model loads in f32 and a warning says so, so one configuration serves a
/// mixed fleet.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// f32 throughout (default).
    #[default]
    F32,
    /// bf16 products with f32 accumulation where the CPU has them.
    Bf16,
}

impl Precision {
    /// How the layers compute for this precision on `device`, given the
    /// CPU's bf16 kernel (`kernel`, normally [`Bf16Kernel::detect`]):
    /// `None` for `Bf16` where there is no kernel to run it, with the
    /// reason, so the caller can warn and load in f32.
    pub fn compute(
        self,
        device: DeviceChoice,
        kernel: Option<Bf16Kernel>,
    ) -> std::result::Result<Compute, String> {
        match (self, device, kernel) {
            (Precision::F32, _, _) => Ok(Compute::F32),
            (Precision::Bf16, DeviceChoice::Cpu, Some(k)) => Ok(Compute::Bf16(k)),
            (Precision::Bf16, DeviceChoice::Cpu, None) => {
                Err("this CPU has neither AMX-BF16 nor AVX512-BF16".into())
            }
            (Precision::Bf16, DeviceChoice::Cuda(_), _) => {
                Err("bf16 is implemented for the CPU only so far".into())
            }
        }
    }
}

impl std::fmt::Display for Precision {
    /// `f32` or `bf16`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// A precision string that is none of [`PRECISION_FORMS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not a precision: use {PRECISION_FORMS}")]
pub struct ParsePrecisionError {
    /// The text as given.
    pub given: String,
}

impl std::str::FromStr for Precision {
    type Err = ParsePrecisionError;

    /// `f32` or `bf16`, lower case.
    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        match text {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(ParsePrecisionError {
                given: text.to_string(),
            }),
        }
    }
}

/// Supported architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Stable Diffusion 1.x (CLIP ViT-L/14 text encoder, 4-channel latent VAE).
    Sd1,
    /// Stable Diffusion 2.x (OpenCLIP ViT-H text encoder; epsilon or v-prediction).
    Sd2,
    /// Stable Diffusion XL (two text encoders, pooled embeddings, size conditioning).
    Sdxl,
    /// A UNet in pixel space with no VAE (the bundled model).
    Pixel,
}

/// What the rest of Easel needs to know about a loaded model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    /// Name reported by the API.
    pub name: String,
    /// The folder it was loaded from.
    pub path: PathBuf,
    /// Architecture.
    pub architecture: Architecture,
    /// Content hash of the weight files, `blake3:<hex>`.
    pub content_hash: String,
    /// Size used when a request names none.
    pub default_size: Size,
    /// Largest width or height accepted.
    pub max_side: u32,
    /// Width and height must be multiples of this.
    pub size_multiple: u32,
    /// Steps used when a request names none.
    pub default_steps: u32,
    /// Guidance used when a request names none.
    pub default_guidance: f32,
    /// Sampler from the folder's scheduler config.
    pub default_sampler: SamplerKind,
    /// Bytes of weights held in memory once loaded. LoRAs are merged into
    /// the weights in place, so a model with LoRAs holds as many bytes as
    /// its base model.
    pub weight_bytes: u64,
    /// Whether the UNet is an inpainting UNet (SD 1.x/2.x/SDXL inpainting:
    /// 9 input channels, the latents plus a mask and a masked image's
    /// latents). Such a model repaints the masked part of an init image
    /// whatever the mask; without a mask (or an init image) it repaints
    /// everything. Ordinary models inpaint by latent blending. Default
    /// (absent when deserialised): false.
    #[serde(default)]
    pub inpainting: bool,
}

/// Optional per-model overrides (`easel.json`).
#[derive(Debug, Default, Deserialize)]
struct Overrides {
    default_steps: Option<u32>,
    default_guidance: Option<f32>,
    default_width: Option<u32>,
    default_height: Option<u32>,
    max_side: Option<u32>,
}

/// A loaded model, ready to generate. `Send + Sync`: one model may serve
/// several engine threads.
pub struct Model {
    info: ModelInfo,
    pub(crate) device: Device,
    pub(crate) text: TextEncoder,
    /// SDXL's second text encoder.
    pub(crate) text2: Option<TextEncoder>,
    /// SDXL: an empty negative prompt is all zeros, not an encoded "".
    pub(crate) force_zeros_for_empty_prompt: bool,
    pub(crate) unet: UNet,
    pub(crate) vae: Option<Vae>,
    pub(crate) scheduler: SchedulerConfig,
    /// The LoRAs merged into the weights.
    loras: LoraSet,
}

// A model is shared by engine threads: keep it `Send + Sync`.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Model>();
};

impl Model {
    /// Loads a diffusers folder.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Model> {
        let device = select_device(opts.device)?;
        let folder = ModelFolder::open(dir)?;
        // Configs first: reject what cannot run before reading weights.
        let configs = read_configs(&folder)?;
        let weight_files = weight_files(&folder, &configs)?;
        let Configs {
            unet: unet_cfg,
            vae: vae_cfg,
            scheduler,
            sdxl,
            architecture,
        } = configs;
        let overrides: Overrides = if dir.join("easel.json").is_file() {
            read_json(&dir.join("easel.json"))?
        } else {
            Overrides::default()
        };

        let mut components = vec![LoraComponent::Unet, LoraComponent::TextEncoder];
        if sdxl {
            components.push(LoraComponent::TextEncoder2);
        }
        // Every LoRA key is matched and shape-checked before any weight is read.
        let loras = LoraPlan::new(&opts.loras, &folder, &components)?;

        let text = TextEncoder::load(
            &folder,
            "text_encoder",
            "tokenizer",
            &device,
            loras.overlay(LoraComponent::TextEncoder),
        )?;
        let text2 = if sdxl {
            Some(TextEncoder::load(
                &folder,
                "text_encoder_2",
                "tokenizer_2",
                &device,
                loras.overlay(LoraComponent::TextEncoder2),
            )?)
        } else {
            None
        };
        let text_width = text.hidden_width() + text2.as_ref().map_or(0, |t| t.hidden_width());
        if let (Some(t2), Some((time_dim, input_dim))) = (&text2, unet_cfg.text_time()) {
            let pooled = t2.pooled_width().unwrap_or(0);
            if pooled + 6 * time_dim != input_dim {
                return Err(EngineError::InvalidConfig {
                    path: folder.file("unet", "config.json"),
                    detail: format!(
                        "projection_class_embeddings_input_dim is {input_dim}, but the second \
                         text encoder pools to {pooled} and 6 time ids embed to {}",
                        6 * time_dim
                    ),
                });
            }
        }
        if text_width != unet_cfg.context_dim() {
            return Err(EngineError::InvalidConfig {
                path: folder.file("unet", "config.json"),
                detail: format!(
                    "cross_attention_dim is {} but the text encoder makes {}-wide embeddings",
                    unet_cfg.context_dim(),
                    text_width
                ),
            });
        }
        let scale = vae_cfg.as_ref().map_or(1, |v| v.scale_factor()) as u32;
        let native = unet_cfg.sample_size.unwrap_or(64) as u32 * scale;
        let compute = opts
            .precision
            .compute(opts.device, Bf16Kernel::detect())
            .unwrap_or_else(|why| {
                tracing::warn!(
                    precision = %opts.precision, device = %opts.device,
                    "{why}: computing in f32"
                );
                Compute::F32
            });
        // The UNet's and the VAE's layers pick their precision up from the
        // build (see `building_with`).
        let (unet, vae) = building_with(compute, || -> Result<_> {
            let unet = UNet::load(
                &folder,
                unet_cfg,
                &device,
                loras.overlay(LoraComponent::Unet),
            )?;
            let vae = match vae_cfg {
                Some(cfg) => Some(Vae::load(&folder, cfg, &device)?),
                None => None,
            };
            Ok((unet, vae))
        })?;

        let content_hash = content_hash(dir, &weight_files, &opts.hash_cache)?;

        let round8 = |v: u32| (v / 8).max(1) * 8;
        let default_size = Size {
            width: round8(overrides.default_width.unwrap_or(native)),
            height: round8(overrides.default_height.unwrap_or(native)),
        };
        let max_side = overrides.max_side.unwrap_or(2 * native).clamp(
            default_size.width.max(default_size.height),
            limits::MAX_SIDE,
        );
        let name = opts.name.clone().unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into())
        });
        let weight_bytes =
            text.weight_bytes + unet.weight_bytes + vae.as_ref().map_or(0, |v| v.weight_bytes);
        let info = ModelInfo {
            name,
            path: dir.to_path_buf(),
            architecture,
            content_hash,
            default_size,
            max_side,
            size_multiple: 8,
            default_steps: overrides.default_steps.unwrap_or(20),
            default_guidance: overrides.default_guidance.unwrap_or(7.5),
            default_sampler: scheduler.default_sampler(),
            weight_bytes,
            inpainting: vae.is_some() && unet.config.inpainting(),
        };
        tracing::info!(
            name = %info.name, architecture = ?info.architecture, hash = %info.content_hash,
            weight_bytes, compute = ?compute, loras = %opts.loras.fingerprint(),
            "model loaded"
        );
        let force_zeros_for_empty_prompt = folder
            .index
            .get("force_zeros_for_empty_prompt")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(sdxl);
        Ok(Model {
            info,
            device,
            text,
            text2,
            force_zeros_for_empty_prompt,
            unet,
            vae,
            scheduler,
            loras: opts.loras.clone(),
        })
    }

    /// The LoRAs merged into this model's weights, with their weights
    /// (empty for the base model). [`ModelInfo::content_hash`] names the
    /// base weights only; [`LoraSet::fingerprint`] names the combination.
    pub fn loras(&self) -> &LoraSet {
        &self.loras
    }

    /// What the model is.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Generates one image per request. All requests must share size, steps,
    /// sampler, schedule, guidance, strength and clip skip (the batch key);
    /// each has its own seed and generator.
    pub fn generate(
        &self,
        requests: &[ImageRequest],
        progress: &mut dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<Vec<GeneratedImage>> {
        let seeds: Vec<u64> = requests.iter().map(|r| r.seed).collect();
        let mut noise = crate::sampling::SeededNoise::new(&seeds, &self.device);
        self.generate_with_noise(requests, &mut noise, progress, cancel)
    }

    /// [`Model::generate`] with the noise supplied by the caller: image `i`
    /// takes its initial noise (and any later noise) from row `i` of what
    /// `noise` draws. Golden tests replay the reference implementation's
    /// noise through this.
    pub fn generate_with_noise(
        &self,
        requests: &[ImageRequest],
        noise: &mut dyn NoiseSource,
        progress: &mut dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<Vec<GeneratedImage>> {
        crate::pipeline::run(self, requests, noise, progress, cancel)
    }

    /// The plain text encoder output for `prompts`: `[B, L, D]`, each
    /// prompt taken literally and truncated to one sequence, as diffusers
    /// encodes it (for SDXL, both encoders' penultimate states side by
    /// side). The pipeline reads prompt syntax instead
    /// ([`Model::condition_prompts`]). For tests and tools.
    pub fn encode_prompts(&self, prompts: &[&str]) -> Result<Tensor> {
        Ok(crate::pipeline::condition(self, prompts, &[])?.0)
    }

    /// The conditioning the pipeline computes for `prompts` in
    /// AUTOMATIC1111's syntax (weights, `BREAK`, 75-token chunks) with
    /// `clip_skip` (as [`crate::ImageRequest::clip_skip`]): the UNet's
    /// context `[B, 77·k, D]`, every prompt padded to the batch's largest
    /// chunk count `k`, and SDXL's pooled embeddings `[B, P]`. For tests and
    /// tools.
    pub fn condition_prompts(
        &self,
        prompts: &[&str],
        clip_skip: Option<u32>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        use crate::pipeline::conditioning;
        let (skip, _) = conditioning::resolve_clip_skip(self, clip_skip)?;
        let (context, pooled, _) = conditioning::weighted_condition(self, prompts, &[], skip)?;
        Ok((context, pooled))
    }

    /// SDXL's pooled prompt embeddings `[B, P]` (`None` for other models).
    pub fn pooled_prompts(&self, prompts: &[&str]) -> Result<Option<Tensor>> {
        Ok(crate::pipeline::condition(self, prompts, &[])?.1)
    }

    /// Token ids of `prompts`, padded to the model's fixed length.
    pub fn token_ids(&self, prompts: &[&str]) -> Result<Vec<Vec<u32>>> {
        self.text.token_ids(prompts)
    }

    /// One raw UNet call (`x` already scaled by the sampler), for tests and
    /// benchmarks.
    pub fn unet_forward(&self, x: &Tensor, timestep: f64, context: &Tensor) -> Result<Tensor> {
        self.unet.forward(x, timestep, context, None)
    }

    /// One raw SDXL UNet call with its added conditioning: pooled text
    /// embeddings `[B, P]` and time ids `[B, 6]`.
    pub fn unet_forward_sdxl(
        &self,
        x: &Tensor,
        timestep: f64,
        context: &Tensor,
        text_embeds: &Tensor,
        time_ids: &Tensor,
    ) -> Result<Tensor> {
        let added = crate::unet::Added {
            text_embeds,
            time_ids,
        };
        self.unet.forward(x, timestep, context, Some(&added))
    }

    /// Decodes UNet-space latents to pixels in [-1, 1] (identity for pixel models).
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        match &self.vae {
            Some(vae) => vae.decode(latents),
            None => Ok(latents.clone()),
        }
    }

    /// The compute device.
    pub fn device(&self) -> &Device {
        &self.device
    }
}
