//! Invisible watermarks: 48 bits (a 16-bit server tag and a 32-bit image
//! tag) and a CRC-16, hidden in every generated image.
//!
//! # The mark Easel embeds: easelmark v1 (`robust`)
//! A periodic 64×64 tile of sync and code cells that changes the luma with
//! a perceptual mask, carried by the channels with headroom (so
//! brightening does not clip it away), the 64 bits protected by
//! BCH(127, 64). Detection
//! searches the scale (0.45× to 2.2×) and finds the tile's offset by
//! correlating with the sync pattern, so it reads most images that were
//! re-encoded as JPEG, resized, cropped at any position or had their
//! brightness and contrast changed, and it says which scale and offset it
//! recovered. The design, its false-positive bound, its measurements and
//! what it still misses (WebP at quality 75, dense textures) are in `docs/watermark.md`; a reference decoder in Python,
//! written from the same specification, is in `tools/watermark/robust/`.
//!
//! # The compatible mark (`codec`): read, no longer embedded
//! Images made before easelmark carry the `dwtDctSvd` mark of the Python
//! `invisible-watermark` package (U channel, Haar DWT, SVD of 4×4 DCT
//! blocks). [`detect_watermark`] still reads it (as is and scaled back up
//! from 0.75× and 0.5×), and [`embed_compat_watermark`] still writes it,
//! for that package's users; the server embeds easelmark only, because the
//! compatible mark does not survive a JPEG or a crop of the server's
//! outputs (`docs/watermark.md`).
//!
//! # Size
//! [`WATERMARK_MIN_SIDE`] (256) is the smallest side marked; generated
//! images smaller than that are first enlarged by
//! [`upscale_for_watermark`] (nearest neighbour, an integer factor).
//! [`WATERMARK_MIN_DETECT_SIDE`] (96) is the smallest side read.

mod codec;
mod color;
mod payload;
mod robust;
mod svd;

use easel_core::RgbImage;

use crate::encode::check_buffer;
use crate::error::MediaError;
pub use payload::WatermarkPayload;

/// The smallest side [`embed_watermark`] accepts, in pixels: the tile is
/// 64 pixels, so a 256-pixel side holds four periods and still two after
/// a 0.5× downscale (the detector needs about two); and the server's
/// smallest outputs (32×32) become 256×256 by an integer factor.
pub const WATERMARK_MIN_SIDE: u32 = 256;

/// The smallest side [`detect_watermark`] reads, in pixels; a smaller
/// image reads as unmarked (the server answers 400 `image_too_small`).
pub const WATERMARK_MIN_DETECT_SIDE: u32 = robust::MIN_SIDE as u32;

/// Downscales the compatible mark's reading undoes, besides reading as is.
const DETECT_SCALES: [f64; 2] = [0.75, 0.5];

/// The largest image (in pixels) a rescaled read is tried on, which bounds
/// the work one detection does.
const MAX_RESCALED_PIXELS: u64 = 4096 * 4096;

/// Which mark was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatermarkMethod {
    /// easelmark v1, the robust mark Easel embeds.
    Easelmark,
    /// The `invisible-watermark` package's `dwtDctSvd` (older images).
    DwtDctSvd,
}

impl WatermarkMethod {
    /// The name shown in answers: `easelmark-v1` or `dwtDctSvd`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Easelmark => "easelmark-v1",
            Self::DwtDctSvd => "dwtDctSvd",
        }
    }
}

/// The geometric transformation a reading recovered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WatermarkTransform {
    /// The image's scale relative to the image as marked (0.5: halved).
    pub scale: f64,
    /// Where a tile of the mark starts in the image, in pixels, modulo the
    /// tile's period at that scale: 0 for an image that was not cropped
    /// (and not resized), the crop's offset otherwise.
    pub offset_x: f64,
    /// As `offset_x`, vertically.
    pub offset_y: f64,
}

