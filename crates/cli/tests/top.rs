//! `easel top --once` against a real `easel serve` child process on the tiny
//! fixture model: while `top` waits between its two scrapes of `/metrics`,
//! the test keeps generating images, and the frame `top` prints must show
//! those requests (a nonzero HTTP rate, 2xx among them) and the server's
//! version. The parser's handling of the OpenMetrics text the server
//! writes is unit-tested in `src/top/exposition.rs`; this shows it on the
//! live output.

mod common;

use std::process::{Command, Stdio};

use common::{Killed, free_port, serve_tiny, wait_ready};
use serde_json::json;

#[tokio::test]
async fn top_once_shows_the_requests_a_live_server_is_serving() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Killed(serve_tiny(data.path(), port));
    let client = reqwest::Client::new();
    wait_ready(&client, &base, &mut server.0).await;

    // `--once` exits by itself after its second scrape.
    let mut top = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["top", "--once", "--interval", "1", "--url", &base])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("easel top starts");
    // Requests until `top` has taken both scrapes and printed its frame,
    // so some of them fall between the two whatever the machine's speed.
    let body = json!({ "prompt": "a red apple", "size": "16x16", "steps": 2 });
    let mut sent = 0;
    while top.try_wait().unwrap().is_none() {
        let r = client
            .post(format!("{base}/v1/images/generations"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        sent += 1;
    }
    let out = top.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sent > 0);

    let http = stdout
        .lines()
        .find(|l| l.starts_with("HTTP "))
        .unwrap_or_else(|| panic!("no HTTP line in\n{stdout}"));
    let rate: f64 = http.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(rate > 0.0, "{stdout}");
    assert!(http.contains("2xx"), "{stdout}");
    assert!(
        stdout.contains(&format!("version {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    for group in ["Success", "realtime", "Images", "Models", "Device"] {
        assert!(stdout.contains(group), "{group} missing from\n{stdout}");
    }
}

#[test]
fn top_refuses_an_interval_out_of_range_without_a_server() {
    let out = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args([
            "top",
            "--once",
            "--interval",
            "0",
            "--url",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--interval must be between"), "{err}");
}
