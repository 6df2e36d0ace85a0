//! `easel loadtest`: a synthetic prompt mix against a running Easel, at a
//! target rate (open loop) or concurrency (closed loop), for a bounded time.
//!
//! Open loop (`--rate R`): a request starts every 1/R seconds whether or
//! not earlier ones finished, and each latency counts from the moment its
//! request was *due*, so a server that stalls is charged for the queue it
//! builds (no coordinated omission). Closed loop (`--concurrency C`): C
//! clients each send the next request when their last one finished.
//!
//! `--mode sync` times `POST /v1/images/generations`; `--mode jobs` times
//! `POST /v1/jobs` until the job is terminal, following its event stream
//! (`GET /v1/jobs/{id}/events`, which ends at the terminal event) and then
//! reading the job once for its outcome.
//!
//! Every request ends in exactly one bucket: succeeded, or one error label
//! (`<HTTP status> <code>`, `job <status> <code>`, or `transport <kind>`),
//! so the report's counts add up to the requests sent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};

/// Highest `--rate` (requests per second).
pub const MAX_RATE: f64 = 1000.0;
/// Highest `--concurrency`.
pub const MAX_CONCURRENCY: u32 = 256;
/// Longest `--duration` (seconds).
pub const MAX_DURATION_SECONDS: f64 = 3600.0;
/// Open loop: requests still running beyond this many are not started
/// (counted as `client backlog_full`), so a stalled server cannot make the
/// load generator itself run out of memory or sockets.
const MAX_IN_FLIGHT: usize = 10_000;

/// Prompts used when no `--prompts` file is given (the bundled model's domain).
const BUILT_IN_PROMPTS: &[&str] = &[
    "a red apple",
    "a cat face",
    "a red heart",
    "a grinning face",
    "a taco",
    "a yellow star",
    "a dog face",
    "a pizza",
    "a rocket",
    "a smiling face with sunglasses",
    "a snowman",
    "a green tree",
];

/// Which endpoint a request exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `POST /v1/images/generations`, timed until the images come back.
    Sync,
    /// `POST /v1/jobs`, followed until the job is terminal.
    Jobs,
}

/// Flags of `easel loadtest`.
#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// Server to load.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Allow a target outside loopback (127.0.0.0/8, ::1, localhost).
    #[arg(long)]
    allow_remote: bool,
    /// Open loop: requests started per second (0 < R <= 1000).
    #[arg(
        long,
        conflicts_with = "concurrency",
        required_unless_present = "concurrency"
    )]
    rate: Option<f64>,
    /// Closed loop: clients each sending one request at a time (1..=256).
    #[arg(long)]
    concurrency: Option<u32>,
    /// Seconds to start requests for (0 < D <= 3600); requests still running
    /// at the end are waited for.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// `sync` (POST /v1/images/generations) or `jobs` (POST /v1/jobs, then
    /// follow the job to a terminal status).
    #[arg(long, value_enum, default_value_t = Mode::Sync)]
    mode: Mode,
    /// API key (sent as a bearer token).
    #[arg(long, env = "EASEL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Prompt file: one prompt a line; blank lines and `#` comments are
    /// skipped, and a line `PROMPT = ...` (the eval list's paraphrases) uses
    /// the part before ` = `. Default: a built-in list.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Model to request (default: the server's default).
    #[arg(long)]
    model: Option<String>,
    /// Image size WIDTHxHEIGHT (default: the model's).
    #[arg(long)]
    size: Option<String>,
    /// Denoising steps (default: the model's).
    #[arg(long)]
    steps: Option<u32>,
    /// Images per request.
    #[arg(long, default_value_t = 1)]
    n: u32,
    /// Tier of `--mode jobs` requests: realtime or batch (default: the server's).
    #[arg(long)]
    tier: Option<String>,
    /// Give up on one request after this many seconds (counted as
    /// `transport timeout`).
    #[arg(long, default_value_t = 600)]
    request_timeout: u64,
    /// Print the report as JSON on stdout instead of text. (A FILE after
    /// it, the earlier spelling, writes the JSON there like `--output`.)
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    json: Option<Option<PathBuf>>,
    /// Also write the report as JSON to this file.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Open or closed loop, validated.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Requests started per second.
    Rate(f64),
    /// Clients sending back to back.
    Concurrency(u32),
}

