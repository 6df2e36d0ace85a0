//! `easel bench engine`: the engine's per-stage timings and peak memory,
//! optionally next to diffusers' on the same weights in the same run (the
//! other benches: `bench_serve`, `bench_queue`, `bench_watermark`).
//!
//! The measurement itself is library code (`easel_engine::bench`); this
//! file sets the thread count, runs the reference script as a child process
//! after the engine's model is dropped (so the two never hold weights at
//! the same time), and prints the tables.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use easel_core::Size;
use easel_engine::LoadOptions;
use easel_engine::bench::{self, BenchOptions, BenchReport, ReferenceReport};

/// What `easel bench` can measure.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time text encoding, one denoiser step (batch 1 and 2) and decoding.
    Engine(EngineArgs),
    /// The whole server at concurrency 1, 4 and 8 against the raw engine
    /// loop at the same batch sizes.
    Serve(crate::bench_serve::ServeArgs),
    /// The PostgreSQL queue alone: claim + complete throughput with a
    /// no-op render at 1, 4 and 16 worker loops, and enqueue-to-claim
    /// latency with LISTEN/NOTIFY wake-ups and without.
    Queue(crate::bench_queue::QueueArgs),
    /// The watermark on delivered outputs and natural pictures: detection
    /// after each transformation, wrong ids, false positives, PSNR/SSIM and
    /// embed/detect time.
    Watermark(crate::bench_watermark::WatermarkArgs),
}

/// Flags of `easel bench engine`.
#[derive(Debug, Args)]
pub struct EngineArgs {
    #[command(flatten)]
    model: crate::commands::ModelArg,
    /// Also measure diffusers on the same folder and print the ratios.
    #[arg(long)]
    reference: bool,
    /// Python with torch, diffusers and transformers (for --reference).
    #[arg(long, env = "EASEL_BENCH_PYTHON", default_value = "python3")]
    python: PathBuf,
    /// The reference script (default: the one in this source tree).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/bench/diffusers_bench.py"))]
    script: PathBuf,
    /// Timed calls per stage.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Untimed calls before the timed ones.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Image size as WIDTHxHEIGHT (default: the model's).
    #[arg(long)]
    size: Option<String>,
    // `--threads` applies to both libraries.
    #[command(flatten)]
    engine: crate::commands::EngineFlags,
    /// Also time one whole image at the model's default settings.
    #[arg(long)]
    full_image: bool,
    /// Print the reports as JSON too.
    #[arg(long)]
    json: bool,
}

/// Runs `easel bench ...`.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    let args = match command {
        BenchCommand::Engine(args) => args,
        BenchCommand::Serve(args) => return crate::bench_serve::run(args),
        BenchCommand::Queue(args) => return crate::bench_queue::run(args),
        BenchCommand::Watermark(args) => return crate::bench_watermark::run(args),
    };
    let device = args.engine.apply()?;
    let (_, model_dir) = args.model.resolve()?;
    let size = args.size.as_deref().map(parse_size).transpose()?;
    let opts = BenchOptions {
        size,
        warmup: args.warmup,
        repeats: args.repeats.max(1),
        full_image: args.full_image,
    };
    let measuring = crate::progress::spinner(format!("easel: measuring {}", model_dir.display()));
    let load = LoadOptions {
        device,
        precision: args.engine.precision.unwrap_or_default(),
        ..LoadOptions::default()
    };
    let report = bench::run(&model_dir, &load, &opts)
        .map_err(|e| anyhow::anyhow!("benchmarking {}: {e} ({})", model_dir.display(), e.code()))?;
    measuring.finish_and_clear();
    println!("{report}");
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    if !args.reference {
        return Ok(());
    }
    let measuring =
        crate::progress::spinner(format!("diffusers: measuring {}", model_dir.display()));
    let reference = run_reference(&args, &model_dir, &report, device)?;
    measuring.finish_and_clear();
    println!("{}", bench::comparison_table(&report, &reference));
    Ok(())
}

/// Runs tools/bench/diffusers_bench.py with the engine's inputs, thread
/// count and device.
fn run_reference(
    args: &EngineArgs,
    model_dir: &std::path::Path,
    report: &BenchReport,
    device: easel_engine::DeviceChoice,
) -> anyhow::Result<ReferenceReport> {
    let i = &report.inputs;
    let join = |v: &[String]| v.join(",");
    let ids: Vec<String> = i.token_ids.iter().map(u32::to_string).collect();
    let shape: Vec<String> = i.latent_shape.iter().map(usize::to_string).collect();
    let threads = report.threads.to_string();
    let output = Command::new(&args.python)
        .arg(&args.script)
        .arg(model_dir)
        .args(["--threads", &threads])
        .args(["--warmup", &report.warmup.to_string()])
        .args(["--repeats", &report.repeats.to_string()])
        .args(["--token-ids", &join(&ids)])
        .args(["--prompt", &i.prompt])
        .args(["--latent-shape", &join(&shape)])
        .args(["--timestep", &i.timestep.to_string()])
        .args(["--device", &device.to_string()])
        .env("OMP_NUM_THREADS", &threads)
        .env("MKL_NUM_THREADS", &threads)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| {
            format!(
                "running {} {}",
                args.python.display(),
                args.script.display()
            )
        })?;
    if !output.status.success() {
        bail!("the reference script failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    if args.json {
        println!("{last}");
    }
    serde_json::from_str(last).with_context(|| format!("reading the reference's JSON: {last}"))
}

fn parse_size(s: &str) -> anyhow::Result<Size> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .context("--size must be WIDTHxHEIGHT, e.g. 512x512")?;
    Ok(Size {
        width: w.trim().parse().context("--size width")?,
        height: h.trim().parse().context("--size height")?,
    })
}
