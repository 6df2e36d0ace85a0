//! Decoding untrusted uploads.

use std::time::{Duration, Instant};

use easel_core::{OutputFormat, RgbImage};
use easel_media::{DecodeLimits, MediaError, Metadata, decode_untrusted, encode, resize};

use crate::helpers::{gradient, png_with_header};

#[test]
fn a_png_header_claiming_100000_squared_pixels_is_refused_at_once() {
    let bomb = png_with_header(100_000, 100_000);
    assert!(bomb.len() < 100);
    let started = Instant::now();
    let err = decode_untrusted(&bomb, &DecodeLimits::default()).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(err.code(), "image_too_large");
    assert!(matches!(
        err,
        MediaError::ImageTooLarge {
            width: 100_000,
            height: 100_000,
            ..
        }
    ));
    assert!(err.to_string().contains("100000x100000"));
}

#[test]
fn the_pixel_limit_applies_even_when_each_side_is_allowed() {
    let limits = DecodeLimits {
        max_side: 4096,
        max_pixels: 1_000_000,
        ..Default::default()
    };
    let err = decode_untrusted(&png_with_header(4000, 4000), &limits).unwrap_err();
    assert_eq!(err.code(), "image_too_large");
}

#[test]
fn a_truncated_png_is_an_invalid_image() {
    let bytes = encode(
        &gradient(64, 64),
        OutputFormat::Png,
        None,
        &Metadata::none(),
    )
    .unwrap();
    for cut in [bytes.len() / 2, 40, 20, 9] {
        let err = decode_untrusted(&bytes[..cut], &DecodeLimits::default()).unwrap_err();
        assert_eq!(err.code(), "invalid_image", "cut at {cut}: {err}");
    }
}

#[test]
fn a_truncated_jpeg_and_webp_are_invalid_images() {
    for format in [OutputFormat::Jpeg, OutputFormat::Webp] {
        let bytes = encode(&gradient(64, 64), format, None, &Metadata::none()).unwrap();
        let err =
            decode_untrusted(&bytes[..bytes.len() / 3], &DecodeLimits::default()).unwrap_err();
        assert_eq!(err.code(), "invalid_image", "{format}: {err}");
    }
}

#[test]
fn random_bytes_and_text_are_invalid_images() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    for bytes in [&noise[..], b"{\"prompt\": \"not an image\"}", b""] {
        let err = decode_untrusted(bytes, &DecodeLimits::default()).unwrap_err();
        assert_eq!(err.code(), "invalid_image");
    }
}

#[test]
fn other_image_formats_are_unsupported() {
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    let err = decode_untrusted(gif, &DecodeLimits::default()).unwrap_err();
    assert_eq!(err.code(), "unsupported_image_format");
}

#[test]
fn an_oversized_file_is_refused_before_it_is_read() {
    let limits = DecodeLimits {
        max_bytes: 10,
        ..Default::default()
    };
    let err = decode_untrusted(&[0u8; 11], &limits).unwrap_err();
    assert_eq!(err.code(), "payload_too_large");
}

#[test]
fn transparency_is_composited_on_white_and_grey_expanded() {
    // A 2x1 RGBA PNG: one opaque red pixel, one fully transparent pixel.
    let mut rgba = Vec::new();
    let mut encoder = png::Encoder::new(&mut rgba, 2, 1);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer
        .write_image_data(&[255, 0, 0, 255, 0, 0, 0, 0])
        .unwrap();
    writer.finish().unwrap();
    let image = decode_untrusted(&rgba, &DecodeLimits::default()).unwrap();
    assert_eq!(image.pixels, [255, 0, 0, 255, 255, 255]);

    let mut grey = Vec::new();
    let mut encoder = png::Encoder::new(&mut grey, 1, 1);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&[77]).unwrap();
    writer.finish().unwrap();
    let image = decode_untrusted(&grey, &DecodeLimits::default()).unwrap();
    assert_eq!(
        image,
        RgbImage {
            width: 1,
            height: 1,
            pixels: vec![77, 77, 77]
        }
    );
}

#[test]
fn resizing_gives_the_requested_size() {
    let image = gradient(64, 48);
    let small = resize(&image, 48, 36).unwrap();
    assert_eq!(
        (small.width, small.height, small.pixels.len()),
        (48, 36, 48 * 36 * 3)
    );
    // A flat image stays flat.
    let flat = RgbImage {
        width: 10,
        height: 10,
        pixels: vec![200; 300],
    };
    assert!(
        resize(&flat, 25, 5)
            .unwrap()
            .pixels
            .iter()
            .all(|&p| p == 200)
    );
    assert_eq!(
        resize(&image, 0, 10).unwrap_err().code(),
        "invalid_dimensions"
    );
}
