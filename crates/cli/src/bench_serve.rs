//! `easel bench serve`: the whole server against the raw engine loop, in
//! one run on one machine.
//!
//! It starts a server in this process (the bundled model unless `--model`
//! names another; or drives a running one with `--url`) and sends
//! synchronous generations from 1, 4 and 8 concurrent clients, timing each
//! request; then it loads the same model and runs the raw engine loop
//! (`Model::generate` in a plain loop: no HTTP, queue, encoding or storage)
//! at the batch size the server would form. It prints images per second,
//! P50/P95/P99 latency and the server/raw throughput ratio. When it started
//! the server itself it also reruns the highest concurrency with batching
//! off, to show what batching does to throughput.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use easel_config::{Config, ModelEntry};
use easel_engine::{CancelToken, ImageRequest, LoadOptions, Model};
use serde::Serialize;
use serde_json::json;

/// Prompts the requests cycle through (the bundled model's domain).
const PROMPTS: &[&str] = &[
    "a red apple",
    "a cat face",
    "a red heart",
    "a grinning face",
    "a taco",
    "a yellow star",
    "a dog face",
    "a pizza",
];

/// Flags of `easel bench serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Drive this running server (e.g. `http://127.0.0.1:8080`) instead of
    /// starting one here. The raw loop still runs here, on `--model`.
    #[arg(long)]
    url: Option<String>,
    /// API key for `--url`.
    #[arg(long, env = "EASEL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Model folder or configured model name (default: the configured
    /// default model, normally the bundled `models/easel-emoji`).
    #[arg(long, value_name = "FOLDER|NAME")]
    model: Option<PathBuf>,
    #[command(flatten)]
    engine: crate::commands::EngineFlags,
    /// Concurrent clients, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 4, 8])]
    concurrency: Vec<usize>,
    /// Timed requests per concurrency level (at least the concurrency).
    #[arg(long, default_value_t = 16)]
    requests: usize,
    /// The started server's `worker.max_batch_images` (default: the server's default).
    #[arg(long)]
    max_batch: Option<u32>,
    /// Denoising steps per image (default: the model's).
    #[arg(long)]
    steps: Option<u32>,
    /// Skip the batching-off rerun.
    #[arg(long)]
    no_batching_comparison: bool,
    /// Print the report as JSON on stdout instead of text. (A FILE after
    /// it, the earlier spelling, writes the JSON there like `--output`.)
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    json: Option<Option<PathBuf>>,
    /// Also write the report as JSON to this file.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// One measured configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `server`, `server (batching off)` or `raw engine`.
    pub mode: String,
    /// Concurrent clients (server rows).
    pub concurrency: usize,
    /// Largest batch: the server's limit, or the raw loop's batch size.
    pub batch: u32,
    /// Images made in the timed part.
    pub images: usize,
    /// Wall time of the timed part, seconds.
    pub seconds: f64,
    /// Images per second.
    pub images_per_s: f64,
    /// Latency percentiles, seconds (per request; per call for the raw loop).
    pub p50_s: f64,
    /// 95th percentile.
    pub p95_s: f64,
    /// 99th percentile.
    pub p99_s: f64,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The model folder.
    pub model: String,
    /// Steps per image (`None`: the model's default).
    pub steps: Option<u32>,
    /// Every row, in the printed order.
    pub rows: Vec<Row>,
    /// Server images/s ÷ raw images/s at the same batch size, per concurrency.
    pub ratios: Vec<(usize, f64)>,
}

