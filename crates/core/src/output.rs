//! How a job's images are encoded and delivered: the request options that
//! travel with a job from the API edge, through the queue, to the encoder.
//!
//! They live here rather than in `media` or `server` because the store
//! persists them on the job record and the worker reads them back, and
//! neither of those may depend on the crates that interpret them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::sampler::UnknownName;

/// An encoded image file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// Lossless PNG with text metadata chunks (the default).
    #[default]
    Png,
    /// Lossy JPEG; `output_compression` sets its quality.
    Jpeg,
    /// Lossless WebP (the encoder available in pure Rust writes lossless only).
    Webp,
}

impl OutputFormat {
    /// Every format.
    pub const ALL: &'static [OutputFormat] =
        &[OutputFormat::Png, OutputFormat::Jpeg, OutputFormat::Webp];

    /// The snake_case name used in the API (`png`, `jpeg`, `webp`).
    pub fn as_str(&self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpeg",
            OutputFormat::Webp => "webp",
        }
    }

    /// The MIME type, e.g. `image/png`.
    pub fn mime_type(&self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
        }
    }

    /// The file extension without a dot (`png`, `jpg`, `webp`).
    pub fn extension(&self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Webp => "webp",
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutputFormat {
    type Err = UnknownName;

    /// Parses `png`, `jpeg` (or `jpg`) and `webp`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "png" => Ok(OutputFormat::Png),
            "jpeg" | "jpg" => Ok(OutputFormat::Jpeg),
            "webp" => Ok(OutputFormat::Webp),
            _ => Err(UnknownName {
                what: "output format",
                value: s.chars().take(80).collect(),
                expected: "png, jpeg, webp".into(),
            }),
        }
    }
}

/// How the response carries each image (OpenAI's `response_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// The encoded bytes, base64, inline in the response (the default).
    #[default]
    B64Json,
    /// A signed, expiring link to the stored image.
    Url,
}

impl ResponseFormat {
    /// The snake_case name used in the API (`b64_json`, `url`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ResponseFormat::B64Json => "b64_json",
            ResponseFormat::Url => "url",
        }
    }
}

impl FromStr for ResponseFormat {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "b64_json" => Ok(ResponseFormat::B64Json),
            "url" => Ok(ResponseFormat::Url),
            _ => Err(UnknownName {
                what: "response format",
                value: s.chars().take(80).collect(),
                expected: "b64_json, url".into(),
            }),
        }
    }
}

/// A job's delivery options, persisted with the job as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutputOptions {
    /// How the response carries the images; default `b64_json`.
    #[serde(default)]
    pub response_format: ResponseFormat,
    /// The file format; default `png`.
    #[serde(default)]
    pub output_format: OutputFormat,
    /// Compression level 0–100 as OpenAI defines it; for JPEG it is the
    /// quality. `None` (the default) lets the encoder choose. Ignored for
    /// PNG and WebP, which are lossless.
    #[serde(default)]
    pub output_compression: Option<u8>,
    /// Publish a cheap preview of the job's images with its progress
    /// events every this many denoising steps (OpenAI's `partial_images`,
    /// the AUTOMATIC1111 API's `current_image`), on top of the worker's
    /// own `preview_every_steps`; `None` (the default): only the worker's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_every_steps: Option<u32>,
    /// Which image moderation thresholds apply (OpenAI's `moderation`);
    /// default `auto`, the server's.
    #[serde(default, skip_serializing_if = "ModerationLevel::is_auto")]
    pub moderation: ModerationLevel,
}

/// How strictly a job's images are moderated: OpenAI's `moderation`
/// field. The operator sets what each level means
/// (`moderation.image` and `moderation.image_low`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModerationLevel {
    /// The server's image thresholds.
    #[default]
    Auto,
    /// The operator's less restrictive thresholds.
    Low,
}

impl ModerationLevel {
    /// Whether this is the default, `auto`.
    pub fn is_auto(&self) -> bool {
        *self == ModerationLevel::Auto
    }

    /// The level's name, as requested.
    pub fn as_str(self) -> &'static str {
        match self {
            ModerationLevel::Auto => "auto",
            ModerationLevel::Low => "low",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_their_names_and_jpg() {
        for f in OutputFormat::ALL {
            assert_eq!(f.as_str().parse::<OutputFormat>().unwrap(), *f);
        }
        assert_eq!("JPG".parse::<OutputFormat>().unwrap(), OutputFormat::Jpeg);
        assert_eq!(OutputFormat::Jpeg.extension(), "jpg");
        assert!("gif".parse::<OutputFormat>().is_err());
    }

    #[test]
    fn options_default_when_fields_are_missing() {
        let o: OutputOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(o, OutputOptions::default());
        let o: OutputOptions =
            serde_json::from_str(r#"{"response_format":"url","output_format":"webp"}"#).unwrap();
        assert_eq!(
            (o.response_format, o.output_format),
            (ResponseFormat::Url, OutputFormat::Webp)
        );
    }
}