/// A validated load test.
#[derive(Debug, Clone)]
pub struct Plan {
    base: String,
    load: Load,
    duration: Duration,
    mode: Mode,
    api_key: Option<String>,
    prompts: Vec<String>,
    body: Value,
    request_timeout: Duration,
}

impl Plan {
    /// Checks the flags: bounds, a loopback target unless allowed, a usable
    /// prompt list.
    pub fn from_args(args: &LoadtestArgs) -> anyhow::Result<Self> {
        let load = match (args.rate, args.concurrency) {
            (Some(r), None) => {
                if !(r > 0.0 && r <= MAX_RATE) {
                    bail!(
                        "--rate must be above 0 and at most {MAX_RATE} requests per second, got {r}"
                    );
                }
                Load::Rate(r)
            }
            (None, Some(c)) => {
                if c == 0 || c > MAX_CONCURRENCY {
                    bail!("--concurrency must be between 1 and {MAX_CONCURRENCY}, got {c}");
                }
                Load::Concurrency(c)
            }
            _ => bail!("give exactly one of --rate and --concurrency"),
        };
        if !(args.duration > 0.0 && args.duration <= MAX_DURATION_SECONDS) {
            bail!(
                "--duration must be above 0 and at most {MAX_DURATION_SECONDS} seconds, got {}",
                args.duration
            );
        }
        let base = check_target(&args.url, args.allow_remote)?;
        let prompts = match &args.prompts {
            Some(path) => read_prompts(path)?,
            None => BUILT_IN_PROMPTS.iter().map(|p| p.to_string()).collect(),
        };
        if args.mode == Mode::Sync && args.tier.is_some() {
            bail!("--tier applies to --mode jobs only (synchronous requests are realtime)");
        }
        let mut body = json!({ "n": args.n, "response_format": "url" });
        if let Some(m) = &args.model {
            body["model"] = json!(m);
        }
        if let Some(s) = &args.size {
            body["size"] = json!(s);
        }
        if let Some(s) = args.steps {
            body["steps"] = json!(s);
        }
        if let Some(t) = &args.tier {
            body["tier"] = json!(t);
        }
        Ok(Self {
            base,
            load,
            duration: Duration::from_secs_f64(args.duration),
            mode: args.mode,
            api_key: args.api_key.clone(),
            prompts,
            body,
            request_timeout: Duration::from_secs(args.request_timeout.max(1)),
        })
    }
}

/// The URL without a trailing slash, if its host is loopback or remote
/// targets are allowed.
pub fn check_target(url: &str, allow_remote: bool) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("--url must be http or https, got {}", parsed.scheme());
    }
    let Some(host) = parsed.host_str() else {
        bail!("--url {url:?} has no host");
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if !loopback && !allow_remote {
        bail!(
            "refusing to load {url}: it is not a loopback address; pass --allow-remote to load a \
             server you are responsible for"
        );
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Prompts of a file (see `--prompts`).
pub fn read_prompts(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --prompts {}", path.display()))?;
    let prompts: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(" = ").next().unwrap_or(l).trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if prompts.is_empty() {
        bail!("--prompts {} has no prompts", path.display());
    }
    Ok(prompts)
}

/// How one request ended.
enum Outcome {
    Succeeded { images: u64 },
    Failed(String),
}

/// Counts and latencies gathered while the test runs.
struct Tally {
    latency_us: Histogram<u64>,
    requests: u64,
    succeeded: u64,
    images: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            // 1 µs to 1 h at 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            requests: 0,
            succeeded: 0,
            images: 0,
            errors: BTreeMap::new(),
        }
    }

    fn record(&mut self, outcome: Outcome, latency: Duration) {
        self.requests += 1;
        match outcome {
            Outcome::Succeeded { images } => {
                self.succeeded += 1;
                self.images += images;
                let us = (latency.as_micros() as u64).clamp(1, 3_600_000_000);
                self.latency_us.saturating_record(us);
            }
            Outcome::Failed(label) => *self.errors.entry(label).or_default() += 1,
        }
    }
}

