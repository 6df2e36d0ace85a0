//! The invisible watermarks through the public API: easelmark (what Easel
//! embeds) and the compatible `dwtDctSvd` mark, cross-checked against the
//! `invisible-watermark` package (`tools/watermark/reference.py` writes the
//! fixtures under `tests/fixtures/watermark/`). easelmark's cross-check
//! with its Python reference is `watermark_python.rs`.

use std::path::PathBuf;

use easel_core::RgbImage;
use easel_media::{
    WATERMARK_MIN_SIDE, WatermarkMethod, WatermarkPayload, detect_watermark,
    embed_compat_watermark, embed_watermark, upscale_for_watermark,
};

use crate::helpers::gradient;

/// The payload the reference script and these tests share.
const PAYLOAD: WatermarkPayload = WatermarkPayload {
    server: 0xE5E1,
    image: 0x1234_ABCD,
};

const FIXTURES: [&str; 2] = ["emoji", "natural"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/watermark")
        .join(name)
}

fn load(name: &str) -> RgbImage {
    let decoded = image::open(fixture(name)).unwrap().to_rgb8();
    RgbImage {
        width: decoded.width(),
        height: decoded.height(),
        pixels: decoded.into_raw(),
    }
}

fn results() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("results.json")).unwrap()).unwrap()
}

