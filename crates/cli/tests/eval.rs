//! `easel eval` end to end on the bundled model, kept short with `--limit`
//! and a three-line prompt list, so CI runs it in seconds.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn bundled() -> Option<PathBuf> {
    let dir = common::bundled_model();
    if dir.join("scorer/model.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!("skipped: {} has no scorer", dir.display());
        None
    }
}

fn eval(args: &[&str], out: &Path) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_easel"))
        .arg("eval")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "easel eval failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("top-5"), "{stdout}");
    let png = std::fs::read(out.join("contact-sheet.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

/// A fresh folder under Cargo's scratch space for integration tests.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("eval-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fraction(v: &Value) -> f64 {
    let f = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!((0.0..=1.0).contains(&f), "{f} is not a fraction");
    f
}

#[test]
fn eval_on_the_first_five_prompts_writes_a_sane_report_and_sheet() {
    let Some(dir) = bundled() else {
        return;
    };
    let tmp = scratch("limit");
    let r = eval(&[dir.to_str().unwrap(), "--limit", "5"], &tmp);
    assert_eq!(r["candidates"], 100);
    assert_eq!(r["names"]["n"], 5);
    assert_eq!(r["paraphrases"]["n"], 0);
    assert!(r["paraphrases"]["top5"].is_null());
    let (top1, top5) = (fraction(&r["names"]["top1"]), fraction(&r["names"]["top5"]));
    assert!(top1 <= top5);
    let mean = r["all"]["mean_score"].as_f64().unwrap();
    assert!((-1.0..=1.0).contains(&mean));
    assert_eq!(r["near_copies"]["checked"], true);
    assert_eq!(r["near_copies"]["threshold_bits"], 2);
    fraction(&r["near_copies"]["fraction"]);
    let t = &r["seconds_per_image"];
    assert!(t["mean"].as_f64().unwrap() > 0.0);
    assert!(t["min"].as_f64().unwrap() <= t["median"].as_f64().unwrap());
    assert_eq!(r["settings"]["steps"], 8);
    let images = r["images"].as_array().unwrap();
    assert_eq!(images.len(), 5);
    for (i, img) in images.iter().enumerate() {
        assert_eq!(img["seed"], 1000 + i as u64);
        assert_eq!(img["kind"], "name");
        assert_eq!(img["top5"].as_array().unwrap().len(), 5);
        let d = img["nearest_training_image"]["distance"].as_u64().unwrap();
        assert!(d <= 64);
    }
    assert_eq!(images[0]["prompt"], "red apple");
}

#[test]
fn eval_counts_a_paraphrase_as_retrieved_through_its_listed_names() {
    let Some(dir) = bundled() else {
        return;
    };
    let tmp = scratch("paraphrase");
    let list = tmp.join("prompts.txt");
    std::fs::write(&list, "# test\nred apple\ntaco\na tasty taco = taco\n").unwrap();
    let out = tmp.join("out");
    let r = eval(
        &[dir.to_str().unwrap(), "--prompts", list.to_str().unwrap()],
        &out,
    );
    assert_eq!(r["candidates"], 2);
    assert_eq!(r["names"]["n"], 2);
    assert_eq!(r["paraphrases"]["n"], 1);
    // With two candidates every image is in the top 5.
    assert_eq!(fraction(&r["all"]["top5"]), 1.0);
    let para = &r["images"][2];
    assert_eq!(para["kind"], "paraphrase");
    assert_eq!(para["targets"], serde_json::json!(["taco"]));
    assert!(para["rank"].as_u64().unwrap() <= 1);
}

#[test]
fn eval_overrides_the_model_default_steps_and_guidance() {
    let Some(dir) = bundled() else {
        return;
    };
    let tmp = scratch("settings");
    let r = eval(
        &[
            dir.to_str().unwrap(),
            "--limit",
            "2",
            "--steps",
            "3",
            "--guidance",
            "2.5",
        ],
        &tmp,
    );
    assert_eq!(r["settings"]["steps"], 3);
    assert_eq!(r["settings"]["guidance"], 2.5);
    assert_eq!(r["images"].as_array().unwrap().len(), 2);
}

#[test]
fn eval_refuses_zero_steps_with_the_engine_error() {
    let Some(dir) = bundled() else {
        return;
    };
    let out = scratch("zero-steps");
    let output = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args([
            "eval",
            dir.to_str().unwrap(),
            "--limit",
            "1",
            "--steps",
            "0",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("steps"), "{stderr}");
    assert!(!out.join("report.json").exists());
}
