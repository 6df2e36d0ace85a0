//! Measuring the engine: how long each network stage takes and how much
//! memory it needs (`easel bench engine`, docs/performance.md).
//!
//! Stages, each on fixed inputs: loading the folder; encoding one prompt;
//! one denoiser (UNet) call at batch 1 and at batch 2 (the classifier-free
//! guidance batch); decoding one latent to pixels (latent models only); and,
//! when asked, one whole image at the model's default settings. Each stage
//! runs `warmup` untimed calls, then `repeats` timed ones; the report keeps
//! every sample with its median and minimum.
//!
//! Memory is the peak resident set size (VmHWM). On Linux the peak is reset
//! before each stage by writing `5` to `/proc/self/clear_refs`, so each
//! stage's figure is the highest RSS seen while it ran: the weights already
//! resident plus what the stage allocates. Where that reset is refused the
//! figure is the process peak so far (it never goes down), and the report
//! says so ([`MemoryMethod`]).
//!
//! Threads: candle's CPU kernels run on rayon pools sized by the
//! `RAYON_NUM_THREADS` (and `CANDLE_NUM_THREADS`) environment variables,
//! read once, the first time a kernel runs. Whoever wants a thread count
//! sets them before loading anything (the CLI does); the report records the
//! count candle actually uses.
//!
//! The same measurement in diffusers (tools/bench/diffusers_bench.py) prints
//! a [`ReferenceReport`] in the same shape; [`comparison_table`] sets the
//! two side by side with their ratios.

use std::fmt;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use easel_core::{ScheduleKind, Size};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{Architecture, LoadOptions, Model};
use crate::request::{CancelToken, ImageRequest};

/// The prompt every stage encodes (the classic SD example).
pub const PROMPT: &str = "a photograph of an astronaut riding a horse";

/// The timestep of the timed denoiser calls (mid-schedule; the cost does
/// not depend on it).
pub const TIMESTEP: f64 = 500.0;

/// What to measure and how often.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Image size; `None` uses the model's default size.
    pub size: Option<Size>,
    /// Untimed calls before the timed ones. Default 1.
    pub warmup: usize,
    /// Timed calls per stage. Default 3.
    pub repeats: usize,
    /// Also time one whole image at the model's default settings (steps,
    /// guidance, sampler). Default false: at SD 1.5 size that is minutes.
    pub full_image: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            size: None,
            warmup: 1,
            repeats: 3,
            full_image: false,
        }
    }
}

/// A measured stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Loading the model folder (one sample, no warm-up).
    Load,
    /// Tokenising and encoding one prompt.
    TextEncode,
    /// One denoiser call, batch 1.
    DenoiseB1,
    /// One denoiser call, batch 2.
    DenoiseB2,
    /// Decoding one latent to pixels.
    Decode,
    /// One whole image at the model's default settings.
    FullImage,
}

impl Stage {
    /// A short human label.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Load => "load",
            Stage::TextEncode => "text encode, batch 1",
            Stage::DenoiseB1 => "denoiser step, batch 1",
            Stage::DenoiseB2 => "denoiser step, batch 2",
            Stage::Decode => "decode, batch 1",
            Stage::FullImage => "one image, default settings",
        }
    }
}

/// How memory figures were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryMethod {
    /// VmHWM, reset before each stage through `/proc/self/clear_refs`.
    PerStage,
    /// VmHWM without reset: the process peak up to the end of the stage.
    ProcessPeak,
    /// No figure (not Linux).
    Unavailable,
}

/// Figures for one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageFigures {
    /// Which stage.
    pub stage: Stage,
    /// Each timed call, in seconds.
    pub samples_s: Vec<f64>,
    /// Median of `samples_s`.
    pub median_s: f64,
    /// Minimum of `samples_s`.
    pub min_s: f64,
    /// Peak resident memory while the stage ran, bytes (see [`MemoryMethod`]).
    pub peak_rss_bytes: Option<u64>,
}

impl StageFigures {
    fn new(stage: Stage, samples_s: Vec<f64>, peak_rss_bytes: Option<u64>) -> Self {
        let mut sorted = samples_s.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median_s = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Self {
            stage,
            min_s: sorted.first().copied().unwrap_or(f64::NAN),
            median_s,
            samples_s,
            peak_rss_bytes,
        }
    }
}

