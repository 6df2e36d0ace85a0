//! `spawn_app()` and one helper per endpoint.
//!
//! Each test gets the real server on 127.0.0.1:0 with a fresh data folder
//! (database and images) and the engine's tiny pixel-space fixture model,
//! and talks to it with a real HTTP client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use easel_config::{Config, ModelEntry};
use easel_jobs::{Jobs, Worker};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The name the fixture model is served under.
pub const MODEL: &str = "fixture";

/// A running server for one test.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A plain HTTP client.
    pub client: reqwest::Client,
    /// The job handle, for reading the store and submitting directly.
    pub jobs: Jobs,
    /// The server's worker, for stepping jobs by hand.
    pub worker: Worker,
    /// A batch driver, for stepping batches by hand.
    pub batches: std::sync::Arc<easel_jobs::batches::BatchDriver>,
    /// The data folder (deleted on drop).
    pub data_dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The engine's pixel-space fixture model folder.
pub fn fixture_model() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures/models");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("no fixture models in {}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model_index.json").exists() || p.join("config.json").exists())
        .collect();
    candidates.sort();
    // Prefer a model named as pixel-space; otherwise the first one.
    candidates
        .iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("pixel"))
        })
        .or(candidates.first())
        .cloned()
        .unwrap_or_else(|| panic!("no model folder under {}", root.display()))
}

/// The config every test starts from.
#[allow(clippy::field_reassign_with_default)]
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.data_dir = data_dir.to_path_buf();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.shutdown_grace_seconds = 5;
    config.models = vec![ModelEntry {
        name: MODEL.into(),
        path: fixture_model(),
    }];
    config.default_model = Some(MODEL.into());
    config.worker.sync_timeout_seconds = 120;
    // The shipped moderation models, by absolute path (tests run in the
    // crate's folder, not the repository root).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    config.moderation.semantic_model = Some(root.join("models/easel-emoji"));
    config.moderation.image_model = Some(root.join("models/open-nsfw/open_nsfw.onnx"));
    // The fixture model ships no scorer: score its images with the bundled
    // model's, so the quality stage runs in every test.
    config.quality.scorer = Some(quality_scorer());
    // PostgreSQL and S3 when the environment asks for them (`backend`).
    let backend = crate::backend::for_data_dir(data_dir);
    config.database.url = backend.database_url.map(easel_config::DatabaseUrl::new);
    config.storage.url = backend.storage_url;
    config
}

/// The bundled model's quality scorer folder.
pub fn quality_scorer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/easel-emoji/scorer")
}

/// Fresh API keys with these names and scopes: the keys (in order) and the
/// `[auth]` section that accepts them, parsed from the TOML entries
/// `create_key` prints, as an operator would paste them.
pub fn auth_with_keys(
    keys: &[(&str, &[easel_server::auth::Scope])],
) -> (Vec<String>, easel_config::AuthConfig) {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        auth: easel_config::AuthConfig,
    }
    let (secrets, entries): (Vec<String>, Vec<String>) = keys
        .iter()
        .map(|(name, scopes)| easel_server::auth::create_key(name, scopes))
        .unzip();
    let auth = toml::from_str::<Wrapper>(&entries.join("\n")).unwrap().auth;
    (secrets, auth)
}

/// With `EASEL_TEST_LOGS=1`, every log line of the servers this test
/// binary runs goes to stderr as production writes it (JSON, at debug
/// level): CI scans that output for key material (`.ci/scan-secrets`).
pub fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if std::env::var("EASEL_TEST_LOGS").as_deref() != Ok("1") {
        return;
    }
    ONCE.call_once(|| {
        let settings = easel_telemetry::trace::TraceSettings {
            log_format: easel_telemetry::trace::LogFormat::Json,
            ..easel_telemetry::trace::TraceSettings::logs_only("debug,sqlx=warn,hyper=info,h2=info")
        };
        // Kept for the whole process: no exporter to flush.
        std::mem::forget(easel_telemetry::trace::init(&settings).expect("one subscriber"));
    });
}

/// The server with its worker running.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The server with the config changed first (e.g. the worker turned off,
/// so jobs stay queued until [`TestApp::run_pending_jobs`]).
pub async fn spawn_app_with(change: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_clock(change, easel_core::SystemClock::shared()).await
}

