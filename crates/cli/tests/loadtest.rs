//! `easel loadtest` against a real `easel serve` child process on the tiny
//! fixture model: closed and open loop, sync and jobs mode, an all-failing
//! run, and the flags it refuses (a remote target, out-of-range load).
//! Every report's counts must add up: requests = succeeded + Σ errors.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Killed, free_port, serve_tiny, workspace};
use serde_json::Value;

/// A server killed when dropped (before its data folder is removed).
struct Server {
    _child: Killed,
    base: String,
    _data: tempfile::TempDir,
}

fn serve() -> Server {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Killed(serve_tiny(data.path(), port));
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read as _, Write as _};
            let _ = s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
            let mut head = String::new();
            let _ = s.read_to_string(&mut head);
            if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "easel serve not ready after 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Server {
        _child: child,
        base,
        _data: data,
    }
}

fn loadtest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_easel"))
        .current_dir(workspace())
        .arg("loadtest")
        .args(args)
        .output()
        .expect("easel loadtest runs")
}

/// Runs a load test that must exit 0 and returns its JSON report, after
/// checking that its counts add up.
fn report(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--json", json.to_str().unwrap()]);
    let out = loadtest(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("throughput"), "{stdout}");
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let requests = r["requests"].as_u64().unwrap();
    let succeeded = r["succeeded"].as_u64().unwrap();
    let errors: u64 = r["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(requests, succeeded + errors, "{r:#}");
    assert_eq!(r["failed"].as_u64().unwrap(), errors, "{r:#}");
    r
}

#[test]
fn loadtest_reports_add_up_in_every_mode_against_a_real_server() {
    let server = serve();
    let base = server.base.as_str();
    let small = ["--size", "16x16", "--steps", "2"];

    // Closed loop, synchronous generations.
    let mut args = vec![
        "--url",
        base,
        "--concurrency",
        "2",
        "--duration",
        "2",
        "--mode",
        "sync",
    ];
    args.extend(small);
    let r = report(&args);
    assert!(r["succeeded"].as_u64().unwrap() >= 2, "{r:#}");
    assert_eq!(r["images"], r["succeeded"], "{r:#}");
    assert_eq!(r["load"]["concurrency"], 2);
    let l = &r["latency"];
    assert!(l["p50_ms"].as_f64().unwrap() > 0.0, "{r:#}");
    assert!(
        l["p50_ms"].as_f64() <= l["p95_ms"].as_f64()
            && l["p95_ms"].as_f64() <= l["p99_ms"].as_f64()
    );

    // Open loop, jobs followed to completion: 4/s for 2 s starts exactly 8.
    let mut args = vec![
        "--url",
        base,
        "--rate",
        "4",
        "--duration",
        "2",
        "--mode",
        "jobs",
        "--tier",
        "batch",
    ];
    args.extend(small);
    let r = report(&args);
    assert_eq!(r["requests"], 8, "{r:#}");
    assert_eq!(r["succeeded"], 8, "{r:#}");
    assert_eq!(r["images"], 8, "{r:#}");

    // Every request refused: each lands in the error breakdown by status and code.
    let r = report(&[
        "--url",
        base,
        "--rate",
        "5",
        "--duration",
        "1",
        "--size",
        "17x3",
    ]);
    assert_eq!(r["requests"], 5, "{r:#}");
    assert_eq!(r["succeeded"], 0, "{r:#}");
    assert!(r["latency"].is_null());
    let errors = r["errors"].as_object().unwrap();
    assert_eq!(errors.len(), 1, "{r:#}");
    let (label, count) = errors.iter().next().unwrap();
    assert!(label.starts_with("400 "), "{label}");
    assert_eq!(count, 5);
}

#[test]
fn loadtest_refuses_a_remote_url_without_the_flag_and_unbounded_load() {
    let out = loadtest(&[
        "--url",
        "http://192.0.2.7:8080",
        "--rate",
        "1",
        "--duration",
        "1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("--allow-remote"),
        "{err}"
    );

    for (args, want) in [
        (
            vec!["--rate", "1001", "--duration", "1"],
            "--rate must be above 0 and at most 1000",
        ),
        (
            vec!["--rate", "0", "--duration", "1"],
            "--rate must be above 0",
        ),
        (
            vec!["--concurrency", "257", "--duration", "1"],
            "--concurrency must be between 1 and 256",
        ),
        (
            vec!["--concurrency", "1", "--duration", "3601"],
            "--duration must be above 0 and at most 3600",
        ),
    ] {
        let out = loadtest(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
