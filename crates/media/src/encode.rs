//! Encoding pixels to PNG, JPEG or WebP.
//!
//! PNG goes through the `png` crate directly because the `image` crate's PNG
//! encoder cannot write text chunks. JPEG and WebP go through `image`.
//! JPEG and WebP output carry no text metadata: provenance for them comes
//! from the image record and, later, C2PA.

use easel_core::{OutputFormat, RgbImage};
use image::ExtendedColorType;
use image::ImageEncoder as _;

use crate::error::MediaError;
use crate::metadata::{EASEL_KEY, Metadata, PARAMETERS_KEY};

/// JPEG quality used when none is given.
pub const DEFAULT_JPEG_QUALITY: u8 = 90;

/// Encodes `image` as `format`.
///
/// `quality` (0–100, OpenAI's `output_compression`) is the JPEG quality,
/// default [`DEFAULT_JPEG_QUALITY`]; a quality of 0 is raised to 1, the
/// encoder's minimum. It is ignored for PNG and WebP, both lossless (the
/// pure-Rust WebP encoder writes lossless only). `metadata` is written as
/// text chunks into PNG and ignored for the other formats.
pub fn encode(
    image: &RgbImage,
    format: OutputFormat,
    quality: Option<u8>,
    metadata: &Metadata,
) -> Result<Vec<u8>, MediaError> {
    check_buffer(image)?;
    if let Some(q) = quality.filter(|q| *q > 100) {
        return Err(MediaError::InvalidQuality(q));
    }
    match format {
        OutputFormat::Png => encode_png(image, metadata),
        OutputFormat::Jpeg => {
            let quality = quality.unwrap_or(DEFAULT_JPEG_QUALITY).max(1);
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
                .write_image(
                    &image.pixels,
                    image.width,
                    image.height,
                    ExtendedColorType::Rgb8,
                )
                .map_err(|e| encode_error("jpeg", e))?;
            Ok(out)
        }
        OutputFormat::Webp => {
            let mut out = Vec::new();
            image::codecs::webp::WebPEncoder::new_lossless(&mut out)
                .write_image(
                    &image.pixels,
                    image.width,
                    image.height,
                    ExtendedColorType::Rgb8,
                )
                .map_err(|e| encode_error("webp", e))?;
            Ok(out)
        }
    }
}

fn encode_png(image: &RgbImage, metadata: &Metadata) -> Result<Vec<u8>, MediaError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    if let Some(parameters) = metadata.parameters() {
        // A1111 (through PIL) writes tEXt when the text is Latin-1 and iTXt
        // otherwise; readers look for the keyword in both.
        let added = if is_latin1(parameters) {
            encoder.add_text_chunk(PARAMETERS_KEY.into(), parameters.into())
        } else {
            encoder.add_itxt_chunk(PARAMETERS_KEY.into(), parameters.into())
        };
        added.map_err(|e| encode_error("png", e))?;
    }
    if let Some(record) = metadata.record() {
        encoder
            .add_itxt_chunk(EASEL_KEY.into(), record.to_string())
            .map_err(|e| encode_error("png", e))?;
    }
    let mut writer = encoder.write_header().map_err(|e| encode_error("png", e))?;
    writer
        .write_image_data(&image.pixels)
        .map_err(|e| encode_error("png", e))?;
    writer.finish().map_err(|e| encode_error("png", e))?;
    Ok(out)
}

/// Rejects images whose buffer does not match their dimensions.
pub(crate) fn check_buffer(image: &RgbImage) -> Result<(), MediaError> {
    if image.width == 0 || image.height == 0 {
        return Err(MediaError::InvalidDimensions {
            reason: format!("{}x{} has no pixels", image.width, image.height),
        });
    }
    let expected = image.width as usize * image.height as usize * 3;
    if image.pixels.len() != expected {
        return Err(MediaError::InvalidDimensions {
            reason: format!(
                "{}x{} RGB needs {expected} bytes, the buffer has {}",
                image.width,
                image.height,
                image.pixels.len()
            ),
        });
    }
    Ok(())
}

fn is_latin1(text: &str) -> bool {
    text.chars().all(|c| (c as u32) < 0x100)
}

fn encode_error(format: &'static str, e: impl std::fmt::Display) -> MediaError {
    MediaError::Encode {
        format,
        reason: e.to_string(),
    }
}
