//! `easel verify` on images made here with the media functions: a marked,
//! signed PNG with metadata, a plain JPEG, and files that are no image.

use std::path::Path;
use std::process::{Command, Output};

use easel_core::{OutputFormat, RgbImage, SamplerKind, ScheduleKind};
use easel_media::{C2paSigner, ClaimInfo, GenerationInfo, Metadata, WatermarkPayload};
use serde_json::{Value, json};

fn verify(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_easel"))
        .arg("verify")
        .args(args)
        // No easel.toml here: the default data folder is this one's.
        .current_dir(dir)
        .output()
        .unwrap()
}

fn verify_json(args: &[&str], dir: &Path) -> Value {
    let out = verify(&[args, &["--json"]].concat(), dir);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A 256×256 photograph (a natural test picture of the media crate).
fn picture() -> RgbImage {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../media/tests/fixtures/natural/coffee.jpg");
    let bytes = std::fs::read(path).unwrap();
    let decoded = easel_media::decode_untrusted(&bytes, &Default::default()).unwrap();
    easel_media::resize(&decoded, 256, 256).unwrap()
}

const PAYLOAD: WatermarkPayload = WatermarkPayload {
    server: 0xbeef,
    image: 7,
};

/// The provenance a server would write: watermark, PNG text, C2PA.
fn signed_png(signer: &C2paSigner) -> Vec<u8> {
    let marked = easel_media::embed_watermark(&picture(), PAYLOAD).unwrap();
    let metadata = Metadata::builder()
        .generation(GenerationInfo {
            prompt: "a blue heron".into(),
            negative_prompt: String::new(),
            steps: 4,
            sampler: SamplerKind::Euler,
            schedule: ScheduleKind::Default,
            cfg_scale: 5.0,
            seed: 99,
            width: 256,
            height: 256,
            model_hash: "blake3:0123456789abcdef".into(),
            model: "easel-emoji".into(),
            denoising_strength: None,
            clip_skip: None,
            loras: Vec::new(),
        })
        .record(json!({"image_id": "img_test", "model": "easel-emoji"}))
        .build();
    let png = easel_media::encode(&marked, OutputFormat::Png, None, &metadata).unwrap();
    let claim = ClaimInfo {
        generator: "Easel".into(),
        version: "0.0.0-test".into(),
        model_name: "easel-emoji".into(),
        model_hash: "blake3:0123456789abcdef".into(),
        title: None,
        watermark_id: None,
    };
    signer.sign(&png, OutputFormat::Png, &claim).unwrap()
}

#[test]
fn a_marked_signed_png_shows_its_metadata_watermark_and_trusted_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let c2pa_dir = dir.path().join("easel-data/c2pa");
    let signer = C2paSigner::load_or_generate(&c2pa_dir, None).unwrap();
    assert!(c2pa_dir.join("ca.pem").is_file());
    std::fs::write(dir.path().join("out.png"), signed_png(&signer)).unwrap();

    // The default trust anchor: ./easel-data/c2pa/ca.pem.
    let report = verify_json(&["out.png"], dir.path());
    assert_eq!(report["format"], "png");
    assert_eq!(
        (report["width"].as_u64(), report["height"].as_u64()),
        (Some(256), Some(256))
    );
    assert!(
        report["metadata"]["parameters"]
            .as_str()
            .unwrap()
            .starts_with("a blue heron"),
        "{report}"
    );
    assert_eq!(report["metadata"]["easel"]["image_id"], "img_test");
    assert_eq!(report["watermark"]["id"], PAYLOAD.id());
    assert_eq!(report["watermark"]["server"], 0xbeef);
    assert!(
        report["watermark"]["confidence"].as_f64().unwrap() > 0.5,
        "{report}"
    );
    assert_eq!(report["watermark"]["method"], "easelmark-v1");
    assert_eq!(report["c2pa"]["validation_state"], "Trusted", "{report}");
    assert_eq!(report["c2pa"]["actions"], json!(["c2pa.created"]));
    assert_eq!(report["c2pa"]["model_hash"], "blake3:0123456789abcdef");
    assert!(report["trust_anchor"].as_str().unwrap().ends_with("ca.pem"));

    // Another CA: intact and well signed, but not trusted.
    let other = tempfile::tempdir().unwrap();
    C2paSigner::load_or_generate(other.path(), None).unwrap();
    let ca = other.path().join("ca.pem");
    let report = verify_json(&["out.png", "--ca", ca.to_str().unwrap()], dir.path());
    assert_eq!(report["c2pa"]["validation_state"], "Valid", "{report}");

    // Text output names each part.
    let out = verify(&["out.png"], dir.path());
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "parameters: a blue heron",
        &PAYLOAD.id(),
        "c2pa: Trusted",
        "ca.pem",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn an_image_with_nothing_to_show_still_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg =
        easel_media::encode(&picture(), OutputFormat::Jpeg, Some(90), &Metadata::none()).unwrap();
    std::fs::write(dir.path().join("plain.jpg"), jpeg).unwrap();
    let report = verify_json(&["plain.jpg"], dir.path());
    assert_eq!(report["format"], "jpeg");
    assert_eq!(report["watermark"], Value::Null);
    assert_eq!(report["c2pa"], Value::Null);
    assert_eq!(report["c2pa_error"], Value::Null);
    assert_eq!(report["trust_anchor"], Value::Null);
    let out = verify(&["plain.jpg"], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("watermark: none found") && text.contains("c2pa: no manifest"),
        "{text}"
    );
}

#[test]
fn unreadable_and_non_image_files_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let png = easel_media::encode(&picture(), OutputFormat::Png, None, &Metadata::none()).unwrap();
    std::fs::write(dir.path().join("cut.png"), &png[..png.len() / 3]).unwrap();
    for (file, message) in [
        ("missing.png", "reading missing.png"),
        ("notes.txt", "not a PNG, JPEG or WebP image"),
        ("cut.png", "decoding cut.png"),
    ] {
        let out = verify(&[file], dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file}");
        assert!(stderr.contains(message), "{file}: {stderr}");
    }
    std::fs::write(dir.path().join("ok.png"), &png).unwrap();
    let out = verify(&["ok.png", "--ca", "nope.pem"], dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading the trust anchor nope.pem"));
}
