//! Subcommands: `serve`, `generate`, `models list`, `keys create`, `bench engine`
//! (in `crate::bench`), `eval` (in `crate::eval`), `loadtest` (in
//! `crate::loadtest`), `top` (in `crate::top`), `verify` (in `crate::verify`).

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use easel_core::{GenerationParams, OutputFormat, OutputOptions, RawParams, ResponseFormat};
use easel_engine::{CancelToken, DeviceChoice, LoadOptions, Model, Progress};
use easel_server::auth::{Scope, create_key};
use easel_server::config::{Config, Overrides, model_name_for};
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
    /// Inspect the configured models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
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
    /// Read an image's provenance: PNG metadata, the invisible watermark
    /// and C2PA Content Credentials (validated against --ca).
    Verify(crate::verify::VerifyArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Print the effective configuration (secrets hidden) and exit.
    #[arg(long)]
    print_config: bool,
    /// Serve this model folder (replaces the configured models).
    #[arg(long)]
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
    /// Device the models compute on: cpu, cuda (= cuda:0) or cuda:N
    /// (`pool.device`; default: cpu).
    #[arg(long)]
    device: Option<DeviceChoice>,
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
    /// Model folder (default: the configured default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Seed (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
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
    /// Guidance scale (default: the model's).
    #[arg(long)]
    guidance_scale: Option<f64>,
    /// What not to draw.
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Images to make; the second and later are written as FILE-1.png, ...
    #[arg(short, long)]
    n: Option<i64>,
    /// JPEG quality 0–100.
    #[arg(long)]
    compression: Option<u8>,
    /// Device to compute on: cpu, cuda (= cuda:0) or cuda:N. Default: the
    /// configured `pool.device` (cpu). CUDA needs a build with
    /// `--features easel-engine/cuda`.
    #[arg(long)]
    device: Option<DeviceChoice>,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Load each configured model and print its name, architecture, hash and folder.
    List {
        /// List this folder instead of the configured models.
        #[arg(long)]
        model: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print a new random API key and the config entry that accepts it.
    Create {
        /// Name recorded for the key's holder.
        #[arg(long, default_value = "default")]
        name: String,
        /// Grant the admin scope too.
        #[arg(long)]
        admin: bool,
    },
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
            command: ModelsCommand::List { model },
        } => {
            init_logging("warn");
            models_list(cli.config, model)
        }
        Command::Keys {
            command: KeysCommand::Create { name, admin },
        } => {
            let scopes: &[Scope] = if admin {
                &[Scope::Generate, Scope::Admin]
            } else {
                &[Scope::Generate]
            };
            let (key, entry) = create_key(&name, scopes);
            println!("API key (shown once; give it to the client):\n\n  {key}\n");
            println!("Add to easel.toml:\n\n{entry}");
            Ok(())
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
        Command::Verify(args) => {
            init_logging("warn");
            crate::verify::run(cli.config, args)
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

/// Text logs on stderr, filtered by `EASEL_LOG` or `default`; no export.
fn init_logging(default: &str) {
    // Without an exporter the guard holds nothing to flush.
    let _ = easel_telemetry::trace::init(&TraceSettings::logs_only(default));
}

fn serve(config_file: Option<PathBuf>, args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&Overrides {
        config_file,
        model: args.model,
        listen: args.listen,
        data_dir: args.data_dir,
        insecure_no_auth: args.insecure_no_auth,
        log_format: args.log_format,
        device: checked_device(args.device)?,
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

/// The model folder to use: `--model`, else the configured default.
pub(crate) fn model_folder(
    config_file: Option<PathBuf>,
    model: Option<PathBuf>,
) -> anyhow::Result<(String, PathBuf)> {
    if let Some(path) = model {
        return Ok((model_name_for(&path), path));
    }
    let config = Config::load(&Overrides {
        config_file,
        ..Default::default()
    })?;
    let name = config
        .default_model_name()
        .context("no model configured: pass --model PATH")?
        .to_string();
    let entry = config
        .models
        .iter()
        .find(|m| m.name == name)
        .context("the default model is not in the model list")?;
    if !entry.path.is_dir() {
        bail!(
            "the model folder {} (model `{name}`) does not exist; pass --model PATH with a diffusers model folder",
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

fn load_model(name: &str, path: &Path, device: DeviceChoice) -> anyhow::Result<Model> {
    Model::load(
        path,
        &LoadOptions {
            name: Some(name.to_string()),
            device,
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
    let config = Config::load(&Overrides {
        config_file: config_file.clone(),
        device: checked_device(args.device)?,
        ..Default::default()
    })?;
    let device = config.pool.device()?;
    let post = easel_server::responsible::build_post_process(&config)?;
    let (name, path) = model_folder(config_file, args.model)?;
    let model = Arc::new(load_model(&name, &path, device)?);
    let info = model.info().clone();
    let params = GenerationParams::validate(
        RawParams {
            model: info.name.clone(),
            prompt: args.prompt,
            negative_prompt: args.negative_prompt,
            size: args.size,
            n: args.n,
            steps: args.steps,
            guidance_scale: args.guidance_scale,
            seed: args.seed,
            sampler: args.sampler,
            schedule: args.schedule,
            strength: None,
        },
        info.default_size,
        info.default_steps,
        info.default_guidance,
        || u64::from(rand::random::<u32>()),
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", e.field))?;
    easel_jobs::check_for_model(&params, &info).map_err(|e| anyhow::anyhow!("{}: {e}", e.field))?;
    let output = OutputOptions {
        response_format: ResponseFormat::B64Json,
        output_format: format,
        output_compression: args.compression,
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(u64::from(params.steps));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} steps ({elapsed})",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_message(format!("{} image(s)", params.n));
        bar
    });
    let mut on_step = |p: Progress| {
        if let Some(bar) = &bar {
            bar.set_length(u64::from(p.total));
            bar.set_position(u64::from(p.step));
        }
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
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
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

fn models_list(config_file: Option<PathBuf>, model: Option<PathBuf>) -> anyhow::Result<()> {
    let entries: Vec<(String, PathBuf)> = match model {
        Some(path) => vec![(model_name_for(&path), path)],
        None => {
            let config = Config::load(&Overrides {
                config_file,
                ..Default::default()
            })?;
            config
                .models
                .iter()
                .map(|m| (m.name.clone(), m.path.clone()))
                .collect()
        }
    };
    println!("{:<20} {:<12} {:<24} PATH", "NAME", "ARCHITECTURE", "HASH");
    let mut failed = 0;
    for (name, path) in entries {
        // Reading the headers and hashing needs no GPU.
        match load_model(&name, &path, DeviceChoice::Cpu) {
            Ok(model) => {
                let info = model.info();
                let arch = serde_json::to_value(info.architecture)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let hash: String = info.content_hash.chars().take(23).collect();
                println!("{name:<20} {arch:<12} {hash:<24} {}", path.display());
            }
            Err(e) => {
                failed += 1;
                println!(
                    "{name:<20} {:<12} {:<24} {} ({e})",
                    "-",
                    "-",
                    path.display()
                );
            }
        }
    }
    if failed > 0 {
        bail!("{failed} model(s) could not be loaded");
    }
    Ok(())
}
