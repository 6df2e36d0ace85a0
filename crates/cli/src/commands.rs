//! Subcommands: `serve`, `generate`, `models list` (in `crate::models`),
//! `keys` and `projects` (in `crate::keys`), `bench engine` (in `crate::bench`), `eval` (in
//! `crate::eval`), `loadtest` (in `crate::loadtest`), `top` (in
//! `crate::top`), `verify` (in `crate::verify`), `batch` (in
//! `crate::batch`).
//!
//! One vocabulary across commands: `--model FOLDER|NAME` (a model folder,
//! or a configured model's name; `loadtest`: the server's model name),
//! `--guidance`, `--steps`, `--size`, `--json` (print JSON to stdout
//! instead of text), `-o/--output PATH` (where files go), and
//! `--device`/`--threads` ([`EngineFlags`]) on every command that runs the
//! engine. Earlier spellings (`--guidance-scale`, `--out`, a positional
//! model folder, `--json FILE`) still parse, hidden from `--help`, for one
//! release.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use easel_config::{Config, Overrides, model_name_for};
use easel_core::{GenerationParams, OutputFormat, OutputOptions, RawParams, ResponseFormat};
use easel_engine::model::Precision;
use easel_engine::{CancelToken, DeviceChoice, LoadOptions, Model, Progress};
use easel_telemetry::trace::{LogFormat, TraceSettings};

/// Easel: image generation you can run anywhere.
#[derive(Debug, Parser)]
#[command(name = "easel", version, about)]
pub struct Cli {
    /// Config file. Default: `easel.toml` in the working directory, if present.
    #[arg(long, global = true, env = "EASEL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (and run jobs in this process).
    Serve(ServeArgs),
    /// Generate images from a prompt without a server.
    Generate(GenerateArgs),
    /// Inspect the configured models without loading them.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Manage API keys: in the database (`--project`), or print a
    /// config-file entry.
    Keys {
        #[command(subcommand)]
        command: crate::keys::KeysCommand,
    },
    /// Manage projects (tenants) in the database.
    Projects {
        #[command(subcommand)]
        command: crate::keys::ProjectsCommand,
    },
    /// Images, device seconds and cost per project, key, model or day.
    Usage(crate::keys::UsageArgs),
    /// How far recent prompts moved from the week before, and the prompts
    /// that moved them most (from the database).
    Drift(crate::drift::DriftArgs),
    /// Measure the engine (and optionally diffusers) on a model folder.
    Bench {
        #[command(subcommand)]
        command: crate::bench::BenchCommand,
    },
    /// Generate a fixed prompt list and report scorer retrieval accuracy,
    /// near-copies and seconds per image, with a contact sheet.
    Eval(crate::eval::EvalArgs),
    /// Send a synthetic prompt mix to a server at a target rate or
    /// concurrency; print throughput, latency percentiles and errors.
    Loadtest(crate::loadtest::LoadtestArgs),
    /// Show a server's live SLIs from its /metrics, refreshed every few seconds.
    Top(crate::top::TopArgs),
    /// List a deployment's worker processes, or drain one (admin API).
    Workers(crate::workers::WorkersArgs),
    /// Start, watch, promote or abort a guarded canary rollout of a model
    /// version (admin API).
    Rollout(crate::rollout::RolloutArgs),
    /// Read an image's provenance: PNG metadata, the invisible watermark
    /// and C2PA Content Credentials (validated against --ca).
    Verify(crate::verify::VerifyArgs),
    /// Submit, follow, approve, cap, cancel and download batches of
    /// requests (Batch API).
    Batch(crate::batch::BatchArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Print the effective configuration (secrets hidden) and exit.
    #[arg(long)]
    print_config: bool,
    /// What this process runs: `all` (the API and a worker), `api` (the
    /// API only, no models) or `worker` (jobs only; serves just /healthz,
    /// /readyz and /metrics). `api` and `worker` need a PostgreSQL
    /// database. Same as the `role` key, env `EASEL_ROLE`.
    #[arg(long, value_name = "all|api|worker")]
    role: Option<easel_config::Role>,
    /// Serve this model folder (replaces the configured models).
    #[arg(long, value_name = "FOLDER")]
    model: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Folder for the database, images and signing key.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Allow a non-loopback address without API keys.
    #[arg(long)]
    insecure_no_auth: bool,
    /// Log line format: text or json (`telemetry.log_format`).
    #[arg(long, value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    #[command(flatten)]
    engine: EngineFlags,
}

/// Where and how wide the engine computes: the same two flags on every
/// command that runs it (`serve`, `generate`, `eval`, `bench`).
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct EngineFlags {
    /// Device to compute on: cpu, cuda (= cuda:0) or cuda:N. Default: the
    /// configured `pool.device` (cpu). CUDA needs a build with
    /// `--features easel-engine/cuda`.
    #[arg(long)]
    pub device: Option<DeviceChoice>,
    /// What the convolutions and linear layers compute in: f32, or bf16
    /// (f32 accumulation) on CPUs with AMX-BF16 or AVX512-BF16, f32 with a
    /// warning elsewhere. Default: the configured `pool.precision` (f32).
    #[arg(long)]
    pub precision: Option<Precision>,
    /// CPU compute threads (default: candle's choice, the physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// A required model: `--model FOLDER|NAME`, or the deprecated positional
/// folder of earlier releases (hidden from `--help`).
#[derive(Debug, Clone, Args)]
pub(crate) struct ModelArg {
    /// Model folder, or a configured model's name.
    #[arg(
        long = "model",
        value_name = "FOLDER|NAME",
        required_unless_present = "model_positional"
    )]
    model_flag: Option<PathBuf>,
    /// Earlier spelling: the model folder as the first argument.
    #[arg(hide = true, conflicts_with = "model_flag")]
    model_positional: Option<PathBuf>,
}