/// Latency percentiles of the succeeded requests, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// The result of a run (also the `--json` file).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Server loaded.
    pub url: String,
    /// `sync` or `jobs`.
    pub mode: Mode,
    /// `{"rate": R}` or `{"concurrency": C}`.
    pub load: Load,
    /// Seconds requests were started for.
    pub duration_seconds: f64,
    /// Seconds from the first request to the last one finishing.
    pub elapsed_seconds: f64,
    /// Requests started.
    pub requests: u64,
    /// Requests that returned their images (sync) or whose job succeeded.
    pub succeeded: u64,
    /// `requests - succeeded`: the sum of `errors`.
    pub failed: u64,
    /// Images received.
    pub images: u64,
    /// Succeeded requests per second of `elapsed_seconds`.
    pub throughput_rps: f64,
    /// Images per second of `elapsed_seconds`.
    pub images_per_second: f64,
    /// Of the succeeded requests; null when none succeeded.
    pub latency: Option<Latency>,
    /// Failed requests by label: `<HTTP status> <code>`, `job <status>
    /// <code>`, `transport <kind>`, `client backlog_full`.
    pub errors: BTreeMap<String, u64>,
}

impl Report {
    fn new(plan: &Plan, tally: &Tally, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let h = &tally.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        let latency = (tally.succeeded > 0).then(|| Latency {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        });
        Self {
            url: plan.base.clone(),
            mode: plan.mode,
            load: plan.load,
            duration_seconds: plan.duration.as_secs_f64(),
            elapsed_seconds: elapsed.as_secs_f64(),
            requests: tally.requests,
            succeeded: tally.succeeded,
            failed: tally.requests - tally.succeeded,
            images: tally.images,
            throughput_rps: tally.succeeded as f64 / secs,
            images_per_second: tally.images as f64 / secs,
            latency,
            errors: tally.errors.clone(),
        }
    }

    /// The human-readable summary.
    pub fn render(&self) -> String {
        let load = match self.load {
            Load::Rate(r) => format!("rate {r}/s (open loop)"),
            Load::Concurrency(c) => format!("concurrency {c} (closed loop)"),
        };
        let mode = match self.mode {
            Mode::Sync => "sync",
            Mode::Jobs => "jobs",
        };
        let mut out = format!(
            "easel loadtest: {mode} mode, {load}, {} s against {}\n",
            self.duration_seconds, self.url
        );
        out += &format!(
            "requests {}  succeeded {}  failed {}  images {}  elapsed {:.1} s\n",
            self.requests, self.succeeded, self.failed, self.images, self.elapsed_seconds
        );
        out += &format!(
            "throughput {:.2} req/s, {:.2} images/s\n",
            self.throughput_rps, self.images_per_second
        );
        match &self.latency {
            Some(l) => {
                out += &format!(
                    "latency (succeeded)  P50 {:.0} ms  P95 {:.0} ms  P99 {:.0} ms  max {:.0} ms\n",
                    l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms
                )
            }
            None => out += "latency: no request succeeded\n",
        }
        if !self.errors.is_empty() {
            out += "errors:\n";
            for (label, n) in &self.errors {
                out += &format!("  {label:<40} {n}\n");
            }
        }
        out
    }
}