/// The inputs every stage used, so a reference run can use the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchInputs {
    /// The prompt.
    pub prompt: String,
    /// Its token ids, padded to the tokenizer's fixed length.
    pub token_ids: Vec<u32>,
    /// Image size.
    pub width: u32,
    /// Image size.
    pub height: u32,
    /// Denoiser input per image: `[channels, height, width]`.
    pub latent_shape: [usize; 3],
    /// Timestep of the denoiser calls.
    pub timestep: f64,
}

/// The engine's figures for one model.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Model name.
    pub model: String,
    /// Architecture.
    pub architecture: Architecture,
    /// What every stage was fed.
    pub inputs: BenchInputs,
    /// Threads candle's CPU kernels use.
    pub threads: usize,
    /// Untimed calls per stage.
    pub warmup: usize,
    /// Timed calls per stage.
    pub repeats: usize,
    /// How memory was measured.
    pub memory: MemoryMethod,
    /// Load first, then the stages in order.
    pub stages: Vec<StageFigures>,
}

impl BenchReport {
    /// The figures of `stage`, if it was measured.
    pub fn stage(&self, stage: Stage) -> Option<&StageFigures> {
        self.stages.iter().find(|s| s.stage == stage)
    }
}

/// What tools/bench/diffusers_bench.py prints (JSON).
#[derive(Debug, Clone, Deserialize)]
pub struct ReferenceReport {
    /// Library versions, e.g. "diffusers 0.42.1, torch 2.15.0".
    pub library: String,
    /// Threads torch used.
    pub threads: usize,
    /// How memory was measured.
    pub memory: MemoryMethod,
    /// Whether the reference tokenizer gave the same ids as the engine's.
    #[serde(default)]
    pub token_ids_match: Option<bool>,
    /// Load first, then the stages.
    pub stages: Vec<StageFigures>,
}

impl ReferenceReport {
    /// The figures of `stage`, if it was measured.
    pub fn stage(&self, stage: Stage) -> Option<&StageFigures> {
        self.stages.iter().find(|s| s.stage == stage)
    }
}

/// Loads `dir` and measures every stage.
pub fn run(dir: &Path, load: &LoadOptions, opts: &BenchOptions) -> Result<BenchReport> {
    let memory = memory::method();
    let mut stages = Vec::new();

    memory::reset();
    let start = Instant::now();
    let model = Model::load(dir, load)?;
    let load_s = start.elapsed().as_secs_f64();
    stages.push(StageFigures::new(Stage::Load, vec![load_s], memory::peak()));

    let info = model.info().clone();
    let size = opts.size.unwrap_or(info.default_size);
    let channels = model.unet.config.in_channels;
    let factor = model.vae.as_ref().map_or(1, |v| v.config.scale_factor());
    let latent_shape = [
        channels,
        size.height as usize / factor,
        size.width as usize / factor,
    ];
    let token_ids = model
        .token_ids(&[PROMPT])?
        .pop()
        .expect("one prompt gives one row of ids");
    let inputs = BenchInputs {
        prompt: PROMPT.to_string(),
        token_ids,
        width: size.width,
        height: size.height,
        latent_shape,
        timestep: TIMESTEP,
    };
    let device = model.device().clone();
    let timer = Timer {
        warmup: opts.warmup,
        repeats: opts.repeats.max(1),
        device: &device,
    };

    stages.push(timer.stage(Stage::TextEncode, || model.encode_prompts(&[PROMPT]))?);
    let context = model.encode_prompts(&[PROMPT])?;
    let sdxl = info.architecture == Architecture::Sdxl;
    let pooled = model.pooled_prompts(&[PROMPT])?;
    for (stage, batch) in [(Stage::DenoiseB1, 1), (Stage::DenoiseB2, 2)] {
        let [c, h, w] = latent_shape;
        let x = Tensor::randn(0f32, 1f32, (batch, c, h, w), &device)?;
        let ctx = Tensor::cat(&vec![&context; batch], 0)?;
        let figures = match (&pooled, sdxl) {
            (Some(pooled), true) => {
                let text_embeds = Tensor::cat(&vec![pooled; batch], 0)?;
                let (hf, wf) = (f64::from(size.height), f64::from(size.width));
                let ids = [hf, wf, 0.0, 0.0, hf, wf].repeat(batch);
                let time_ids = Tensor::from_vec(ids, (batch, 6), &device)?.to_dtype(DType::F32)?;
                timer.stage(stage, || {
                    model.unet_forward_sdxl(&x, TIMESTEP, &ctx, &text_embeds, &time_ids)
                })?
            }
            _ => timer.stage(stage, || model.unet_forward(&x, TIMESTEP, &ctx))?,
        };
        stages.push(figures);
    }
    if model.vae.is_some() {
        // The latents the UNet makes (an inpainting UNet takes more).
        let [_, h, w] = latent_shape;
        let c = model.unet.config.out_channels;
        let z = Tensor::randn(0f32, 1f32, (1, c, h, w), &device)?;
        stages.push(timer.stage(Stage::Decode, || model.decode(&z))?);
    }
    if opts.full_image {
        let request = ImageRequest {
            prompt: PROMPT.to_string(),
            negative_prompt: String::new(),
            size,
            steps: info.default_steps,
            guidance_scale: info.default_guidance,
            seed: 0,
            sampler: None,
            schedule: ScheduleKind::Default,
            init_image: None,
            mask: None,
            clip_skip: None,
        };
        let cancel = CancelToken::new();
        stages.push(timer.stage(Stage::FullImage, || {
            model.generate(std::slice::from_ref(&request), &mut (), &cancel)
        })?);
    }
    Ok(BenchReport {
        model: info.name,
        architecture: info.architecture,
        inputs,
        threads: candle_core::utils::get_num_threads(),
        warmup: opts.warmup,
        repeats: opts.repeats.max(1),
        memory,
        stages,
    })
}