/// With `EASEL_WATERMARK_FIXTURES=write` (set by the reference script) this
/// writes the marked fixtures instead of comparing against them.
#[test]
fn fixtures_embed_reproduces_the_committed_marked_pixels() {
    let write = std::env::var("EASEL_WATERMARK_FIXTURES").as_deref() == Ok("write");
    for name in FIXTURES {
        let marked = embed_compat_watermark(&load(&format!("source_{name}.png")), PAYLOAD).unwrap();
        let path = fixture(&format!("ours_{name}.png"));
        if write {
            image::save_buffer(
                &path,
                &marked.pixels,
                marked.width,
                marked.height,
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
        } else {
            let committed = load(&format!("ours_{name}.png"));
            assert!(
                committed == marked,
                "{name}: embedding changed; rerun tools/watermark/reference.py"
            );
        }
    }
}

#[test]
fn the_reference_decoder_reads_our_bits_exactly() {
    let results = results();
    assert_eq!(results["payload_id"], PAYLOAD.id());
    let embedded = results["embedded_bits"].as_str().unwrap();
    // The reference script computes the CRC itself: its 64 bits start with
    // our id, and our own decoder accepts the same marks.
    assert!(embedded.starts_with(&PAYLOAD.id()));
    for name in FIXTURES {
        assert_eq!(results["ours_read_by_reference"][name], embedded, "{name}");
        let reading = detect_watermark(&load(&format!("ours_{name}.png"))).unwrap();
        assert_eq!(reading.payload, PAYLOAD, "{name}");
        assert_eq!(reading.method, WatermarkMethod::DwtDctSvd, "{name}");
    }
}

/// The reference encoder's own mark on the white-backed emoji does not
/// survive its 8-bit round trip (its own decoder reads other bits there:
/// it truncates pixels and clips white), so Easel must agree with the
/// reference decoder: read the payload where it does, nothing where it
/// does not, and at least the natural picture must be read.
#[test]
fn we_read_the_reference_encoders_mark_wherever_the_reference_does() {
    let results = results();
    let embedded = results["embedded_bits"].as_str().unwrap();
    for name in FIXTURES {
        let reference_ok =
            results["reference_marked"][name]["reference_reads_its_own_mark"] == embedded;
        let reading = detect_watermark(&load(&format!("ref_{name}.png")));
        let expected = if reference_ok { Some(PAYLOAD) } else { None };
        assert_eq!(reading.map(|r| r.payload), expected, "{name}");
    }
    assert_eq!(
        results["reference_marked"]["natural"]["reference_reads_its_own_mark"],
        embedded
    );
}

#[test]
fn sources_carry_no_watermark() {
    for name in FIXTURES {
        assert_eq!(
            detect_watermark(&load(&format!("source_{name}.png"))),
            None,
            "{name}"
        );
    }
}

#[test]
fn embed_then_detect_round_trips_on_a_non_square_image() {
    let image = gradient(300, 260);
    let marked = embed_watermark(&image, PAYLOAD).unwrap();
    let reading = detect_watermark(&marked).unwrap();
    assert_eq!(reading.payload, PAYLOAD);
    assert_eq!(reading.method, WatermarkMethod::Easelmark);
    assert!(reading.confidence > 0.9, "{}", reading.confidence);
    let transform = reading.transform.unwrap();
    assert!((transform.scale - 1.0).abs() < 0.01, "{transform:?}");
    assert_eq!(detect_watermark(&image), None);
    // The compatible mark still reads (older images carry it).
    let old = embed_compat_watermark(&image, PAYLOAD).unwrap();
    let reading = detect_watermark(&old).unwrap();
    assert_eq!(
        (reading.payload, reading.method),
        (PAYLOAD, WatermarkMethod::DwtDctSvd)
    );
}

#[test]
fn embed_rejects_an_image_below_the_minimum_side() {
    let error = embed_watermark(
        &gradient(WATERMARK_MIN_SIDE + 100, WATERMARK_MIN_SIDE - 1),
        PAYLOAD,
    )
    .unwrap_err();
    assert_eq!(error.code(), "image_too_small");
    assert!(
        error.to_string().contains(&WATERMARK_MIN_SIDE.to_string()),
        "{error}"
    );
    let malformed = RgbImage {
        width: 300,
        height: 300,
        pixels: vec![0; 10],
    };
    assert_eq!(
        embed_watermark(&malformed, PAYLOAD).unwrap_err().code(),
        "invalid_dimensions"
    );
    assert_eq!(detect_watermark(&malformed), None);
}

#[test]
fn upscale_uses_the_smallest_integer_factor_and_repeats_pixels() {
    let small = gradient(32, 40);
    let big = upscale_for_watermark(&small).unwrap();
    assert_eq!((big.width, big.height), (256, 320));
    for (x, y) in [(0, 0), (7, 7), (8, 0), (255, 319), (100, 200)] {
        let at = |image: &RgbImage, x: u32, y: u32| {
            let i = ((y * image.width + x) * 3) as usize;
            image.pixels[i..i + 3].to_vec()
        };
        assert_eq!(at(&big, x, y), at(&small, x / 8, y / 8));
    }
    // 100 px needs a factor of 3 (300 px), not 2.56 rounded down.
    assert_eq!(
        upscale_for_watermark(&gradient(100, 500)).unwrap().width,
        300
    );
    assert_eq!(
        upscale_for_watermark(&gradient(WATERMARK_MIN_SIDE, 600)),
        None
    );
    let empty = RgbImage {
        width: 0,
        height: 0,
        pixels: vec![],
    };
    assert_eq!(upscale_for_watermark(&empty), None);
}

/// The compatible mark is read only above a confidence that noise does not
/// reach (a bare CRC-16 lets one unmarked read in about 22,000 through);
/// a real mark stays far above it after JPEG 75 and a 0.5× downscale.
#[test]
fn the_compatible_mark_reads_with_high_confidence_after_jpeg_and_downscaling() {
    let marked = [
        load("ours_natural.png"),
        embed_compat_watermark(&gradient(300, 260), PAYLOAD).unwrap(),
    ];
    for image in &marked {
        let mut variants = Vec::new();
        for q in [90u8, 75] {
            let mut buf = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, q)
                .encode(
                    &image.pixels,
                    image.width,
                    image.height,
                    image::ExtendedColorType::Rgb8,
                )
                .unwrap();
            let d = image::load_from_memory(&buf).unwrap().to_rgb8();
            variants.push(RgbImage {
                width: d.width(),
                height: d.height(),
                pixels: d.into_raw(),
            });
        }
        for scale in [0.75, 0.5] {
            let (w, h) = (
                (f64::from(image.width) * scale) as u32,
                (f64::from(image.height) * scale) as u32,
            );
            variants.push(easel_media::resize(image, w, h).unwrap());
        }
        for v in variants {
            let reading = detect_watermark(&v).expect("read");
            assert_eq!(
                (reading.payload, reading.method),
                (PAYLOAD, WatermarkMethod::DwtDctSvd)
            );
            assert!(reading.confidence >= 0.9, "{}", reading.confidence);
        }
    }
}
