//! Image moderation with Yahoo's open_nsfw classifier, run in pure Rust
//! (tract), with the reference preprocessing reproduced bit for bit.
//!
//! # Layout
//! - `classifier`: [`NsfwClassifier`], the ONNX graph compiled with tract.
//! - `preprocess`: [`model_input`], the reference pipeline (resize, JPEG
//!   round trip, crop, BGR minus means).
//! - `resize`: Pillow's bilinear resize in its 8-bit fixed point.
//! - `jpeg`: libjpeg-turbo's quality-75 encode/decode without the file.
//! - `decision`: [`ImageThresholds`], [`ImageDecision`] and [`decide`].

mod classifier;
mod decision;
mod jpeg;
mod preprocess;
mod resize;

pub use classifier::NsfwClassifier;
pub use decision::{ImageDecision, ImageThresholds, decide};
pub use preprocess::{BGR_MEANS, CROP_SIDE, JpegRoundTrip, RESIZE_SIDE, model_crop, model_input};

/// The bundled model, relative to the repository root (the server's working
/// directory); see `models/open-nsfw/README.md`.
pub const DEFAULT_NSFW_MODEL: &str = "models/open-nsfw/open_nsfw.onnx";