/// Runs one stage: warm-up, timed repeats, peak memory.
struct Timer<'a> {
    warmup: usize,
    repeats: usize,
    device: &'a Device,
}

impl Timer<'_> {
    fn stage<T>(&self, stage: Stage, mut call: impl FnMut() -> Result<T>) -> Result<StageFigures> {
        memory::reset();
        for _ in 0..self.warmup {
            drop(call()?);
        }
        let mut samples = Vec::with_capacity(self.repeats);
        for _ in 0..self.repeats {
            let start = Instant::now();
            let out = call()?;
            // CPU kernels are synchronous; on CUDA wait for the queued work.
            self.device.synchronize()?;
            samples.push(start.elapsed().as_secs_f64());
            drop(out);
        }
        tracing::info!(?stage, ?samples, "bench stage done");
        Ok(StageFigures::new(stage, samples, memory::peak()))
    }
}

/// Peak resident memory through /proc (Linux).
mod memory {
    use super::MemoryMethod;

    /// Whether the per-stage reset works here: reset, then the peak must
    /// have dropped to about the current RSS.
    pub(super) fn method() -> MemoryMethod {
        if status_kib("VmHWM").is_none() {
            return MemoryMethod::Unavailable;
        }
        // Touch 64 MiB so the peak is certainly above the RSS after freeing.
        let v = vec![1u8; 64 << 20];
        std::hint::black_box(&v);
        drop(v);
        let reset_ok = reset()
            && matches!(
                (status_kib("VmHWM"), status_kib("VmRSS")),
                (Some(hwm), Some(rss)) if hwm <= rss + (16 << 10)
            );
        if reset_ok {
            MemoryMethod::PerStage
        } else {
            MemoryMethod::ProcessPeak
        }
    }

    /// Resets the peak RSS to the current RSS; false where refused.
    pub(super) fn reset() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }

    /// The peak RSS since the last reset (or process start), bytes.
    pub(super) fn peak() -> Option<u64> {
        status_kib("VmHWM").map(|kib| kib * 1024)
    }

    fn status_kib(field: &str) -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        status.lines().find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().strip_suffix("kB")?.trim().parse().ok()
        })
    }
}

fn gib(bytes: Option<u64>) -> String {
    match bytes {
        None => "-".into(),
        Some(b) if b < 1 << 30 => format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64),
        Some(b) => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
    }
}

fn secs(s: f64) -> String {
    if s < 0.01 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.3} s")
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inputs;
        writeln!(
            f,
            "model {} ({:?}), {}x{}, denoiser input {:?}, {} threads, {} warm-up + {} timed calls, memory: {:?}",
            self.model,
            self.architecture,
            i.width,
            i.height,
            i.latent_shape,
            self.threads,
            self.warmup,
            self.repeats,
            self.memory
        )?;
        writeln!(
            f,
            "{:<28} {:>11} {:>11} {:>11}",
            "stage", "median", "min", "peak RSS"
        )?;
        for s in &self.stages {
            writeln!(
                f,
                "{:<28} {:>11} {:>11} {:>11}",
                s.stage.label(),
                secs(s.median_s),
                secs(s.min_s),
                gib(s.peak_rss_bytes)
            )?;
        }
        Ok(())
    }
}

