//! `easel drift` reads the figures a real `easel serve` wrote for the
//! prompts it checked: the last hours' count, and no score without a
//! baseline week.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Killed, free_port, tiny_model, wait_ready, workspace};
use serde_json::{Value, json};

#[tokio::test]
async fn easel_drift_reports_what_the_server_counted() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_easel"))
        .current_dir(workspace())
        .arg("serve")
        .arg("--model")
        .arg(tiny_model())
        .env("EASEL_DATA_DIR", data.path())
        .env("EASEL_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("EASEL_DRIFT__EVALUATE_EVERY_SECONDS", "0.2")
        .env("EASEL_WORKER__ENABLED", "false")
        .env("EASEL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut server = Killed(child);
    let client = reqwest::Client::new();
    wait_ready(&client, &base, &mut server.0).await;
    for i in 0..25 {
        let r = client
            .post(format!("{base}/v1/jobs"))
            .json(
                &json!({"prompt": format!("a red apple number {i}"), "size": "16x16", "steps": 2}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let out = Command::new(env!("CARGO_BIN_EXE_easel"))
        .current_dir(workspace())
        .args(["drift", "--json"])
        .env("EASEL_DATA_DIR", data.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["baseline_prompts"], 0, "{report}");
    assert_eq!(report["windows"][0]["window"], "1h");
    assert_eq!(report["windows"][0]["prompts"], 25, "{report}");
    assert_eq!(
        report["windows"][1]["score"],
        Value::Null,
        "no baseline week: no score"
    );
    // The text form says so too.
    let out = Command::new(env!("CARGO_BIN_EXE_easel"))
        .current_dir(workspace())
        .arg("drift")
        .env("EASEL_DATA_DIR", data.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("drift 1d  not enough prompts  (25 prompts)"),
        "{text}"
    );
}
