//! A plain in-memory picture, the currency between engine, media and storage,
//! and the single-channel mask that says which of its pixels to repaint.

/// An RGB image, 8 bits per channel, row-major, no padding.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub pixels: Vec<u8>,
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RgbImage({}x{}, {} bytes)",
            self.width,
            self.height,
            self.pixels.len()
        )
    }
}

/// A single-channel inpainting mask at an image's size, row-major: a value
/// of 1.0 (255 in 8 bits) repaints the pixel, 0 keeps it.
///
/// Values are stored as f32 in [0, 1]; an 8-bit mask becomes `v / 255`, as
/// diffusers' `VaeImageProcessor` reads a grayscale PIL mask. The engine
/// binarises at 0.5 (`v >= 0.5` repaints, so 128..=255 in 8 bits), as
/// diffusers' mask processor does (`do_binarize=True`). Built only through
/// [`Mask::from_u8`] and [`Mask::from_f32`], so its length always matches its
/// size and every value lies in [0, 1].
#[derive(Clone, PartialEq)]
pub struct Mask {
    width: u32,
    height: u32,
    values: Vec<f32>,
}

/// Why a [`Mask`] could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MaskError {
    /// The number of values is not `width * height`.
    #[error("a {width}x{height} mask needs {expected} values, got {found}")]
    Length {
        /// Mask width.
        width: u32,
        /// Mask height.
        height: u32,
        /// `width * height`.
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// A float value is NaN or outside [0, 1].
    #[error("mask value {value} at index {index} is outside [0, 1]")]
    OutOfRange {
        /// Row-major index of the value.
        index: usize,
        /// The value.
        value: f32,
    },
}

impl Mask {
    /// A mask from 8-bit values (0 keeps, 255 repaints), e.g. a grayscale PNG.
    pub fn from_u8(width: u32, height: u32, values: &[u8]) -> Result<Mask, MaskError> {
        Self::check_len(width, height, values.len())?;
        Ok(Mask {
            width,
            height,
            values: values.iter().map(|&v| f32::from(v) / 255.0).collect(),
        })
    }

    /// A mask from values in [0, 1] (0 keeps, 1 repaints).
    pub fn from_f32(width: u32, height: u32, values: Vec<f32>) -> Result<Mask, MaskError> {
        Self::check_len(width, height, values.len())?;
        if let Some((index, &value)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| !(0.0..=1.0).contains(*v))
        {
            return Err(MaskError::OutOfRange { index, value });
        }
        Ok(Mask {
            width,
            height,
            values,
        })
    }

    fn check_len(width: u32, height: u32, found: usize) -> Result<(), MaskError> {
        let expected = width as usize * height as usize;
        if found == expected {
            Ok(())
        } else {
            Err(MaskError::Length {
                width,
                height,
                expected,
                found,
            })
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The values in [0, 1], row-major, `width * height` of them.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Whether the pixel at row-major `index` is repainted (value ≥ 0.5).
    pub fn repaints(&self, index: usize) -> bool {
        self.values[index] >= 0.5
    }
}

impl std::fmt::Debug for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let repainted = (0..self.values.len()).filter(|&i| self.repaints(i)).count();
        write!(
            f,
            "Mask({}x{}, {} of {} pixels repainted)",
            self.width,
            self.height,
            repainted,
            self.values.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_bit_masks_binarise_at_128_as_diffusers_does() {
        let m = Mask::from_u8(4, 1, &[0, 127, 128, 255]).unwrap();
        let repainted: Vec<bool> = (0..4).map(|i| m.repaints(i)).collect();
        assert_eq!(repainted, [false, false, true, true]);
        assert_eq!(m.values()[3], 1.0);
    }

    #[test]
    fn a_mask_of_the_wrong_length_or_range_is_refused() {
        assert!(matches!(
            Mask::from_u8(2, 2, &[0; 3]),
            Err(MaskError::Length {
                expected: 4,
                found: 3,
                ..
            })
        ));
        assert!(matches!(
            Mask::from_f32(2, 1, vec![0.5, 1.5]),
            Err(MaskError::OutOfRange { index: 1, .. })
        ));
        assert!(Mask::from_f32(1, 1, vec![f32::NAN]).is_err());
    }
}