/// The engine's figures next to the reference's, with ratios
/// (engine / reference: above 1 means the engine is slower or larger).
pub fn comparison_table(easel: &BenchReport, reference: &ReferenceReport) -> String {
    let mut out = format!(
        "easel (candle, {} threads) vs {} ({} threads); ratio = easel / reference\n",
        easel.threads, reference.library, reference.threads
    );
    out += &format!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>6} {:>10} {:>10} {:>6}\n",
        "stage",
        "easel med",
        "easel min",
        "ref med",
        "ref min",
        "ratio",
        "easel RSS",
        "ref RSS",
        "ratio"
    );
    for e in &easel.stages {
        let Some(r) = reference.stage(e.stage) else {
            continue;
        };
        let mem_ratio = match (e.peak_rss_bytes, r.peak_rss_bytes) {
            (Some(a), Some(b)) if b > 0 => format!("{:.2}", a as f64 / b as f64),
            _ => "-".into(),
        };
        out += &format!(
            "{:<28} {:>10} {:>10} {:>10} {:>10} {:>6.2} {:>10} {:>10} {:>6}\n",
            e.stage.label(),
            secs(e.median_s),
            secs(e.min_s),
            secs(r.median_s),
            secs(r.min_s),
            e.median_s / r.median_s,
            gib(e.peak_rss_bytes),
            gib(r.peak_rss_bytes),
            mem_ratio
        );
    }
    if reference.token_ids_match == Some(false) {
        out += "warning: the reference tokenizer gave other token ids; it used the engine's\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd_sample_counts() {
        let odd = StageFigures::new(Stage::Decode, vec![3.0, 1.0, 2.0], None);
        assert_eq!((odd.median_s, odd.min_s), (2.0, 1.0));
        let even = StageFigures::new(Stage::Decode, vec![4.0, 1.0, 2.0, 3.0], None);
        assert_eq!((even.median_s, even.min_s), (2.5, 1.0));
    }

    #[test]
    fn every_stage_of_the_tiny_sd1_model_is_measured() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/tiny-sd1");
        let opts = BenchOptions {
            warmup: 0,
            repeats: 2,
            full_image: true,
            ..Default::default()
        };
        let load = LoadOptions {
            hash_cache: crate::HashCache::Off,
            ..Default::default()
        };
        let report = run(&dir, &load, &opts).unwrap();
        let expected = [
            Stage::Load,
            Stage::TextEncode,
            Stage::DenoiseB1,
            Stage::DenoiseB2,
            Stage::Decode,
            Stage::FullImage,
        ];
        let measured: Vec<Stage> = report.stages.iter().map(|s| s.stage).collect();
        assert_eq!(measured, expected);
        for s in &report.stages {
            let n = if s.stage == Stage::Load { 1 } else { 2 };
            assert_eq!(s.samples_s.len(), n, "{:?}", s.stage);
            assert!(s.min_s > 0.0 && s.median_s >= s.min_s, "{s:?}");
            if report.memory != MemoryMethod::Unavailable {
                assert!(s.peak_rss_bytes.is_some_and(|b| b > 0), "{s:?}");
            }
        }
        assert_eq!(report.inputs.token_ids.len(), 77);
        assert_eq!(report.inputs.latent_shape[0], 4);
        assert!(report.threads >= 1);
        let table = report.to_string();
        assert!(table.contains("denoiser step, batch 2"), "{table}");
    }

    #[test]
    fn reference_json_parses_into_the_same_stages() {
        let json = r#"{"library": "diffusers 0.42.1, torch 2.15.0", "threads": 2,
            "memory": "per_stage", "token_ids_match": true,
            "stages": [{"stage": "denoise_b1", "samples_s": [1.0, 3.0], "median_s": 2.0,
                        "min_s": 1.0, "peak_rss_bytes": 1024}]}"#;
        let r: ReferenceReport = serde_json::from_str(json).unwrap();
        assert_eq!(r.stage(Stage::DenoiseB1).unwrap().median_s, 2.0);
        assert!(r.stage(Stage::Decode).is_none());
    }
}
