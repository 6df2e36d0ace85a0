//! The record's JSON form and the watermark tag as a function of its typed
//! fields.

use easel_core::{ImageId, SamplerKind, ScheduleKind};

use super::*;
use crate::testing::{FAKE_HASH, fake_info, fake_params};

fn record() -> GenerationRecord {
    GenerationRecord::new(
        &fake_params("16x16", 1),
        &fake_info(),
        10,
        SamplerKind::Euler,
        ImageId::new(),
    )
}

#[test]
fn the_record_carries_the_rendering_models_name_and_hash() {
    let r = record();
    assert_eq!(
        (r.model.as_str(), r.model_hash.as_str()),
        ("fake", FAKE_HASH)
    );
    let json = r.to_json();
    assert_eq!(json["model_hash"], FAKE_HASH);
    assert_eq!(json["image_id"], r.image_id.to_string());
    assert_eq!(json["sampler"], "euler");
    assert_eq!(json["generator"], "easel");
    assert!(json.get("watermark_id").is_none(), "{json}");
}

#[test]
fn the_same_record_gives_the_same_tag() {
    let r = record();
    assert_eq!(r.image_tag(), r.clone().image_tag());
}

/// A named edit of one record field.
type Change = (&'static str, fn(&mut GenerationRecord));

#[test]
fn every_field_that_determines_the_pixels_changes_the_tag() {
    let base = record();
    let changes: [Change; 13] = [
        ("model_hash", |r| r.model_hash.push('0')),
        ("prompt", |r| r.prompt.push('!')),
        ("negative_prompt", |r| r.negative_prompt = "blurry".into()),
        ("seed", |r| r.seed += 1),
        ("steps", |r| r.steps += 1),
        ("guidance_scale", |r| r.guidance_scale += 0.5),
        ("sampler", |r| r.sampler = SamplerKind::Heun),
        ("schedule", |r| {
            r.schedule = match r.schedule {
                ScheduleKind::Karras => ScheduleKind::Exponential,
                _ => ScheduleKind::Karras,
            }
        }),
        ("strength", |r| r.strength = Some(0.5)),
        ("width", |r| r.width *= 2),
        ("height", |r| r.height *= 2),
        ("loras", |r| {
            r.loras.push(easel_core::LoraRef {
                name: "l".into(),
                weight: 1.0,
                hash: Some("sha256:00".into()),
            })
        }),
        ("loras' weight", |r| {
            r.loras.push(easel_core::LoraRef {
                name: "l".into(),
                weight: 0.5,
                hash: Some("sha256:00".into()),
            })
        }),
    ];
    for (field, change) in changes {
        let mut changed = base.clone();
        change(&mut changed);
        assert_ne!(changed.image_tag(), base.image_tag(), "{field}");
    }
}

#[test]
fn what_only_names_the_image_leaves_the_tag_alone() {
    let base = record();
    let mut other = base.clone();
    other.image_id = ImageId::new();
    other.watermark_id = Some("00abdeadbeef".into());
    other.version = "0.0.0".into();
    other.model = "renamed".into();
    assert_eq!(other.image_tag(), base.image_tag());
}

#[test]
fn a_string_boundary_cannot_move_between_fields() {
    // "ab" + "c" and "a" + "bc" concatenate alike; the length prefixes
    // keep them apart.
    let mut a = record();
    (a.prompt, a.negative_prompt) = ("ab".into(), "c".into());
    let mut b = record();
    (b.prompt, b.negative_prompt) = ("a".into(), "bc".into());
    assert_ne!(a.tag_bytes(), b.tag_bytes());
}

#[test]
fn the_tag_does_not_depend_on_how_the_json_was_written() {
    let r = record();
    // The same record, written pretty-printed with its keys reversed.
    let serde_json::Value::Object(map) = r.to_json() else {
        unreachable!()
    };
    let reversed: Vec<String> = map
        .iter()
        .rev()
        .map(|(k, v)| format!("  {}: {}", serde_json::to_string(k).unwrap(), v))
        .collect();
    let text = format!("{{\n{}\n}}", reversed.join(",\n"));
    assert_ne!(text, r.to_json().to_string());
    let read: GenerationRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(read, r);
    assert_eq!(read.image_tag(), r.image_tag());
}

#[test]
fn the_encoding_is_the_documented_one() {
    let mut r = record();
    r.model_hash = "h".into();
    r.prompt = "p".into();
    r.negative_prompt = String::new();
    r.seed = 1;
    r.steps = 2;
    r.guidance_scale = 1.0;
    r.schedule = ScheduleKind::Default;
    r.strength = None;
    (r.width, r.height) = (16, 32);
    let mut want = b"easel.image-tag.v1\0".to_vec();
    want.extend_from_slice(&[0, 0, 0, 1, b'h']);
    want.extend_from_slice(&[0, 0, 0, 1, b'p']);
    want.extend_from_slice(&[0, 0, 0, 0]);
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
    want.extend_from_slice(&[0, 0, 0, 2]);
    want.extend_from_slice(&[0x3f, 0x80, 0, 0]);
    want.extend_from_slice(&[0, 0, 0, 5]);
    want.extend_from_slice(b"euler");
    want.extend_from_slice(&[0, 0, 0, 7]);
    want.extend_from_slice(b"default");
    want.push(0);
    want.extend_from_slice(&[0, 0, 0, 16, 0, 0, 0, 32]);
    assert_eq!(r.tag_bytes(), want);
    let hash = blake3::hash(&want);
    let b = hash.as_bytes();
    assert_eq!(r.image_tag(), u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
}