/// Runs `easel loadtest`.
pub fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    let plan = Plan::from_args(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // A bar over the run's duration, drawn only on a terminal.
    let bar = crate::progress::bar(plan.duration.as_secs().max(1), "s", "sending requests");
    let report = runtime.block_on(async {
        let started = Instant::now();
        let ticker = {
            let bar = bar.clone();
            tokio::spawn(async move {
                loop {
                    bar.set_position(started.elapsed().as_secs());
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        let report = execute(&plan).await;
        ticker.abort();
        report
    })?;
    bar.finish_and_clear();
    crate::commands::write_report(
        &report,
        &report.render(),
        args.json.as_ref(),
        args.output.as_deref(),
    )
}

/// Runs a validated plan and returns its report.
pub async fn execute(plan: &Plan) -> anyhow::Result<Report> {
    let client = reqwest::Client::builder()
        .timeout(plan.request_timeout)
        .pool_max_idle_per_host(MAX_CONCURRENCY as usize)
        .build()
        .context("building the HTTP client")?;
    let tally = Arc::new(Mutex::new(Tally::new()));
    let started = Instant::now();
    let stop_at = started + plan.duration;
    match plan.load {
        Load::Rate(rate) => open_loop(plan, &client, &tally, rate, started, stop_at).await,
        Load::Concurrency(c) => closed_loop(plan, &client, &tally, c, stop_at).await,
    }
    let elapsed = started.elapsed();
    let tally = tally.lock().expect("tally lock");
    Ok(Report::new(plan, &tally, elapsed))
}

async fn open_loop(
    plan: &Plan,
    client: &reqwest::Client,
    tally: &Arc<Mutex<Tally>>,
    rate: f64,
    started: Instant,
    stop_at: Instant,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let mut i: u64 = 0;
    loop {
        // i / rate, not i × (1 / rate): R requests per second for D seconds
        // start exactly R × D of them.
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        if due >= stop_at {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        while tasks.try_join_next().is_some() {}
        if tasks.len() >= MAX_IN_FLIGHT {
            tally.lock().expect("tally lock").record(
                Outcome::Failed("client backlog_full".into()),
                Duration::ZERO,
            );
        } else {
            let (plan, client, tally) = (plan.clone(), client.clone(), tally.clone());
            tasks.spawn(async move {
                let outcome = one_request(&plan, &client, i).await;
                // From when the request was due, not when it was sent.
                tally
                    .lock()
                    .expect("tally lock")
                    .record(outcome, due.elapsed());
            });
        }
        i += 1;
    }
    while tasks.join_next().await.is_some() {}
}

async fn closed_loop(
    plan: &Plan,
    client: &reqwest::Client,
    tally: &Arc<Mutex<Tally>>,
    concurrency: u32,
    stop_at: Instant,
) {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (plan, client, tally, next) =
            (plan.clone(), client.clone(), tally.clone(), next.clone());
        tasks.spawn(async move {
            while Instant::now() < stop_at {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let sent = Instant::now();
                let outcome = one_request(&plan, &client, i).await;
                tally
                    .lock()
                    .expect("tally lock")
                    .record(outcome, sent.elapsed());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// The `i`th request of the run (its prompt and seed follow from `i`).
async fn one_request(plan: &Plan, client: &reqwest::Client, i: u64) -> Outcome {
    let mut body = plan.body.clone();
    body["prompt"] = json!(plan.prompts[(i as usize) % plan.prompts.len()]);
    body["seed"] = json!(i);
    let result = match plan.mode {
        Mode::Sync => sync_request(plan, client, &body).await,
        Mode::Jobs => job_request(plan, client, &body).await,
    };
    result.unwrap_or_else(|e| Outcome::Failed(transport_label(&e)))
}

fn authed(plan: &Plan, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match &plan.api_key {
        Some(key) => req.bearer_auth(key),
        None => req,
    }
}

async fn sync_request(
    plan: &Plan,
    client: &reqwest::Client,
    body: &Value,
) -> Result<Outcome, reqwest::Error> {
    let url = format!("{}/v1/images/generations", plan.base);
    let r = authed(plan, client.post(url).json(body)).send().await?;
    let status = r.status();
    let text = r.text().await?;
    if status != reqwest::StatusCode::OK {
        return Ok(Outcome::Failed(http_label(status.as_u16(), &text)));
    }
    let images = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["data"].as_array().map(|d| d.len() as u64));
    Ok(match images {
        Some(images) => Outcome::Succeeded { images },
        None => Outcome::Failed("200 unreadable_body".into()),
    })
}

async fn job_request(
    plan: &Plan,
    client: &reqwest::Client,
    body: &Value,
) -> Result<Outcome, reqwest::Error> {
    let r = authed(
        plan,
        client.post(format!("{}/v1/jobs", plan.base)).json(body),
    )
    .send()
    .await?;
    let status = r.status();
    let text = r.text().await?;
    if status != reqwest::StatusCode::ACCEPTED {
        return Ok(Outcome::Failed(http_label(status.as_u16(), &text)));
    }
    let Some(id) = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string))
    else {
        return Ok(Outcome::Failed("202 unreadable_body".into()));
    };
    // The event stream ends right after the job's terminal event.
    let events = authed(
        plan,
        client.get(format!("{}/v1/jobs/{id}/events", plan.base)),
    )
    .send()
    .await?;
    if !events.status().is_success() {
        let s = events.status().as_u16();
        return Ok(Outcome::Failed(http_label(s, &events.text().await?)));
    }
    let mut events = events;
    while events.chunk().await?.is_some() {}
    let r = authed(plan, client.get(format!("{}/v1/jobs/{id}", plan.base)))
        .send()
        .await?;
    let status = r.status();
    let text = r.text().await?;
    if status != reqwest::StatusCode::OK {
        return Ok(Outcome::Failed(http_label(status.as_u16(), &text)));
    }
    let job: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(match job["status"].as_str() {
        Some("succeeded") => Outcome::Succeeded {
            images: job["image_ids"].as_array().map_or(0, |a| a.len() as u64),
        },
        Some(s) => {
            let code = job["error"]["code"].as_str().unwrap_or("none");
            Outcome::Failed(format!("job {s} {code}"))
        }
        None => Outcome::Failed("200 unreadable_body".into()),
    })
}

/// `<status> <code>` from an API error body (`{"error": {"code": ...}}`).
fn http_label(status: u16, body: &str) -> String {
    let code = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_else(|| "none".into());
    format!("{status} {code}")
}

fn transport_label(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "other"
    };
    format!("transport {kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_pass_and_others_need_the_flag() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1/",
            "http://[::1]:80",
            "http://127.9.9.9",
        ] {
            assert!(check_target(ok, false).is_ok(), "{ok}");
        }
        for remote in [
            "http://10.0.0.1:8080",
            "https://example.com",
            "http://0.0.0.0:8080",
        ] {
            let err = check_target(remote, false).unwrap_err().to_string();
            assert!(err.contains("--allow-remote"), "{err}");
            assert!(check_target(remote, true).is_ok());
        }
        assert!(check_target("ftp://127.0.0.1", true).is_err());
        assert_eq!(
            check_target("http://127.0.0.1:8080/", false).unwrap(),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn the_eval_prompt_list_reads_as_prompts() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/easel-emoji/eval/prompts.txt");
        let prompts = read_prompts(&path).unwrap();
        assert!(prompts.len() >= 100, "{}", prompts.len());
        assert!(
            prompts
                .iter()
                .all(|p| !p.contains(" = ") && !p.starts_with('#'))
        );
    }

    #[test]
    fn every_request_lands_in_one_bucket() {
        let mut t = Tally::new();
        t.record(Outcome::Succeeded { images: 2 }, Duration::from_millis(10));
        t.record(
            Outcome::Failed("429 queue_full".into()),
            Duration::from_millis(1),
        );
        t.record(
            Outcome::Failed("429 queue_full".into()),
            Duration::from_millis(1),
        );
        assert_eq!((t.requests, t.succeeded, t.images), (3, 1, 2));
        assert_eq!(t.errors["429 queue_full"], 2);
        assert_eq!(
            http_label(400, r#"{"error":{"code":"invalid_size"}}"#),
            "400 invalid_size"
        );
        assert_eq!(http_label(502, "<html>"), "502 none");
    }
}