impl ModelArg {
    /// `(name, folder)` of the model (see [`model_folder`]).
    pub(crate) fn resolve(&self) -> anyhow::Result<(String, PathBuf)> {
        let given = self.model_flag.clone().or(self.model_positional.clone());
        model_folder(None, given)
    }
}

impl EngineFlags {
    /// Applies `--threads` and checks `--device`; call before any model
    /// loads. Returns the device to use, `--device` else `cpu`, for the
    /// commands that do not read `pool.device`.
    pub(crate) fn apply(&self) -> anyhow::Result<DeviceChoice> {
        set_compute_threads(self.threads)?;
        Ok(checked_device(self.device)?.unwrap_or(DeviceChoice::Cpu))
    }
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    text.parse()
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// What to draw.
    prompt: String,
    /// Output file; its extension (.png, .jpg, .webp) picks the format.
    #[arg(short, long)]
    output: PathBuf,
    /// Model folder, or a configured model's name (default: the configured
    /// default model).
    #[arg(long, value_name = "FOLDER|NAME")]
    model: Option<PathBuf>,
    /// Seed: an integer from 0 to 4294967295, or -1 for a random one
    /// (default: random, printed).
    #[arg(long, allow_negative_numbers = true)]
    seed: Option<easel_core::SeedRequest>,
    /// Denoising steps (default: the model's).
    #[arg(long)]
    steps: Option<i64>,
    /// Size as WIDTHxHEIGHT (default: the model's).
    #[arg(long)]
    size: Option<String>,
    /// Sampler: euler, euler_ancestral, heun, dpmpp_2m, ddim, lcm.
    #[arg(long)]
    sampler: Option<String>,
    /// Sigma schedule: default, karras, exponential.
    #[arg(long)]
    schedule: Option<String>,
    /// Classifier-free guidance scale (default: the model's).
    #[arg(long, alias = "guidance-scale")]
    guidance: Option<f64>,
    /// What not to draw.
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Images to make; the second and later are written as FILE-1.png, ...
    #[arg(short, long)]
    n: Option<i64>,
    /// JPEG quality 0–100.
    #[arg(long)]
    compression: Option<u8>,
    #[command(flatten)]
    engine: EngineFlags,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Print each configured model's name, architecture, size on disk,
    /// content hash (when cached) and state, from its configs and weight
    /// headers; no network is loaded.
    List(crate::models::ListArgs),
    /// Register a folder as a new version of a configured model on a
    /// running deployment (admin API); prints its content hash.
    Register(crate::rollout::RegisterArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(cli.config, args),
        Command::Generate(args) => {
            init_logging("warn");
            generate(cli.config, args)
        }
        Command::Models {
            command: ModelsCommand::List(args),
        } => {
            init_logging("warn");
            crate::models::list(cli.config, args)
        }
        Command::Models {
            command: ModelsCommand::Register(args),
        } => {
            init_logging("warn");
            crate::rollout::register(args)
        }
        Command::Keys { command } => {
            init_logging("warn");
            crate::keys::keys(cli.config, command)
        }
        Command::Projects { command } => {
            init_logging("warn");
            crate::keys::projects(cli.config, command)
        }
        Command::Usage(args) => {
            init_logging("warn");
            crate::keys::usage(cli.config, args)
        }
        Command::Drift(args) => {
            init_logging("warn");
            crate::drift::run(cli.config, args)
        }
        Command::Bench { command } => {
            // The server `bench serve` starts polls /readyz: its 503s are
            // expected, not worth a log line.
            init_logging("warn,tower_http=off");
            crate::bench::run(command)
        }
        Command::Eval(args) => {
            init_logging("warn");
            crate::eval::run(args)
        }
        Command::Loadtest(args) => {
            init_logging("warn");
            crate::loadtest::run(args)
        }
        Command::Top(args) => {
            init_logging("warn");
            crate::top::run(args)
        }
        Command::Workers(args) => {
            init_logging("warn");
            crate::workers::run(args)
        }
        Command::Rollout(args) => {
            init_logging("warn");
            crate::rollout::run(args)
        }
        Command::Verify(args) => {
            init_logging("warn");
            crate::verify::run(cli.config, args)
        }
        Command::Batch(args) => {
            init_logging("warn");
            crate::batch::run(args)
        }
    }
}