/// [`spawn_app_with`] on `clock`: a test that passes a
/// [`easel_core::ManualClock`] moves past deadlines and link expiry with
/// `advance` instead of sleeping.
pub async fn spawn_app_with_clock(
    change: impl FnOnce(&mut Config),
    clock: easel_core::SharedClock,
) -> TestApp {
    capture_logs();
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(data_dir.path());
    change(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = easel_server::Application::build_with_clock(config, listener, clock)
        .await
        .expect("the server builds");
    let addr = app.local_addr();
    let jobs = app.jobs();
    let worker = app.worker().expect("the test app runs a worker");
    let batches = std::sync::Arc::new(app.batch_driver());
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    let app = TestApp {
        addr,
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        jobs,
        worker,
        batches,
        data_dir,
        shutdown: Some(tx),
        server: Some(server),
    };
    app.wait_until_ready().await;
    app
}

/// Builds the server from `config` on 127.0.0.1:0 expecting startup to
/// fail, and returns the error with its causes (`{err:#}`).
pub async fn startup_error(config: Config) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    match easel_server::Application::build(config, listener).await {
        Ok(_) => panic!("the server started; this config should stop startup"),
        Err(err) => format!("{err:#}"),
    }
}

impl TestApp {
    /// A full URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Polls `/readyz` until the model has loaded.
    pub async fn wait_until_ready(&self) {
        for _ in 0..600 {
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let body = self
            .client
            .get(self.url("/readyz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        panic!("server not ready after 60 s: {body}");
    }

    /// One pass of the batch driver (for apps spawned with
    /// `batches.drive` off).
    pub async fn tick_batches(&self) {
        self.batches.tick().await.expect("the batch driver runs");
    }

    /// Runs every queued job now (for apps spawned with the worker off).
    pub async fn run_pending_jobs(&self) -> usize {
        self.worker.run_pending().await.expect("jobs run")
    }

    /// Sends SIGTERM's equivalent and waits for a clean exit. The data
    /// folder stays until the app is dropped.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().unwrap().await.expect("server task")
    }

    /// `POST /v1/images/generations`.
    pub async fn generate(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/images/generations"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/images/edits` with an image file and text fields.
    pub async fn edit(&self, image: Vec<u8>, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new().part(
            "image",
            reqwest::multipart::Part::bytes(image)
                .file_name("input.png")
                .mime_str("image/png")
                .unwrap(),
        );
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        self.client
            .post(self.url("/v1/images/edits"))
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/jobs`.
    pub async fn create_job(
        &self,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url("/v1/jobs")).json(body);
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await.unwrap()
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn get_job(&self, id: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/v1/jobs/{id}")))
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/jobs?query`.
    pub async fn list_jobs(&self, query: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/v1/jobs?{query}")))
            .send()
            .await
            .unwrap()
    }

    /// `DELETE /v1/jobs/{id}`.
    pub async fn cancel_job(&self, id: &str) -> reqwest::Response {
        self.client
            .delete(self.url(&format!("/v1/jobs/{id}")))
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/jobs/{id}/events`, read to the end: `(event name, data)`.
    pub async fn job_events(&self, id: &str) -> Vec<(String, Value)> {
        let r = self
            .client
            .get(self.url(&format!("/v1/jobs/{id}/events")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream"),
            "{:?}",
            r.headers()
        );
        let body = tokio::time::timeout(Duration::from_secs(120), r.text())
            .await
            .expect("the event stream ends")
            .unwrap();
        parse_sse(&body)
    }

    /// `GET /v1/images/{id}`.
    pub async fn get_image(&self, id: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/v1/images/{id}")))
            .send()
            .await
            .unwrap()
    }

    /// `GET` of an absolute URL or a path.
    pub async fn get(&self, url_or_path: &str) -> reqwest::Response {
        let url = if url_or_path.starts_with("http") {
            url_or_path.to_string()
        } else {
            self.url(url_or_path)
        };
        self.client.get(url).send().await.unwrap()
    }

    /// `POST` of a JSON body to a path.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `method` on `path` with `key` as the bearer token.
    pub async fn send_with_key(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
    ) -> reqwest::Response {
        self.client
            .request(method, self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// Rows in a table, read through a separate connection.
    pub async fn count_rows(&self, table: &str) -> i64 {
        crate::backend::scalar(
            self.data_dir.path(),
            &format!("SELECT COUNT(*) FROM {table}"),
        )
        .await
    }

    /// Rows in the `jobs` table.
    pub async fn count_jobs(&self) -> i64 {
        self.count_rows("jobs").await
    }

    /// Rows in the `images` table.
    pub async fn count_images(&self) -> i64 {
        self.count_rows("images").await
    }

    /// Objects in the object store (generated images and stored edit
    /// inputs).
    pub async fn count_image_files(&self) -> usize {
        crate::backend::object_count(self.data_dir.path()).await
    }
}

/// Parses a complete `text/event-stream` body.
pub fn parse_sse(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            let name = name?;
            Some((name, serde_json::from_str(&data).unwrap_or(Value::Null)))
        })
        .collect()
}

/// Asserts an error response: status, OpenAI's shape and the code.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let got = response.status().as_u16();
    let body: Value = response.json().await.expect("an error body is JSON");
    assert_eq!(got, status, "status for {code}: {body}");
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].is_string(), "{body}");
    assert!(error.get("param").is_some(), "{body}");
    body
}

/// A small generation request for the fixture model.
pub fn small_request(prompt: &str) -> Value {
    json!({
        "model": MODEL,
        "prompt": prompt,
        "size": "16x16",
        "steps": 2,
        "seed": 7,
    })
}

/// A valid PNG of the given size (a gradient).
pub fn png_image(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        let pixels: Vec<u8> = (0..width * height * 3).map(|i| (i % 251) as u8).collect();
        writer.write_image_data(&pixels).unwrap();
    }
    out
}

/// A PNG whose header claims `width`×`height` but holds almost no data:
/// a decompression bomb must be refused before decoding.
pub fn png_bomb_header(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // A tiny zlib stream (an empty stored block); the decoder must not get this far.
    chunk(
        &mut out,
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01,
        ],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A copy of the model folder `from` in a new temporary folder, with the
/// safetensors file `file` (relative to the folder) rewritten: every f32
/// or f16 tensor goes through `change(name, values)` (as f32), and the header gains
/// `__metadata__ = {"variant": variant}`, so the copy has a new content
/// hash even when `change` changes nothing.
pub fn model_variant(
    from: &Path,
    file: &str,
    variant: &str,
    mut change: impl FnMut(&str, &mut [f32]),
) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            // The engine's hash cache belongs to the original's files.
            if name.to_string_lossy().starts_with(".easel") {
                continue;
            }
            let target = to.join(&name);
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(from, dir.path());
    let path = dir.path().join(file);
    let bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let mut data = bytes[8 + header_len..].to_vec();
    for (name, tensor) in &header {
        let f16 = match tensor["dtype"].as_str() {
            Some("F32") => false,
            Some("F16") => true,
            _ => continue,
        };
        let start = tensor["data_offsets"][0].as_u64().unwrap() as usize;
        let end = tensor["data_offsets"][1].as_u64().unwrap() as usize;
        let bytes = &mut data[start..end];
        if f16 {
            let mut values: Vec<f32> = bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes(c.try_into().unwrap()).to_f32())
                .collect();
            change(name, &mut values);
            for (chunk, v) in bytes.chunks_exact_mut(2).zip(values) {
                chunk.copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
            }
        } else {
            let mut values: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            change(name, &mut values);
            for (chunk, v) in bytes.chunks_exact_mut(4).zip(values) {
                chunk.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    header.insert("__metadata__".into(), json!({ "variant": variant }));
    let mut text = serde_json::to_vec(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&data);
    std::fs::write(&path, out).unwrap();
    dir
}

/// The UNet weights file of a diffusers folder.
pub const UNET: &str = "unet/diffusion_pytorch_model.safetensors";

/// The bundled model's folder.
pub fn bundled_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/easel-emoji")
}

/// A copy of the bundled model with Gaussian noise of 0.4 standard
/// deviations added to each UNet tensor: on the model's eval prompts that
/// drops the mean quality score from about 0.31 to about 0.11, with images
/// still made (0.2 barely shows; 0.7 is noise). Seeded, so every call
/// writes the same weights.
pub fn noisy_bundled() -> tempfile::TempDir {
    let mut state = 7u64;
    model_variant(&bundled_model(), UNET, "noisy", |_, values| {
        let n = values.len() as f32;
        let mean = values.iter().sum::<f32>() / n;
        let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt();
        for v in values {
            *v += 0.4 * sd * gaussian(&mut state);
        }
    })
}

/// A normal deviate from a fixed generator (Box–Muller over an LCG).
fn gaussian(state: &mut u64) -> f32 {
    let mut uniform = || {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let (u, v) = (uniform(), uniform());
    ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
}

/// Runs `tools/{script} BASE_URL MODEL` against `app` with `EASEL_PYTHON`
/// (else `python3`) when that interpreter can `import {module}`, and
/// asserts it printed "all checks passed". Without such an interpreter it
/// skips, unless `EASEL_REQUIRE_PYTHON=1` (CI), where that is a failure.
pub async fn run_python_check(app: &TestApp, script: &str, module: &str) {
    use std::process::Command;
    let required = std::env::var("EASEL_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    let python = std::env::var("EASEL_PYTHON").unwrap_or_else(|_| "python3".into());
    let importable = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !importable {
        assert!(
            !required,
            "EASEL_REQUIRE_PYTHON=1 but {python} cannot `import {module}`"
        );
        eprintln!("skipping {script}: {python} cannot `import {module}`");
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools")
        .join(script);
    let base = app.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python).arg(path).arg(base).arg(MODEL).output()
    })
    .await
    .unwrap()
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("all checks passed"),
        "{script} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}
