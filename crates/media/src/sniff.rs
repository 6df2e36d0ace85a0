//! Recognising an image format from its first bytes.
//!
//! The upload's content type and file name are the client's claims; the
//! magic bytes are what the decoder will actually see.

use image::ImageFormat;

use crate::error::MediaError;

/// The output format `bytes` are in (PNG, JPEG or WebP, from the magic
/// bytes); `None` for anything else.
pub fn sniff_format(bytes: &[u8]) -> Option<easel_core::OutputFormat> {
    use easel_core::OutputFormat;
    match sniff(bytes) {
        Ok(ImageFormat::Png) => Some(OutputFormat::Png),
        Ok(ImageFormat::Jpeg) => Some(OutputFormat::Jpeg),
        Ok(ImageFormat::WebP) => Some(OutputFormat::Webp),
        _ => None,
    }
}

/// The decoder to use for `bytes`: PNG, JPEG or WebP. Other image formats
/// are [`MediaError::UnsupportedFormat`]; anything else is
/// [`MediaError::InvalidImage`].
pub(crate) fn sniff(bytes: &[u8]) -> Result<ImageFormat, MediaError> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageFormat::Png);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageFormat::Jpeg);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(ImageFormat::WebP);
    }
    let other = if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("gif")
    } else if bytes.starts_with(b"BM") && bytes.len() >= 14 {
        Some("bmp")
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        Some("tiff")
    } else if bytes.starts_with(&[0, 0, 1, 0]) {
        Some("ico")
    } else if bytes.starts_with(b"qoif") {
        Some("qoi")
    } else if bytes.starts_with(b"8BPS") {
        Some("psd")
    } else if bytes.starts_with(&[0xFF, 0x0A]) || bytes.starts_with(b"\0\0\0\x0cJXL ") {
        Some("jpeg_xl")
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        match &bytes[8..12] {
            b"avif" | b"avis" => Some("avif"),
            b"heic" | b"heix" | b"mif1" | b"msf1" => Some("heif"),
            _ => None,
        }
    } else {
        None
    };
    match other {
        Some(format) => Err(MediaError::UnsupportedFormat {
            format: format.into(),
        }),
        None => Err(MediaError::invalid(
            "the data does not start with the signature of any image format",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_formats_are_recognised() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").unwrap(), ImageFormat::Png);
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]).unwrap(), ImageFormat::Jpeg);
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8L").unwrap(), ImageFormat::WebP);
    }

    #[test]
    fn other_images_are_unsupported_and_the_rest_invalid() {
        assert_eq!(
            sniff(b"GIF89a....").unwrap_err().code(),
            "unsupported_image_format"
        );
        assert_eq!(
            sniff(b"\0\0\0\x1cftypavif").unwrap_err().code(),
            "unsupported_image_format"
        );
        assert_eq!(sniff(b"hello world").unwrap_err().code(), "invalid_image");
        assert_eq!(sniff(b"").unwrap_err().code(), "invalid_image");
    }
}