/// A watermark found in an image.
#[derive(Clone, Debug, PartialEq)]
pub struct WatermarkReading {
    /// The payload whose CRC matched.
    pub payload: WatermarkPayload,
    /// How sure the reading is, 0 to 1: from the bits the code corrected
    /// and the sync peak's height (easelmark), or from the share of blocks
    /// that agree (the compatible mark). A wrong payload needs the CRC and
    /// the code to fail together (`docs/watermark.md`), so any reading is
    /// a mark; the confidence says how intact it is.
    pub confidence: f32,
    /// Which mark.
    pub method: WatermarkMethod,
    /// The scale and offset recovered (easelmark only).
    pub transform: Option<WatermarkTransform>,
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

/// Hides `payload` in `image` with easelmark. Errors with code
/// `image_too_small` when a side is under [`WATERMARK_MIN_SIDE`] (see
/// [`upscale_for_watermark`]), and `invalid_dimensions` when the buffer
/// does not match the size.
pub fn embed_watermark(
    image: &RgbImage,
    payload: WatermarkPayload,
) -> Result<RgbImage, MediaError> {
    check_marked_size(image)?;
    let mut marked = image.clone();
    robust::embed(
        &mut marked.pixels,
        image.width as usize,
        image.height as usize,
        payload.to_message(),
    );
    Ok(marked)
}

/// Hides `payload` with the `invisible-watermark` package's `dwtDctSvd`
/// method, which that package's decoder reads. Not robust to JPEG or
/// crops; the server does not use it. Errors as [`embed_watermark`].
pub fn embed_compat_watermark(
    image: &RgbImage,
    payload: WatermarkPayload,
) -> Result<RgbImage, MediaError> {
    check_marked_size(image)?;
    let mut marked = image.clone();
    codec::embed(
        &mut marked.pixels,
        image.width,
        image.height,
        &payload.to_bits(),
    );
    Ok(marked)
}

fn check_marked_size(image: &RgbImage) -> Result<(), MediaError> {
    check_buffer(image)?;
    if image.width.min(image.height) < WATERMARK_MIN_SIDE {
        return Err(MediaError::ImageTooSmall {
            width: image.width,
            height: image.height,
            min_side: WATERMARK_MIN_SIDE,
        });
    }
    Ok(())
}

/// Looks for a watermark in `image`: easelmark first, then the compatible
/// mark of older images (as is, and scaled back up from 0.75× and 0.5×).
/// `None` when neither reads (or the image is malformed, or a side is
/// under [`WATERMARK_MIN_DETECT_SIDE`]).
pub fn detect_watermark(image: &RgbImage) -> Option<WatermarkReading> {
    check_buffer(image).ok()?;
    if image.width.min(image.height) < WATERMARK_MIN_DETECT_SIDE {
        return None;
    }
    let found = robust::detect(
        &image.pixels,
        image.width as usize,
        image.height as usize,
        WatermarkPayload::from_message,
    );
    if let Some(found) = found {
        return Some(WatermarkReading {
            payload: found.value,
            confidence: found.confidence as f32,
            method: WatermarkMethod::Easelmark,
            transform: Some(WatermarkTransform {
                scale: found.scale,
                offset_x: found.offset_x,
                offset_y: found.offset_y,
            }),
        });
    }
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

/// The least confidence a reading of the compatible mark needs besides
/// its CRC-16. The CRC alone lets one read in about 22,000 of an unmarked
/// picture through (three sizes × 2⁻¹⁶; the benchmark met one, on noise,
/// at 0.168); a real mark reads at 0.94 to 1.0 even after JPEG 75 or a
/// 0.5× downscale (`tests/media/watermark.rs`).
const COMPAT_MIN_CONFIDENCE: f32 = 0.5;

/// The compatible mark read at the image's size.
fn read_at_size(image: &RgbImage) -> Option<WatermarkReading> {
    let votes = codec::read(&image.pixels, image.width, image.height)?;
    // 0.5 of the blocks agreeing is a coin toss, 1.0 an intact mark.
    let confidence = ((votes.agreement - 0.5) * 2.0).clamp(0.0, 1.0);
    if confidence < COMPAT_MIN_CONFIDENCE {
        return None;
    }
    Some(WatermarkReading {
        payload: WatermarkPayload::from_bits(&votes.bits)?,
        confidence,
        method: WatermarkMethod::DwtDctSvd,
        transform: None,
    })
}
