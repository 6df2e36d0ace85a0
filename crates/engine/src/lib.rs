//! The Easel inference engine: loads Hugging Face diffusers model folders
//! and turns validated parameters into pixels, synchronously, on the calling
//! thread. It knows nothing of HTTP, SQL or tenants.
//!
//! Architectures: Stable Diffusion 1.x, 2.x (ε or v-prediction), SDXL (two
//! CLIP encoders, pooled embeddings, size conditioning) and pixel-space
//! UNets without a VAE (the bundled model). Inpainting (an init image and a
//! [`Mask`] of what to repaint) works on all of them by latent blending, and
//! on inpainting UNets (9 input channels, [`ModelInfo::inpainting`]) by
//! their extra mask and masked-image inputs.
//!
//! Prompts are read in AUTOMATIC1111's syntax ([`easel_core::prompt`]):
//! `(word:1.2)`-style attention weights applied to the text encoder's
//! hidden states with A1111's mean restore, `BREAK`, prompts longer than
//! 75 tokens encoded in 75-token chunks side by side (at most 8), and
//! A1111's clip skip ([`ImageRequest::clip_skip`], SD 1.x). A prompt
//! without syntax that fits one chunk is encoded exactly as diffusers
//! encodes it.
//!
//! Computation uses candle on the CPU (or CUDA with the `cuda` feature), in
//! f32 whatever the stored dtype. Where candle-transformers has a correct
//! component it is used as is (BERT, the time embeddings); the CLIP text
//! encoder, the UNet's blocks and top level (candle's ignore
//! `norm_num_groups` and lack SDXL's added embedding), the UNet's spatial
//! transformers, the resnets and the VAE's encoder/decoder blocks (ported
//! from candle to run on the fused attention and the convolution of
//! [`ops`]) and the VAE's wiring and mid-block attention are our own (see
//! each module for why).
//!
//! # Layout
//! - [`alloc`]: keeping freed activation buffers for reuse across steps
//!   (glibc's malloc), and handing them back after a generation.
//! - [`device`]: which device computes ([`DeviceChoice`]), its text form
//!   (`cpu`, `cuda:N`) and whether this build has CUDA ([`CUDA_BUILT`]).
//! - [`error`]: the engine's one error type, each variant with a stable code.
//! - [`model`]: the loaded-model handle: load, info, generate.
//! - [`request`]: what a generation call takes and returns (requests, images,
//!   progress, cancellation).
//! - [`loader`]: reading a diffusers folder: configs, safetensors validated
//!   at open and read tensor by tensor into f32, the content hash, and
//!   LoRA adapters ([`LoraAdapter`], kohya or PEFT keys) merged into the
//!   weights as they are read, a combination ([`LoraSet`]) given in
//!   [`LoadOptions::loras`].
//! - `layers`: the resnet block and the down/upsamplers the UNet and the
//!   VAE share, on the engine's convolution.
//! - `text`: tokenizers and text encoders (CLIP, BERT), A1111's weighted
//!   and chunked prompt encoding, and sentence embeddings
//!   ([`SentenceEncoder`]).
//! - `unet`: the denoising network, from diffusers' UNet config (SDXL included).
//! - `vae`: the latent autoencoder with its scaling.
//! - `pipeline`: text-to-image and image-to-image with guidance, progress
//!   and cancellation; its `conditioning` turns a batch's prompts into the
//!   UNet's context (clip skip resolved per model); inpainting in
//!   `pipeline::inpaint`.
//! - `preview`: tensor ↔ RGB conversions and cheap step previews.
//! - [`sampling`]: samplers over sigma schedules, behind one interface.
//! - [`ops`]: kernels of our own for the CPU (fused attention,
//!   convolution without im2col).
//! - [`score`]: image–prompt scores (the bundled scorer or CLIP) and the pHash near-copy check.
//! - [`bench`]: timing and peak memory of each stage (`easel bench engine`).

pub mod alloc;
pub mod bench;
pub mod device;
pub mod error;
mod layers;
pub mod loader;
pub mod model;
pub mod ops;
mod pipeline;
mod preview;
pub mod request;
pub mod sampling;
pub mod score;
mod text;
mod unet;
mod vae;

/// The tensor library, re-exported for callers of the low-level methods
/// ([`Model::unet_forward`], [`Model::decode`]) and for tests.
pub use candle_core;
pub use device::{CUDA_BUILT, DeviceChoice, ParseDeviceError};
pub use error::{EngineError, Result};
pub use loader::hash::HashCache;
pub use loader::inspect::{FolderSummary, WeightsCheck, inspect};
pub use loader::lora::{LoraAdapter, LoraComponent, LoraLayout, LoraSet};
pub use model::{Architecture, LoadOptions, Model, ModelInfo};
pub use request::{
    CancelToken, GeneratedImage, ImageRequest, Mask, Progress, ProgressSink, RgbImage, StageTimings,
};
pub use text::sentence::SentenceEncoder;
