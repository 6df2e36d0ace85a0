//! `easel models list`: read from configs and safetensors headers, never
//! by loading the network.

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// A copy of the tiny fixture model (without any hash cache) in `dir`.
fn copy_model(dir: &Path) -> std::path::PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &to.join(&name));
            } else {
                std::fs::copy(entry.path(), to.join(&name)).unwrap();
            }
        }
    }
    let to = dir.join("tiny-pixel");
    copy(&common::tiny_model(), &to);
    to
}

fn list(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["models", "list"])
        .args(args)
        .current_dir(dir)
        .env("EASEL_LOG", "warn")
        .output()
        .expect("easel runs")
}

#[test]
fn a_model_lists_with_its_columns_and_its_hash_once_computed() {
    let tmp = tempfile::tempdir().unwrap();
    let model = copy_model(tmp.path());
    let out = list(&["--model", model.to_str().unwrap()], tmp.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "ARCHITECTURE", "SIZE", "HASH", "STATE", "PATH"]
    );
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[1].starts_with("tiny-pixel "), "{stdout}");
    assert!(lines[1].contains(" pixel "), "{stdout}");
    assert!(
        [" B ", " KiB ", " MiB "]
            .iter()
            .any(|u| lines[1].contains(u)),
        "{stdout}"
    );
    assert!(lines[1].contains("not computed"), "{stdout}");
    assert!(lines[1].contains(" ok "), "{stdout}");

    // --hash computes it and caches it; the next plain list shows it.
    let out = list(&["--model", model.to_str().unwrap(), "--hash"], tmp.path());
    assert!(out.status.success(), "{out:?}");
    assert!(model.join(".easel-content-hash.json").is_file());
    let out = list(&["--model", model.to_str().unwrap(), "--json"], tmp.path());
    assert!(out.status.success(), "{out:?}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &rows[0];
    assert_eq!(row["name"], "tiny-pixel");
    assert_eq!(row["architecture"], "pixel");
    assert_eq!(row["state"], "ok");
    assert!(row["disk_bytes"].as_u64().unwrap() > 0);
    assert!(
        row["content_hash"].as_str().unwrap().starts_with("blake3:"),
        "{row}"
    );
}

#[test]
fn a_folder_whose_weights_are_truncated_still_lists_because_nothing_is_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let model = copy_model(tmp.path());
    // Keep the header (8 bytes of length + JSON) and a few data bytes: a
    // load would fail, the headers still name every tensor.
    let weights = model.join("unet/diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    std::fs::write(&weights, &bytes[..8 + header_len + 16]).unwrap();

    let out = list(&["--model", model.to_str().unwrap()], tmp.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = stdout.lines().nth(1).expect("a row for the model");
    assert!(line.contains(" pixel "), "{stdout}");
    assert!(line.contains(" damaged "), "{stdout}");
    assert!(line.contains("truncated"), "{stdout}");
}
