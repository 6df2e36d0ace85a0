//! Invisible watermark: 64 bits hidden in the U (blue-difference) channel
//! with the `dwtDctSvd` method of the Python `invisible-watermark` package,
//! so that its reference decoder reads the marks Easel writes.
//!
//! # Method
//! Haar DWT of the U plane, 4×4 blocks of the approximation band, and the
//! largest singular value of each block quantised with step 36 (see
//! `codec`). Block `n` carries bit `n % 64`, so a 256×256 image repeats
//! each bit 16 times and a 512×512 one 64 times; reading takes each bit's
//! majority. The 64 bits are a [`WatermarkPayload`] and its CRC-16
//! (`payload`); a read whose CRC fails is no watermark.
//!
//! # Where Easel differs from the reference (its decoder reads both)
//! - Each singular value moves to the *nearest* point of its bit's lattice
//!   (at most 18) instead of the point in its own cell (up to 27).
//! - Pixels are rounded, not truncated, after the change, and embedding
//!   re-measures the 8-bit result and corrects short blocks (up to four
//!   passes); pixels at the RGB cube's edge (white backgrounds) get the
//!   change through the channels that can still move (`color`).
//! - The reference's inverse DWT swaps the horizontal and vertical detail
//!   bands (`idwt2((ca1, (v1, h1, d1)))`), which changes the U channel's
//!   detail wherever there is any; Easel leaves the detail bands alone.
//! - [`detect_watermark`] also tries the image scaled back up from the
//!   usual downscales (0.75× and 0.5×), since the block grid does not
//!   survive a resize; the reference reads at the given size only.
//!
//! # Size
//! [`WATERMARK_MIN_SIDE`] is 256: below it the 64 bits get too few blocks
//! to survive JPEG and a downscale (figures in `docs/watermark.md`), and
//! the reference decoder refuses images under 256×256 pixels in all.
//! Generated images smaller than that are first enlarged by
//! [`upscale_for_watermark`] (nearest neighbour, an integer factor, so a
//! 32×32 picture becomes 256×256 with every pixel an 8×8 square, exactly
//! one watermark block).

mod codec;
mod color;
mod payload;
mod svd;

use easel_core::RgbImage;

use crate::encode::check_buffer;
use crate::error::MediaError;
pub use payload::WatermarkPayload;

/// The smallest side [`embed_watermark`] accepts, in pixels. Measured on
/// emoji-like outputs (32×32 on white, upscaled) and smooth synthetic
/// pictures: at 128 px (4 blocks per bit) some emoji lose the payload
/// after a 0.75× Lanczos downscale; at 192 px (9 per bit) and 256 px (16
/// per bit) every one keeps all 64 bits after JPEG quality 85, the
/// downscale, and both, with PSNR ≥ 41 dB (`docs/watermark.md`). 256
/// rather than 192 because the reference decoder refuses images under
/// 256×256 pixels, and for margin.
pub const WATERMARK_MIN_SIDE: u32 = 256;

/// Downscales [`detect_watermark`] undoes, besides reading as is.
const DETECT_SCALES: [f64; 2] = [0.75, 0.5];

/// The largest image (in pixels) a rescaled read is tried on, which bounds
/// the work one detection does.
const MAX_RESCALED_PIXELS: u64 = 4096 * 4096;

/// A watermark found in an image.
#[derive(Clone, Debug, PartialEq)]
pub struct WatermarkReading {
    /// The payload whose CRC matched.
    pub payload: WatermarkPayload,
    /// The share of blocks that voted for the bit that was read, from 0.5
    /// (a coin toss) to 1.0 (every block agrees): how intact the mark is.
    pub bit_agreement: f32,
}

/// Enlarges `image` by the smallest integer factor that brings its shorter
/// side to [`WATERMARK_MIN_SIDE`], repeating pixels (nearest neighbour, so
/// nothing is blurred). `None` when it is already large enough, or when it
/// is empty, malformed, or would overflow.
pub fn upscale_for_watermark(image: &RgbImage) -> Option<RgbImage> {
    check_buffer(image).ok()?;
    let short = image.width.min(image.height);
    if short >= WATERMARK_MIN_SIDE {
        return None;
    }
    let factor = WATERMARK_MIN_SIDE.div_ceil(short) as usize;
    let (w, h) = (image.width as usize, image.height as usize);
    let (width, height) = (w.checked_mul(factor)?, h.checked_mul(factor)?);
    let mut pixels = Vec::with_capacity(width.checked_mul(height)?.checked_mul(3)?);
    for y in 0..height {
        let row = &image.pixels[(y / factor) * w * 3..][..w * 3];
        for x in 0..width {
            pixels.extend_from_slice(&row[(x / factor) * 3..][..3]);
        }
    }
    Some(RgbImage {
        width: u32::try_from(width).ok()?,
        height: u32::try_from(height).ok()?,
        pixels,
    })
}

/// Hides `payload` in `image`. Errors with code `image_too_small` when a
/// side is under [`WATERMARK_MIN_SIDE`] (see [`upscale_for_watermark`]),
/// and `invalid_dimensions` when the buffer does not match the size.
pub fn embed_watermark(
    image: &RgbImage,
    payload: WatermarkPayload,
) -> Result<RgbImage, MediaError> {
    check_buffer(image)?;
    if image.width.min(image.height) < WATERMARK_MIN_SIDE {
        return Err(MediaError::ImageTooSmall {
            width: image.width,
            height: image.height,
            min_side: WATERMARK_MIN_SIDE,
        });
    }
    let mut marked = image.clone();
    codec::embed(
        &mut marked.pixels,
        image.width,
        image.height,
        &payload.to_bits(),
    );
    Ok(marked)
}

/// Looks for a watermark in `image`, as it is and scaled back up from a
/// 0.75× or 0.5× downscale. `None` when no read passes the CRC (or the
/// image is malformed, or too small to hold 64 blocks).
pub fn detect_watermark(image: &RgbImage) -> Option<WatermarkReading> {
    check_buffer(image).ok()?;
    if let Some(reading) = read_at_size(image) {
        return Some(reading);
    }
    DETECT_SCALES.iter().find_map(|&scale| {
        let width = (f64::from(image.width) / scale).round() as u32;
        let height = (f64::from(image.height) / scale).round() as u32;
        if u64::from(width) * u64::from(height) > MAX_RESCALED_PIXELS {
            return None;
        }
        read_at_size(&crate::resize(image, width, height).ok()?)
    })
}

fn read_at_size(image: &RgbImage) -> Option<WatermarkReading> {
    let votes = codec::read(&image.pixels, image.width, image.height)?;
    Some(WatermarkReading {
        payload: WatermarkPayload::from_bits(&votes.bits)?,
        bit_agreement: votes.agreement,
    })
}

#[cfg(test)]
mod measure;
