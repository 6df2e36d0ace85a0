//! `easel batch submit|status|approve` against a real `easel serve` child
//! process on the tiny fixture model: a TOML template and a JSONL file
//! become batches that `status --watch` follows to `completed`; a dry run
//! stops the watch with what to do next; `download` unpacks the export; a
//! file of another kind and flags out of range are refused before
//! anything is sent.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Killed, free_port, serve_tiny, wait_ready};
use serde_json::{Value, json};

/// What one `easel` run gave.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `easel ARGS`, killed (and the test failed) after two minutes: a watch
/// that never ends must not hang the suite.
fn easel(args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("EASEL_API_KEY")
        .env_remove("EASEL_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "easel {args:?} still running after 120 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A 2×2 template on `model` at the tiny model's size, with few steps.
fn write_template(path: &Path, model: &str) {
    let text = format!(
        r#"prompt = "a {{color}} {{object}}"

[variables]
color = ["red", "blue"]
object = ["lamp", "cup"]

[body]
model = "{model}"
size = "16x16"
steps = 2
"#
    );
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn batches_are_submitted_from_a_template_and_a_jsonl_file_and_watched_to_the_end() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Killed(serve_tiny(data.path(), port));
    let client = reqwest::Client::new();
    wait_ready(&client, &base, &mut server.0).await;
    let models: Value = client
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let model = models["data"][0]["id"].as_str().unwrap().to_string();
    let files = tempfile::tempdir().unwrap();

    // A template: 2 × 2 variables, 4 requests.
    let template = files.path().join("lamps.toml");
    write_template(&template, &model);
    let path = template.to_str().unwrap();
    let run = easel(&[
        "batch",
        "submit",
        path,
        "--metadata",
        "suite=cli",
        "--url",
        &base,
    ]);
    assert!(run.ok(), "{run}");
    assert!(run.stdout.contains("4 requests"), "{run}");
    assert!(run.stdout.contains("estimate:"), "{run}");
    let id = run.stdout.split_whitespace().next().unwrap().to_string();
    assert!(id.starts_with("batch_"), "{run}");

    let run = easel(&[
        "batch",
        "status",
        &id,
        "--watch",
        "--interval",
        "0.2",
        "--url",
        &base,
    ]);
    assert!(run.ok(), "{run}");
    assert!(
        run.stdout
            .contains(&format!("{id} completed: 4/4 done, 0 failed")),
        "{run}"
    );
    // Not a terminal: a plain progress line per change, on stderr.
    assert!(
        run.stderr
            .contains("completed: [####################] 4/4 done"),
        "{run}"
    );

    let run = easel(&["batch", "status", &id, "--json", "--url", &base]);
    assert!(run.ok(), "{run}");
    let batch: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(batch["metadata"], json!({"suite": "cli"}));
    assert_eq!(batch["request_counts"]["completed"], 4);

    // Approving a batch that is not a dry run: the server's refusal, in a line.
    let run = easel(&["batch", "approve", &id, "--url", &base]);
    assert!(!run.ok(), "{run}");
    assert!(run.stderr.contains("batch_not_awaiting_approval"), "{run}");

    // A JSONL file of 2 requests: uploaded, then made a batch.
    let jsonl = files.path().join("requests.jsonl");
    let lines: Vec<String> = ["a red lamp", "a blue cup"]
        .iter()
        .enumerate()
        .map(|(i, prompt)| {
            json!({
                "custom_id": format!("line-{i}"), "method": "POST", "url": "/v1/images/generations",
                "body": {"model": model, "prompt": prompt, "size": "16x16", "steps": 2},
            })
            .to_string()
        })
        .collect();
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    let run = easel(&[
        "batch",
        "submit",
        jsonl.to_str().unwrap(),
        "--json",
        "--url",
        &base,
    ]);
    assert!(run.ok(), "{run}");
    let batch: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(batch["request_counts"]["total"], 2, "{run}");
    assert!(
        batch["input_file_id"]
            .as_str()
            .unwrap()
            .starts_with("file_"),
        "{run}"
    );
    let id = batch["id"].as_str().unwrap().to_string();
    let run = easel(&[
        "batch",
        "status",
        &id,
        "--watch",
        "--interval",
        "0.2",
        "--json",
        "--url",
        &base,
    ]);
    assert!(run.ok(), "{run}");
    let batch: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(batch["status"], "completed", "{run}");
    assert_eq!(batch["request_counts"]["completed"], 2, "{run}");

    // A dry run: the watch stops at `awaiting_approval`, exits 0 and says
    // how to go on; approved, the rest runs.
    let run = easel(&["batch", "submit", path, "--dry-run", "50", "--url", &base]);
    assert!(run.ok(), "{run}");
    let id = run.stdout.split_whitespace().next().unwrap().to_string();
    let run = easel(&[
        "batch",
        "status",
        &id,
        "--watch",
        "--interval",
        "0.2",
        "--url",
        &base,
    ]);
    assert!(run.ok(), "{run}");
    assert!(run.stdout.contains("awaiting_approval"), "{run}");
    assert!(
        run.stdout
            .contains(&format!("POST /v1/batches/{id}/approve")),
        "{run}"
    );
    assert!(
        run.stdout.contains("dry run: 2 of 2 lines completed"),
        "{run}"
    );
    let run = easel(&["batch", "approve", &id, "--url", &base]);
    assert!(run.ok(), "{run}");
    let run = easel(&[
        "batch",
        "status",
        &id,
        "--watch",
        "--interval",
        "0.2",
        "--url",
        &base,
    ]);
    assert!(run.ok(), "{run}");
    assert!(run.stdout.contains("completed: 4/4 done"), "{run}");

    // Download: the export unpacked, one image per line as the manifest
    // names it, byte for byte what the server serves.
    let out = files.path().join("out");
    let run = easel(&[
        "batch",
        "download",
        &id,
        "-o",
        out.to_str().unwrap(),
        "--url",
        &base,
    ]);
    assert!(run.ok(), "{run}");
    let manifest = std::fs::read_to_string(out.join("manifest.jsonl")).unwrap();
    let entries: Vec<Value> = manifest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 4);
    for e in &entries {
        let file = out.join(e["file"].as_str().unwrap());
        let bytes = std::fs::read(&file).unwrap();
        let served = client
            .get(format!(
                "{base}/v1/images/{}/content",
                e["image_id"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(bytes, served.to_vec(), "{}", file.display());
    }
    assert!(out.join("manifest.csv").is_file());
    assert_eq!(std::fs::read_dir(out.join("images")).unwrap().count(), 4);
    let run = easel(&[
        "batch",
        "download",
        "batch_nope",
        "-o",
        out.to_str().unwrap(),
        "--url",
        &base,
    ]);
    assert!(!run.ok(), "{run}");
    assert!(run.stderr.contains("batch_not_found"), "{run}");
}

#[test]
fn a_file_that_is_neither_jsonl_nor_toml_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prompts.txt");
    std::fs::write(&file, "a red lamp\n").unwrap();
    // No server listens there: the file is refused before any call.
    let url = format!("http://127.0.0.1:{}", free_port());
    let run = easel(&["batch", "submit", file.to_str().unwrap(), "--url", &url]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("prompts.txt"), "{run}");
    assert!(
        run.stderr.contains("`.jsonl`") && run.stderr.contains("`.toml`"),
        "{run}"
    );
}

#[test]
fn flags_out_of_range_are_usage_errors_naming_the_flag() {
    for (flag, value) in [
        ("--dry-run", "0"),
        ("--dry-run", "100"),
        ("--cap", "0"),
        ("--window", "200h"),
    ] {
        let run = easel(&["batch", "submit", "t.toml", flag, value]);
        assert_eq!(run.code, Some(2), "{flag} {value}: {run}");
        assert!(run.stderr.contains(flag), "{flag} {value}: {run}");
    }
    let run = easel(&["batch", "status", "batch_1", "--interval", "0"]);
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("--interval"), "{run}");
}
