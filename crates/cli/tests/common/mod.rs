//! Helpers shared by the CLI integration tests that run the real `easel`
//! binary: where the workspace and its models are, a free port, an
//! `easel serve` child on the tiny fixture model, a guard that kills a child
//! when dropped, and waiting for `/readyz`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tiny fixture model: fast, and its pictures mean nothing.
pub fn tiny_model() -> PathBuf {
    workspace().join("crates/engine/tests/fixtures/models/tiny-pixel")
}

/// The model bundled in `models/easel-emoji`.
pub fn bundled_model() -> PathBuf {
    workspace().join("models/easel-emoji")
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `easel serve` on the tiny model, listening on `port` with its data in
/// `data`, logging warnings only.
pub fn serve_tiny(data: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_easel"))
        .current_dir(workspace())
        .arg("serve")
        .arg("--model")
        .arg(tiny_model())
        .env("EASEL_DATA_DIR", data)
        .env("EASEL_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("EASEL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("easel serve starts")
}

/// Waits up to 120 s for `{base}/readyz` to answer 200; panics sooner if
/// `child` (the server) exits first.
pub async fn wait_ready(client: &reqwest::Client, base: &str, child: &mut Child) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("easel serve exited before it was ready: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("easel serve not ready after 120 s");
}

/// Files under `dir`, counted recursively (0 when it does not exist).
pub fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() { count_files(&p) } else { 1 }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The JSON answer of `GET url`.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}
