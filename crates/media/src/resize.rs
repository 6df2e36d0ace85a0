//! Resizing.

use easel_core::RgbImage;
use image::imageops::{self, FilterType};

use crate::encode::check_buffer;
use crate::error::MediaError;

/// Resizes `image` to exactly `width` × `height` with a Lanczos-3 filter
/// (sharp, few ringing artefacts; the usual choice for photographs and for
/// the downscale a watermark must survive). Aspect ratio is the caller's.
pub fn resize(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage, MediaError> {
    check_buffer(image)?;
    if width == 0 || height == 0 {
        return Err(MediaError::InvalidDimensions {
            reason: format!("cannot resize to {width}x{height}"),
        });
    }
    if (width, height) == (image.width, image.height) {
        return Ok(image.clone());
    }
    let source = image::RgbImage::from_raw(image.width, image.height, image.pixels.clone())
        .expect("buffer length checked above");
    let resized = imageops::resize(&source, width, height, FilterType::Lanczos3);
    Ok(RgbImage {
        width,
        height,
        pixels: resized.into_raw(),
    })
}
