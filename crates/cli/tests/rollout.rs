//! `easel models register` and `easel rollout start|status|list|abort`
//! against a real `easel serve` child process on the tiny fixture model:
//! the commands print the version and the rollout, and what they did is
//! what the admin API shows.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Killed, free_port, serve_tiny, tiny_model, wait_ready};
use serde_json::Value;

/// A copy of the tiny model whose UNet file carries extra metadata: the
/// same weights, a new content hash.
fn resaved_copy(to: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name().to_string_lossy().starts_with(".easel") {
                continue;
            }
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    copy(&tiny_model(), to);
    let unet = to.join("unet/diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&unet).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({"saved_by": "rollout test"}),
    );
    let mut text = serde_json::to_vec(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(&unet, out).unwrap();
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

fn easel(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_version_is_registered_and_a_rollout_started_watched_and_aborted() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Killed(serve_tiny(data.path(), port));
    let client = reqwest::Client::new();
    wait_ready(&client, &base, &mut server.0).await;
    let models: Value = get_json(&client, &format!("{base}/v1/models")).await;
    let model = models["data"][0]["id"].as_str().unwrap().to_string();

    let copy = tempfile::tempdir().unwrap();
    resaved_copy(copy.path());
    let path = copy.path().to_str().unwrap();
    let (ok, out, err) = easel(&["models", "register", &model, path, "--url", &base, "--json"]);
    assert!(ok, "{out}{err}");
    let version: Value = serde_json::from_str(&out).unwrap();
    let candidate = version["version"].as_str().unwrap().to_string();
    assert!(candidate.starts_with("blake3:"), "{out}");

    let start = [
        "rollout",
        "start",
        "--model",
        &model,
        "--candidate",
        &candidate,
        "--percent",
        "10",
        "--min-requests",
        "20",
        "--url",
        &base,
    ];
    let (ok, out, err) = easel(&start);
    assert!(ok, "{out}{err}");
    assert!(out.contains("running") && out.contains(&candidate), "{out}");
    let id = out.split_whitespace().next().unwrap().to_string();
    assert!(id.starts_with("ro_"), "{out}");

    // The same start again is refused with the server's code.
    let (ok, _, err) = easel(&start);
    assert!(!ok && err.contains("rollout_exists"), "{err}");

    let (ok, out, err) = easel(&["rollout", "status", &id, "--url", &base]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("guard quality") && out.contains("pending"),
        "{out}"
    );
    let (ok, out, _) = easel(&["rollout", "list", "--url", &base]);
    assert!(ok && out.contains(&id), "{out}");

    let (ok, out, err) = easel(&["rollout", "abort", &id, "--url", &base]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("aborted"), "{out}");
    let shown: Value = get_json(&client, &format!("{base}/v1/admin/rollouts/{id}")).await;
    assert_eq!(
        (shown["state"].as_str(), shown["percent"].as_f64()),
        (Some("aborted"), Some(0.0))
    );
    assert_eq!(shown["created_by"], "anonymous");
}
