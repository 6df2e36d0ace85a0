//! The Easel inference engine: loads Hugging Face diffusers model folders
//! and turns validated parameters into pixels, synchronously, on the calling
//! thread. It knows nothing of HTTP, SQL or tenants.
//!
//! # Layout
//! - [`error`]: the engine's one error type, each variant with a stable code.
//! - [`model`]: the loaded-model handle: load, info, generate.
//! - [`request`]: what a generation call takes and returns (requests, images,
//!   progress, cancellation).

pub mod error;
pub mod model;
pub mod request;

pub use error::{EngineError, Result};
pub use model::{Architecture, DeviceChoice, LoadOptions, Model, ModelInfo};
pub use request::{
    CancelToken, GeneratedImage, ImageRequest, Progress, ProgressSink, RgbImage, StageTimings,
};
