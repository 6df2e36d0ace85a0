//! Encoding, and reading the metadata back.

use std::io::Cursor;

use easel_core::OutputFormat;
use easel_media::{DecodeLimits, Metadata, decode_untrusted, encode, read_png_text};

use crate::helpers::{gradient, info, png_chunks};

#[test]
fn every_format_encodes_and_decodes_back_to_the_same_size() {
    let image = gradient(64, 48);
    for format in OutputFormat::ALL {
        let bytes = encode(&image, *format, None, &Metadata::none()).unwrap();
        let back = decode_untrusted(&bytes, &DecodeLimits::default()).unwrap();
        assert_eq!((back.width, back.height), (64, 48), "{format}");
        match format {
            // Lossless formats give the pixels back exactly.
            OutputFormat::Png | OutputFormat::Webp => assert_eq!(back, image, "{format}"),
            OutputFormat::Jpeg => {
                let worst = image
                    .pixels
                    .iter()
                    .zip(&back.pixels)
                    .map(|(a, b)| a.abs_diff(*b))
                    .max();
                assert!(worst.unwrap() < 40, "jpeg error {worst:?}");
            }
        }
    }
}

#[test]
fn encoded_bytes_carry_the_format_signature() {
    let image = gradient(16, 16);
    let png = encode(&image, OutputFormat::Png, None, &Metadata::none()).unwrap();
    let jpeg = encode(&image, OutputFormat::Jpeg, Some(80), &Metadata::none()).unwrap();
    let webp = encode(&image, OutputFormat::Webp, None, &Metadata::none()).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    assert!(jpeg.starts_with(&[0xFF, 0xD8, 0xFF]));
    assert!(webp.starts_with(b"RIFF") && &webp[8..12] == b"WEBP");
}

#[test]
fn jpeg_quality_changes_the_size() {
    let image = gradient(128, 128);
    let low = encode(&image, OutputFormat::Jpeg, Some(10), &Metadata::none()).unwrap();
    let high = encode(&image, OutputFormat::Jpeg, Some(100), &Metadata::none()).unwrap();
    assert!(low.len() < high.len());
    // 0 is allowed (raised to the encoder's minimum); above 100 is not.
    encode(&image, OutputFormat::Jpeg, Some(0), &Metadata::none()).unwrap();
    let err = encode(&image, OutputFormat::Jpeg, Some(101), &Metadata::none()).unwrap_err();
    assert_eq!(err.code(), "invalid_output_compression");
}

#[test]
fn png_text_chunks_are_readable_by_the_png_crate() {
    let metadata = Metadata::builder()
        .generation(info("a red apple on a table"))
        .record(serde_json::json!({"image_id": "img_1", "seed": 42, "prompt": "a red apple on a table"}))
        .build();
    let bytes = encode(&gradient(64, 48), OutputFormat::Png, None, &metadata).unwrap();

    // Read with the png crate directly, as an independent reader would.
    let decoder = png::Decoder::new(Cursor::new(&bytes));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    let parameters = info
        .uncompressed_latin1_text
        .iter()
        .find(|c| c.keyword == "parameters")
        .expect("a tEXt parameters chunk");
    assert_eq!(
        parameters.text,
        "a red apple on a table\nNegative prompt: blurry, low quality\nSteps: 20, Sampler: Euler, \
         Schedule type: Karras, CFG scale: 7.5, Seed: 42, Size: 64x48, Model hash: 0123456789, \
         Model: easel-tiny"
    );
    let easel = info
        .utf8_text
        .iter()
        .find(|c| c.keyword == "easel")
        .expect("an iTXt easel chunk");
    let record: serde_json::Value = serde_json::from_str(&easel.get_text().unwrap()).unwrap();
    assert_eq!(record["seed"], 42);

    // And through our own reader.
    let text = read_png_text(&bytes).unwrap();
    assert_eq!(
        text.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["parameters", "easel"]
    );
}

#[test]
fn text_chunks_come_before_the_image_data() {
    // Readers that stop at the first IDAT (and C2PA signing later) rely on it.
    let metadata = Metadata::builder().generation(info("x")).build();
    let bytes = encode(&gradient(8, 8), OutputFormat::Png, None, &metadata).unwrap();
    let kinds: Vec<[u8; 4]> = png_chunks(&bytes).into_iter().map(|(k, _)| k).collect();
    let text = kinds.iter().position(|k| k == b"tEXt").unwrap();
    let idat = kinds.iter().position(|k| k == b"IDAT").unwrap();
    assert!(text < idat);
}

#[test]
fn a_non_latin1_prompt_is_written_as_utf8_text() {
    let metadata = Metadata::builder()
        .generation(info("一只红苹果 🍎"))
        .build();
    let bytes = encode(&gradient(8, 8), OutputFormat::Png, None, &metadata).unwrap();
    let text = read_png_text(&bytes).unwrap();
    let (_, parameters) = text.iter().find(|(k, _)| k == "parameters").unwrap();
    assert!(parameters.starts_with("一只红苹果 🍎\n"));
}

#[test]
fn a_buffer_that_does_not_match_its_size_is_refused() {
    let mut image = gradient(8, 8);
    image.pixels.pop();
    let err = encode(&image, OutputFormat::Png, None, &Metadata::none()).unwrap_err();
    assert_eq!(err.code(), "invalid_dimensions");
}
