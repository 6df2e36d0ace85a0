//! Easel's image bytes: encoding generated pixels with their provenance
//! metadata, decoding untrusted uploads safely, and resizing. It knows
//! nothing of models or HTTP.
//!
//! # Choices
//! - **PNG through the `png` crate**, because the `image` crate cannot
//!   write text chunks: every PNG carries an AUTOMATIC1111 `parameters`
//!   chunk (readable by existing "PNG info" tools) and an `easel` JSON chunk.
//! - **JPEG and WebP through `image`** (0.25, only the png/jpeg/webp
//!   features, to keep the AVIF encoder's long build out). WebP is lossless
//!   only, because the pure-Rust encoder writes nothing else, so
//!   `output_compression` is ignored for it.
//! - **Untrusted input is checked from the header before any pixel is
//!   allocated**; see [`decode_untrusted`].
//!
//! # Layout
//! - `error`: [`MediaError`], one enum with a stable [`code`](MediaError::code) per variant.
//! - `metadata`: [`Metadata`], [`GenerationInfo`] and the A1111 `parameters` text.
//! - `encode`: [`encode`] to PNG, JPEG or WebP.
//! - `sniff`: format detection from magic bytes.
//! - `decode`: [`decode_untrusted`] and its [`DecodeLimits`].
//! - `resize`: [`resize`] with a Lanczos-3 filter.
//! - `png_text`: [`read_png_text`], for tests and `easel verify`.
//! - `c2pa`: [`C2paSigner`] embeds signed C2PA Content Credentials (a
//!   `c2pa.created` action, trained algorithmic media, the model hash);
//!   [`read_c2pa`] validates them.
//! - [`attacks`]: the transformations images meet in the wild, and
//!   PSNR/SSIM, for measuring the watermark.
//! - `watermark`: [`embed_watermark`] and [`detect_watermark`], an invisible
//!   mark (easelmark) that survives re-encoding, resizing and cropping, and
//!   the `invisible-watermark`-compatible mark of older images.
//!
//! # Example
//! ```
//! use easel_core::{OutputFormat, RgbImage, SamplerKind, ScheduleKind};
//! use easel_media::{DecodeLimits, GenerationInfo, Metadata, decode_untrusted, encode, read_png_text};
//!
//! let image = RgbImage { width: 8, height: 8, pixels: vec![128; 8 * 8 * 3] };
//! let metadata = Metadata::builder()
//!     .generation(GenerationInfo {
//!         prompt: "a red apple".into(),
//!         negative_prompt: String::new(),
//!         steps: 20,
//!         sampler: SamplerKind::Euler,
//!         schedule: ScheduleKind::Default,
//!         cfg_scale: 7.5,
//!         seed: 42,
//!         width: 8,
//!         height: 8,
//!         model_hash: "0123456789abcdef".into(),
//!         model: "easel-tiny".into(),
//!         denoising_strength: None,
//!         clip_skip: None,
//!         loras: Vec::new(),
//!     })
//!     .record(serde_json::json!({ "image_id": "img_…", "seed": 42 }))
//!     .build();
//! let png = encode(&image, OutputFormat::Png, None, &metadata).unwrap();
//! assert!(read_png_text(&png).unwrap().iter().any(|(k, _)| k == "parameters"));
//! assert_eq!(decode_untrusted(&png, &DecodeLimits::default()).unwrap(), image);
//! ```

#![warn(missing_docs)]

pub mod attacks;
mod c2pa;
mod decode;
mod encode;
mod error;
mod metadata;
mod png_text;
mod resize;
mod sniff;
mod watermark;

// `self::`: the extern crate `c2pa` shares the module's name.
pub use self::c2pa::{C2paSigner, C2paSummary, ClaimInfo, SOFT_BINDING_ALG, read_c2pa};
pub use decode::{DecodeLimits, decode_untrusted, decode_untrusted_with_alpha};
pub use easel_core::OutputFormat;
pub use encode::{DEFAULT_JPEG_QUALITY, encode};
pub use error::MediaError;
pub use metadata::{
    EASEL_KEY, GenerationInfo, Metadata, MetadataBuilder, PARAMETERS_KEY, a1111_sampler,
};
pub use png_text::read_png_text;
pub use resize::resize;
pub use sniff::sniff_format;
pub use watermark::{
    WATERMARK_MIN_DETECT_SIDE, WATERMARK_MIN_SIDE, WatermarkMethod, WatermarkPayload,
    WatermarkReading, WatermarkTransform, detect_watermark, embed_compat_watermark,
    embed_watermark, upscale_for_watermark,
};
