//! A plain in-memory picture, the currency between engine, media and storage.

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
