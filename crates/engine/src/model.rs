//! A loaded model: the public handle the rest of Easel uses.
//!
//! CONTRACT (other crates compile against these signatures; keep them):
//! `Model::load(dir, &LoadOptions)`, `Model::info()`, `Model::generate(...)`.

use std::path::{Path, PathBuf};

use easel_core::{SamplerKind, Size};

use crate::error::Result;
use crate::request::{CancelToken, GeneratedImage, ImageRequest, ProgressSink};

/// Which device computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// The CPU (default).
    #[default]
    Cpu,
    /// CUDA device with this ordinal (needs the `cuda` feature).
    Cuda(usize),
}

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Device to compute on. Default: CPU.
    pub device: DeviceChoice,
    /// Name to report; default: the folder's name.
    pub name: Option<String>,
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
#[derive(Debug, Clone, serde::Serialize)]
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
    /// Bytes of weights held in memory once loaded.
    pub weight_bytes: u64,
}

/// A loaded model, ready to generate. `Send + Sync`: one model may serve
/// several engine threads.
pub struct Model {
    info: ModelInfo,
}

impl Model {
    /// Loads a diffusers folder.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Model> {
        let _ = (dir, opts);
        todo!("engine helper implements")
    }

    /// What the model is.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Generates one image per request. All requests must share size, steps,
    /// sampler, schedule, guidance and strength (the batch key); each has its
    /// own seed and generator.
    pub fn generate(
        &self,
        requests: &[ImageRequest],
        progress: &mut dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<Vec<GeneratedImage>> {
        let _ = (requests, progress, cancel);
        todo!("engine helper implements")
    }
}