/// Runs `easel bench serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--concurrency needs positive numbers, e.g. 1,4,8");
    }
    let device = args.engine.apply()?;
    let (name, model_dir) = crate::commands::model_folder(None, args.model.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let max_batch = args
        .max_batch
        .unwrap_or(easel_jobs::WorkerSettings::default().max_batch_images)
        .max(1);
    let comparison = args.url.is_none() && !args.no_batching_comparison && max_batch > 1;
    let mut raw_batches: Vec<u32> = args
        .concurrency
        .iter()
        .map(|&c| (c as u32).min(max_batch))
        .collect();
    raw_batches.sort_unstable();
    raw_batches.dedup();
    let measurements = args.concurrency.len() + usize::from(comparison) + raw_batches.len();
    // Drawn only on a terminal; the row lines print either way.
    let bar = crate::progress::bar(measurements as u64, "measurements", "bench serve");
    let report_row = |row: &Row| {
        bar.suspend(|| eprintln!("{}", row_line(row)));
        bar.inc(1);
    };
    let mut rows = Vec::new();
    for &c in &args.concurrency {
        let row = runtime.block_on(server_row(
            &args, &name, &model_dir, device, c, max_batch, "server",
        ))?;
        report_row(&row);
        rows.push(row);
    }
    let top = *args.concurrency.iter().max().expect("not empty");
    if comparison {
        let row = runtime.block_on(server_row(
            &args,
            &name,
            &model_dir,
            device,
            top,
            1,
            "server (batching off)",
        ))?;
        report_row(&row);
        rows.push(row);
    }
    drop(runtime);

    bar.set_message("raw engine loop");
    let model = Model::load(
        &model_dir,
        &LoadOptions {
            name: Some(name.clone()),
            device,
            precision: args.engine.precision.unwrap_or_default(),
            ..LoadOptions::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("loading {}: {e}", model_dir.display()))?;
    let mut ratios = Vec::new();
    let mut raw_rows: Vec<Row> = Vec::new();
    for &c in &args.concurrency {
        let batch = (c as u32).min(max_batch);
        let raw = match raw_rows.iter().find(|r| r.batch == batch) {
            Some(r) => r.clone(),
            None => {
                let r = raw_row(&model, batch, args.requests.max(c), args.steps)?;
                report_row(&r);
                raw_rows.push(r.clone());
                r
            }
        };
        if let Some(server) = rows
            .iter()
            .find(|r| r.mode == "server" && r.concurrency == c)
        {
            ratios.push((c, server.images_per_s / raw.images_per_s));
        }
    }
    rows.extend(raw_rows);
    bar.finish_and_clear();
    let report = Report {
        model: model_dir.display().to_string(),
        steps: args.steps,
        rows,
        ratios,
    };
    crate::commands::write_report(
        &report,
        &table(&report),
        args.json.as_ref(),
        args.output.as_deref(),
    )
}

/// One server configuration at concurrency `c`.
async fn server_row(
    args: &ServeArgs,
    name: &str,
    model_dir: &std::path::Path,
    device: easel_engine::DeviceChoice,
    c: usize,
    max_batch: u32,
    mode: &str,
) -> anyhow::Result<Row> {
    let (base, stop, data) = match &args.url {
        Some(url) => (url.trim_end_matches('/').to_string(), None, None),
        None => {
            let data = tempfile::tempdir().context("creating a data folder")?;
            let mut config = Config {
                data_dir: data.path().to_path_buf(),
                models: vec![ModelEntry {
                    name: name.to_string(),
                    path: model_dir.to_path_buf(),
                }],
                default_model: Some(name.to_string()),
                ..Config::default()
            };
            config.worker.max_batch_images = max_batch;
            config.pool.device = device.to_string();
            config.pool.precision = args.engine.precision.unwrap_or_default().to_string();
            config.queue.max_queued_realtime = 1_000;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let app = easel_server::Application::build(config, listener).await?;
            let base = format!("http://{}", app.local_addr());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(app.run(async move {
                let _ = rx.await;
            }));
            (base, Some((tx, task)), Some(data))
        }
    };
    let client = reqwest::Client::new();
    wait_ready(&client, &base, args.api_key.as_deref()).await?;
    // Warm-up: one request per client slot, untimed.
    let warm: Vec<_> = (0..c)
        .map(|i| {
            let (client, base, key, steps) = (
                client.clone(),
                base.clone(),
                args.api_key.clone(),
                args.steps,
            );
            tokio::spawn(async move { request(&client, &base, key.as_deref(), i, steps).await })
        })
        .collect();
    for task in warm {
        task.await??;
    }
    let total = args.requests.max(c);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..c {
        let (client, base, key, next) = (
            client.clone(),
            base.clone(),
            args.api_key.clone(),
            next.clone(),
        );
        let steps = args.steps;
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                latencies.push(request(&client, &base, key.as_deref(), i, steps).await?);
            }
        }));
    }
    let mut latencies = Vec::new();
    for c in clients {
        latencies.extend(c.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some((tx, task)) = stop {
        let _ = tx.send(());
        task.await??;
    }
    drop(data);
    Ok(row(mode, c, max_batch, latencies, seconds))
}

pub(crate) async fn wait_ready(
    client: &reqwest::Client,
    base: &str,
    key: Option<&str>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let mut req = client.get(format!("{base}/readyz"));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Ok(r) = req.send().await
            && r.status() == 200
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("{base} was not ready after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One synchronous generation; returns its latency in seconds.
async fn request(
    client: &reqwest::Client,
    base: &str,
    key: Option<&str>,
    i: usize,
    steps: Option<u32>,
) -> anyhow::Result<f64> {
    let mut body = json!({
        "prompt": PROMPTS[i % PROMPTS.len()],
        "seed": i,
        "user": format!("bench-{}", i % 8),
    });
    if let Some(steps) = steps {
        body["steps"] = json!(steps);
    }
    let mut req = client
        .post(format!("{base}/v1/images/generations"))
        .json(&body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let started = Instant::now();
    let response = req.send().await?;
    let status = response.status();
    if !status.is_success() {
        bail!("request {i}: {status}: {}", response.text().await?);
    }
    response.bytes().await?;
    Ok(started.elapsed().as_secs_f64())
}

/// The raw loop: `images` images in calls of `batch`.
fn raw_row(model: &Model, batch: u32, images: usize, steps: Option<u32>) -> anyhow::Result<Row> {
    let info = model.info();
    let requests: Vec<ImageRequest> = (0..images)
        .map(|i| ImageRequest {
            prompt: PROMPTS[i % PROMPTS.len()].to_string(),
            negative_prompt: String::new(),
            size: info.default_size,
            steps: steps.unwrap_or(info.default_steps),
            guidance_scale: info.default_guidance,
            seed: i as u64,
            sampler: None,
            schedule: easel_core::ScheduleKind::Default,
            init_image: None,
            mask: None,
            clip_skip: None,
        })
        .collect();
    let cancel = CancelToken::new();
    let generate = |chunk: &[ImageRequest]| {
        model
            .generate(chunk, &mut (), &cancel)
            .map_err(|e| anyhow::anyhow!("raw engine loop: {e}"))
    };
    generate(&requests[..(batch as usize).min(images)])?; // warm-up
    let mut latencies = Vec::new();
    let started = Instant::now();
    for chunk in requests.chunks(batch as usize) {
        let t = Instant::now();
        generate(chunk)?;
        latencies.push(t.elapsed().as_secs_f64());
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut row = row("raw engine", 0, batch, latencies, seconds);
    row.images = images;
    row.images_per_s = images as f64 / seconds;
    Ok(row)
}

fn row(mode: &str, concurrency: usize, batch: u32, mut latencies: Vec<f64>, seconds: f64) -> Row {
    latencies.sort_by(f64::total_cmp);
    let images = latencies.len();
    Row {
        mode: mode.to_string(),
        concurrency,
        batch,
        images,
        seconds,
        images_per_s: images as f64 / seconds,
        p50_s: percentile(&latencies, 50.0),
        p95_s: percentile(&latencies, 95.0),
        p99_s: percentile(&latencies, 99.0),
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn row_line(r: &Row) -> String {
    let conc = if r.concurrency == 0 {
        "-".to_string()
    } else {
        r.concurrency.to_string()
    };
    format!(
        "{:<22} {:>5} {:>6} {:>7} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
        r.mode, conc, r.batch, r.images, r.images_per_s, r.p50_s, r.p95_s, r.p99_s
    )
}

/// The printed report.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "\neasel bench serve: {}\n{:<22} {:>5} {:>6} {:>7} {:>8} {:>8} {:>8} {:>8}\n",
        report.model, "mode", "conc", "batch", "images", "img/s", "p50 s", "p95 s", "p99 s"
    );
    for r in &report.rows {
        out.push_str(&row_line(r));
        out.push('\n');
    }
    out.push_str("\nserver / raw engine throughput at the same batch size:\n");
    for (c, ratio) in &report.ratios {
        out.push_str(&format!("  concurrency {c}: {ratio:.3}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
