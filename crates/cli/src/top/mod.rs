//! `easel top`: the live SLIs of a running server in a terminal, read from
//! its `GET /metrics`.
//!
//! Each frame compares two scrapes `--interval` seconds apart: counters
//! become rates over that window (a counter that went down was reset: its
//! new value is the increase), histograms become quantiles of the
//! observations made in the window (bucket differences, interpolated as
//! PromQL's `histogram_quantile` does), and gauges show their latest value.
//! `--once` prints a single frame and exits (for scripts and tests).
//!
//! Layout:
//! - `exposition`: the Prometheus text format parser and bucket quantiles.
//! - `frame`: the SLIs between two scrapes and their rendering.

mod exposition;
mod frame;

pub use exposition::Exposition;
pub use frame::Frame;

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;

/// Shortest `--interval` (seconds).
const MIN_INTERVAL: f64 = 0.1;
/// Longest `--interval` (seconds).
const MAX_INTERVAL: f64 = 3600.0;

/// Flags of `easel top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Server whose `/metrics` to read.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Seconds between the two scrapes of a frame, and between frames
    /// (0.1 to 3600).
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// Print one frame and exit.
    #[arg(long)]
    once: bool,
    /// API key (sent as a bearer token), if `/metrics` needs one.
    #[arg(long, env = "EASEL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

/// Runs `easel top`.
pub fn run(args: TopArgs) -> anyhow::Result<()> {
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&args.interval) {
        bail!(
            "--interval must be between {MIN_INTERVAL} and {MAX_INTERVAL} seconds, got {}",
            args.interval
        );
    }
    let base = args.url.trim_end_matches('/').to_string();
    reqwest::Url::parse(&base).with_context(|| format!("--url {:?} is not a URL", args.url))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(watch(&args, &base))
}

async fn watch(args: &TopArgs, base: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    let interval = Duration::from_secs_f64(args.interval);
    let clear = !args.once && std::io::stdout().is_terminal();
    let (mut prev, mut prev_at) = (scrape(&client, base, args).await?, Instant::now());
    loop {
        tokio::time::sleep(interval).await;
        let (cur, cur_at) = (scrape(&client, base, args).await?, Instant::now());
        let frame = Frame::between(&prev, &cur, (cur_at - prev_at).as_secs_f64());
        let mut out = std::io::stdout().lock();
        if clear {
            // Clear the screen and home the cursor.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        write!(out, "{}", frame.render(base))?;
        out.flush()?;
        if args.once {
            return Ok(());
        }
        (prev, prev_at) = (cur, cur_at);
    }
}

async fn scrape(
    client: &reqwest::Client,
    base: &str,
    args: &TopArgs,
) -> anyhow::Result<Exposition> {
    let mut req = client.get(format!("{base}/metrics"));
    if let Some(key) = &args.api_key {
        req = req.bearer_auth(key);
    }
    let r = req
        .send()
        .await
        .with_context(|| format!("reading {base}/metrics"))?;
    if !r.status().is_success() {
        bail!("{base}/metrics answered {}", r.status());
    }
    let text = r.text().await.context("reading the /metrics body")?;
    Exposition::parse(&text).with_context(|| format!("parsing {base}/metrics"))
}