/// Sets the compute thread count (`--threads`) for candle's pools. Call
/// before any model is loaded: candle sizes its rayon pools from these
/// variables the first time a kernel runs.
pub(crate) fn set_compute_threads(threads: Option<usize>) -> anyhow::Result<()> {
    let Some(n) = threads else {
        return Ok(());
    };
    if n == 0 {
        bail!("--threads must be at least 1");
    }
    // SAFETY: called from `main`'s thread before any other thread exists
    // that could read the environment.
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
    Ok(())
}

/// Text logs on stderr, filtered by `EASEL_LOG`, else `RUST_LOG`, else
/// `default`; no export.
fn init_logging(default: &str) {
    // Without an exporter the guard holds nothing to flush.
    let _ = easel_telemetry::trace::init(&TraceSettings::logs_only(default));
}

fn serve(config_file: Option<PathBuf>, args: ServeArgs) -> anyhow::Result<()> {
    set_compute_threads(args.engine.threads)?;
    let config = Config::load(&Overrides {
        config_file,
        model: args.model,
        listen: args.listen,
        data_dir: args.data_dir,
        insecure_no_auth: args.insecure_no_auth,
        log_format: args.log_format,
        device: checked_device(args.engine.device)?,
        precision: args.engine.precision,
        role: args.role,
    })?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    // Before the runtime: the OTLP exporter's blocking client starts its
    // own. Held to the end, so the last spans are exported on the way out.
    let _trace = easel_telemetry::trace::init(&config.telemetry.settings("info,tower_http=warn"))
        .context("setting up logs and traces ([telemetry])")?;
    config.check_exposure(config.server.listen)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("easel-runtime")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("listening on {}", config.server.listen))?;
        easel_server::run(listener, config, easel_server::shutdown_signal()).await
    })?;
    // The model loader thread may still be running; leaving is fine.
    runtime.shutdown_background();
    Ok(())
}

/// The model to use, `(name, folder)`: `--model` as a folder, else as a
/// configured model's name, else the configured default.
pub(crate) fn model_folder(
    config_file: Option<PathBuf>,
    model: Option<PathBuf>,
) -> anyhow::Result<(String, PathBuf)> {
    if let Some(path) = &model
        && (path.is_dir() || path.components().count() > 1)
    {
        // A path (not a bare name): used as given, so a missing folder is
        // reported by the loader with its path.
        return Ok((model_name_for(path), path.clone()));
    }
    let config = Config::load(&Overrides {
        config_file,
        ..Default::default()
    })?;
    let name = match &model {
        Some(wanted) => {
            let wanted = wanted.to_string_lossy();
            config
                .models
                .iter()
                .find(|m| m.name == wanted)
                .with_context(|| {
                    format!("--model {wanted}: neither a folder nor a configured model name")
                })?
                .name
                .clone()
        }
        None => config
            .default_model_name()
            .context("no model configured: pass --model FOLDER")?
            .to_string(),
    };
    let entry = config
        .models
        .iter()
        .find(|m| m.name == name)
        .context("the default model is not in the model list")?;
    if !entry.path.is_dir() {
        bail!(
            "the model folder {} (model `{name}`) does not exist; pass --model FOLDER with a diffusers model folder",
            entry.path.display()
        );
    }
    Ok((name, entry.path.clone()))
}

/// A `--device` this build can compute on; the flag named in the refusal,
/// before the config (whose `pool.device` the flag replaces) is read.
fn checked_device(device: Option<DeviceChoice>) -> anyhow::Result<Option<DeviceChoice>> {
    device
        .map(|d| d.usable().map_err(|e| anyhow::anyhow!("--device {d}: {e}")))
        .transpose()
}

