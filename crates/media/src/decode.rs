//! Decoding untrusted uploads, safely.
//!
//! An upload is hostile until proven otherwise. The order of checks is what
//! makes this safe: the byte size first, then the format from its magic
//! bytes, then the dimensions from the header alone, and only then the
//! pixels, with the decoder's own allocation limits as a second fence. A
//! 40-byte PNG whose header claims 100,000 × 100,000 pixels (a
//! "decompression bomb" that would need 30 GB) is refused at the third step
//! without allocating anything.

use std::io::Cursor;

use easel_core::RgbImage;
use image::{DynamicImage, ImageError, ImageReader};

use crate::error::MediaError;
use crate::sniff::sniff;

/// Bounds on what [`decode_untrusted`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Longest side in pixels; default 4096.
    pub max_side: u32,
    /// Width × height; default 4096 × 4096 (16.8 megapixels).
    pub max_pixels: u64,
    /// Size of the encoded file in bytes; default 32 MiB.
    pub max_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_side: 4096,
            max_pixels: 4096 * 4096,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Decodes an uploaded PNG, JPEG or WebP into RGB.
///
/// Transparency is composited onto white and greyscale expanded, so the
/// result is always 8-bit RGB. Errors: [`MediaError::FileTooLarge`],
/// [`MediaError::UnsupportedFormat`] (another image format),
/// [`MediaError::InvalidImage`] (not an image, damaged, truncated),
/// [`MediaError::ImageTooLarge`] (dimensions over `limits`).
pub fn decode_untrusted(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, MediaError> {
    decode_checked(bytes, limits).map(to_rgb_on_white)
}

/// [`decode_untrusted`], also returning the alpha channel (one byte per
/// pixel, row-major) when the file has one: an inpainting mask, whose
/// transparent pixels mark what to redraw (OpenAI's edits).
pub fn decode_untrusted_with_alpha(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<(RgbImage, Option<Vec<u8>>), MediaError> {
    let decoded = decode_checked(bytes, limits)?;
    let alpha = decoded.color().has_alpha().then(|| {
        decoded
            .to_rgba8()
            .as_raw()
            .chunks_exact(4)
            .map(|px| px[3])
            .collect()
    });
    Ok((to_rgb_on_white(decoded), alpha))
}

/// Sniffs, checks the header against `limits`, and decodes under a memory
/// fence.
fn decode_checked(bytes: &[u8], limits: &DecodeLimits) -> Result<DynamicImage, MediaError> {
    if bytes.len() > limits.max_bytes {
        return Err(MediaError::FileTooLarge {
            size: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let format = sniff(bytes)?;

    // The header alone: no pixel buffer exists yet.
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| map_error(e, None, limits))?;
    check_dimensions(width, height, limits)?;

    // Second fence: the decoder refuses to allocate beyond what an image of
    // the allowed size needs (16-bit RGBA is the widest layout, 8 bytes per
    // pixel), plus room for its working buffers.
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(decoder_limits);
    reader
        .decode()
        .map_err(|e| map_error(e, Some((width, height)), limits))
}

fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), MediaError> {
    let too_large = || MediaError::ImageTooLarge {
        width,
        height,
        max_side: limits.max_side,
        max_pixels: limits.max_pixels,
    };
    if width == 0 || height == 0 {
        return Err(MediaError::invalid(format!(
            "the header claims {width}x{height} pixels"
        )));
    }
    if width > limits.max_side || height > limits.max_side {
        return Err(too_large());
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(too_large());
    }
    Ok(())
}

/// Maps a decoder error; `size` is the header's claim, once known.
fn map_error(e: ImageError, size: Option<(u32, u32)>, limits: &DecodeLimits) -> MediaError {
    match e {
        // The header passed our check, yet the decoder needed more memory
        // than an image of that size should: treat it as the bomb it is.
        ImageError::Limits(_) => {
            let (width, height) = size.unwrap_or((0, 0));
            MediaError::ImageTooLarge {
                width,
                height,
                max_side: limits.max_side,
                max_pixels: limits.max_pixels,
            }
        }
        ImageError::Unsupported(e) => MediaError::UnsupportedFormat {
            format: e.to_string(),
        },
        // Decoding errors, and I/O errors, which from an in-memory cursor
        // can only mean the data ended early.
        other => MediaError::invalid(other),
    }
}

/// Flattens any decoded layout to 8-bit RGB, compositing alpha onto white
/// (what a viewer shows for a transparent PNG on a page).
fn to_rgb_on_white(decoded: DynamicImage) -> RgbImage {
    let (width, height) = (decoded.width(), decoded.height());
    let pixels = if decoded.color().has_alpha() {
        let rgba = decoded.into_rgba8();
        let mut out = Vec::with_capacity(width as usize * height as usize * 3);
        for px in rgba.as_raw().chunks_exact(4) {
            let a = u32::from(px[3]);
            for &c in &px[..3] {
                // c·α + 255·(1 − α), rounded, in integers.
                out.push(((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8);
            }
        }
        out
    } else {
        decoded.into_rgb8().into_raw()
    };
    RgbImage {
        width,
        height,
        pixels,
    }
}
