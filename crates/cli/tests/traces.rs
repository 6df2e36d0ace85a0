//! Logs and traces of the real `easel serve` process: JSON log lines carry
//! the request and job ids, and spans reach an OTLP/HTTP collector in the
//! trace the client's `traceparent` started.
//!
//! A child process, because a process has one global tracing subscriber.
//! The collector is a bare HTTP/1.1 listener that keeps every request body;
//! OTLP protobuf stores span names and trace ids as raw bytes, so finding
//! them in the bodies needs no protobuf decoder.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bundled_model, free_port, wait_ready};
use serde_json::{Value, json};

const REQUEST_ID: &str = "trace-test-req-1";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// Every request a [`collector`] received: (request line, body).
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP stand-in on 127.0.0.1: answers every request 200 with an
/// empty protobuf body (an `ExportTraceServiceResponse` with no fields).
fn collector() -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let keep = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let keep = keep.clone();
            std::thread::spawn(move || serve_connection(stream, &keep));
        }
    });
    (port, received)
}

/// Reads requests off one (keep-alive) connection until it closes.
fn serve_connection(stream: TcpStream, received: &Received) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        received
            .lock()
            .unwrap()
            .push((request_line.trim_end().to_string(), body));
        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n\
                      content-length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

fn serve(data: &Path, port: u16, otlp: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_easel"))
        .arg("serve")
        .arg("--model")
        .arg(bundled_model())
        .arg("--log-format")
        .arg("json")
        .env("EASEL_DATA_DIR", data)
        .env("EASEL_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "EASEL_TELEMETRY__OTLP_ENDPOINT",
            format!("http://127.0.0.1:{otlp}"),
        )
        .env_remove("EASEL_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("easel serve starts")
}

/// Collects a pipe's lines on a thread, so the child never blocks on it.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || BufReader::new(pipe).lines().map_while(Result::ok).collect())
}

#[tokio::test]
async fn json_logs_and_otlp_spans_follow_one_request_into_its_job() {
    let data = tempfile::tempdir().unwrap();
    let (otlp, received) = collector();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    let mut child = serve(data.path(), port, otlp);
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    wait_ready(&client, &base, &mut child).await;

    let response = client
        .post(format!("{base}/v1/images/generations"))
        .header("x-request-id", REQUEST_ID)
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"))
        .json(&json!({ "prompt": "a red apple", "steps": 2, "seed": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(response.headers()["x-request-id"], REQUEST_ID);

    // SIGTERM: the graceful path, which flushes the span exporter.
    let term = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(term.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "easel serve did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut lines = stdout.join().unwrap();
    lines.extend(stderr.join().unwrap());
    assert!(
        status.success(),
        "exit {status}; output:\n{}",
        lines.join("\n")
    );

    // Every log line is a JSON object; one inside the job carries both ids.
    let logs: Vec<Value> = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        logs.iter()
            .all(|l| l["timestamp"].is_string() && l["level"].is_string()),
        "{logs:?}"
    );
    let in_job = logs
        .iter()
        .find(|l| {
            l["request_id"] == REQUEST_ID
                && l["job_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("job_"))
        })
        .unwrap_or_else(|| panic!("no log line with the request and job ids: {logs:#?}"));
    assert_eq!(in_job["trace_id"], TRACE_ID, "{in_job}");

    // The collector got the spans, in the client's trace.
    let exports = received.lock().unwrap().clone();
    assert!(!exports.is_empty(), "no OTLP export arrived");
    assert!(
        exports
            .iter()
            .all(|(line, _)| line.starts_with("POST /v1/traces ")),
        "{:?}",
        exports.iter().map(|(l, _)| l).collect::<Vec<_>>()
    );
    let bytes: Vec<u8> = exports.into_iter().flat_map(|(_, body)| body).collect();
    for name in [
        "http.request",
        "job.run",
        "engine.generate",
        "engine.text_encode",
        "engine.denoise",
        "postprocess",
        "post.encode",
        "store",
        "easel",
    ] {
        assert!(
            count(&bytes, name.as_bytes()) > 0,
            "span `{name}` not exported"
        );
    }
    // The request's span alone would carry the trace id once; the job's
    // spans (job.run and everything under it) carry it too.
    // `http.request`'s parent is the client's span.
    assert!(
        count(&bytes, &hex_bytes(CLIENT_SPAN_ID)) > 0,
        "no span has the client's span as parent"
    );
    let in_trace = count(&bytes, &hex_bytes(TRACE_ID));
    assert!(in_trace >= 5, "only {in_trace} spans in the client's trace");
}