fn load_model(
    name: &str,
    path: &Path,
    device: DeviceChoice,
    precision: Precision,
) -> anyhow::Result<Model> {
    Model::load(
        path,
        &LoadOptions {
            name: Some(name.to_string()),
            device,
            precision,
            ..Default::default()
        },
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "loading model `{name}` from {}: {e} ({})",
            path.display(),
            e.code()
        )
    })
}

fn output_format_for(path: &Path) -> anyhow::Result<OutputFormat> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .context("the output file needs an extension: .png, .jpg or .webp")?;
    ext.parse()
        .map_err(|e| anyhow::anyhow!("output file {}: {e}", path.display()))
}

fn generate(config_file: Option<PathBuf>, args: GenerateArgs) -> anyhow::Result<()> {
    let format = output_format_for(&args.output)?;
    // The same post-processing as the server (watermark, moderation,
    // near-copy check, C2PA with the data folder's signing chain), so a
    // file made here carries the same provenance.
    set_compute_threads(args.engine.threads)?;
    let config = Config::load(&Overrides {
        config_file: config_file.clone(),
        device: checked_device(args.engine.device)?,
        precision: args.engine.precision,
        ..Default::default()
    })?;
    let device = config.pool.device()?;
    let precision = config.pool.precision()?;
    let post = easel_config::build::post_process(&config)?;
    let (name, path) = model_folder(config_file, args.model)?;
    let loading = crate::progress::spinner(format!("loading {name}"));
    let model = Arc::new(load_model(&name, &path, device, precision)?);
    loading.finish_and_clear();
    let info = model.info().clone();
    let params = GenerationParams::validate(
        RawParams {
            model: info.name.clone(),
            prompt: args.prompt,
            negative_prompt: args.negative_prompt,
            size: args.size,
            n: args.n,
            steps: args.steps,
            guidance_scale: args.guidance,
            seed: args.seed.and_then(easel_core::SeedRequest::fixed),
            sampler: args.sampler,
            schedule: args.schedule,
            strength: None,
            clip_skip: None,
            prompt_rule: easel_core::PromptRule::Required,
        },
        info.default_size,
        info.default_steps,
        info.default_guidance,
        rand::random,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", e.field))?;
    easel_jobs::check_for_model(&params, &info).map_err(|e| anyhow::anyhow!("{}: {e}", e.field))?;
    let output = OutputOptions {
        response_format: ResponseFormat::B64Json,
        output_format: format,
        output_compression: args.compression,
        preview_every_steps: None,
        moderation: easel_core::ModerationLevel::Auto,
    };
    // Drawn only when stderr is a terminal (see `crate::progress`).
    let bar = crate::progress::bar(
        u64::from(params.steps),
        "steps",
        format!("{} image(s)", params.n),
    );
    let mut on_step = |p: Progress| {
        bar.set_length(u64::from(p.total));
        bar.set_position(u64::from(p.step));
    };
    let images = easel_jobs::render(
        &*model,
        &post,
        &params,
        &output,
        None,
        &mut on_step,
        &CancelToken::new(),
    )
    .map_err(|e| anyhow::anyhow!("generation failed ({}): {e}", e.code()))?;
    bar.finish_and_clear();
    for image in &images {
        let file = nth_path(&args.output, image.index);
        std::fs::write(&file, &image.bytes)
            .with_context(|| format!("writing {}", file.display()))?;
        println!(
            "{} ({}x{}, seed {}, sampler {}, sha256 {})",
            file.display(),
            image.width,
            image.height,
            image.seed,
            image.sampler,
            &image.sha256[..16]
        );
    }
    Ok(())
}

/// `out.png`, then `out-1.png`, `out-2.png`, ...
fn nth_path(path: &Path, index: u32) -> PathBuf {
    if index == 0 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("png");
    path.with_file_name(format!("{stem}-{index}.{ext}"))
}

/// Prints a command's report: as JSON on stdout with `--json`, else as
/// `text`; and writes the JSON to `--output` (or the earlier spelling
/// `--json FILE`) when given.
pub(crate) fn write_report<T: serde::Serialize>(
    report: &T,
    text: &str,
    json: Option<&Option<PathBuf>>,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let legacy_file = json.and_then(|j| j.as_deref());
    if matches!(json, Some(None)) {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{text}");
    }
    for path in output.into_iter().chain(legacy_file) {
        std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
