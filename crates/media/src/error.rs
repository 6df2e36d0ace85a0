//! The media crate's one error type.

/// Everything that can go wrong turning pixels into bytes or bytes into pixels.
///
/// Each variant has a stable machine-readable [`code`](MediaError::code);
/// the server maps codes to HTTP statuses in one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The bytes are not an image, or a damaged or truncated one.
    #[error("not a valid image: {reason}")]
    InvalidImage {
        /// What was wrong.
        reason: String,
    },

    /// An image in a format Easel does not accept (only PNG, JPEG and WebP are).
    #[error("unsupported image format {format}; expected PNG, JPEG or WebP")]
    UnsupportedFormat {
        /// The detected format, e.g. `gif`.
        format: String,
    },

    /// An image whose dimensions exceed the configured limits. Raised from
    /// the header alone, before any pixel memory is allocated.
    #[error(
        "image is {width}x{height} pixels; the limit is {max_side} pixels per side \
         and {max_pixels} pixels in all"
    )]
    ImageTooLarge {
        /// Width claimed by the header.
        width: u32,
        /// Height claimed by the header.
        height: u32,
        /// The longest side allowed.
        max_side: u32,
        /// The most pixels allowed.
        max_pixels: u64,
    },

    /// An upload larger than the configured byte limit.
    #[error("image file is {size} bytes; the limit is {max} bytes")]
    FileTooLarge {
        /// Size of the upload.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// Dimensions that cannot describe an image: zero, or not matching the
    /// pixel buffer.
    #[error("invalid dimensions: {reason}")]
    InvalidDimensions {
        /// What was wrong.
        reason: String,
    },

    /// A quality or compression level outside 0..=100.
    #[error("output_compression must be between 0 and 100, got {0}")]
    InvalidQuality(u8),

    /// The encoder failed (an internal error: valid pixels always encode).
    #[error("cannot encode {format}: {reason}")]
    Encode {
        /// The output format.
        format: &'static str,
        /// The encoder's message.
        reason: String,
    },
}

impl MediaError {
    /// The stable snake_case code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            MediaError::InvalidImage { .. } => "invalid_image",
            MediaError::UnsupportedFormat { .. } => "unsupported_image_format",
            MediaError::ImageTooLarge { .. } => "image_too_large",
            MediaError::FileTooLarge { .. } => "payload_too_large",
            MediaError::InvalidDimensions { .. } => "invalid_dimensions",
            MediaError::InvalidQuality(_) => "invalid_output_compression",
            MediaError::Encode { .. } => "encode_failed",
        }
    }

    pub(crate) fn invalid(reason: impl ToString) -> Self {
        MediaError::InvalidImage {
            reason: reason.to_string(),
        }
    }
}
