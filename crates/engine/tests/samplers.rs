//! The samplers against diffusers 0.42.1, and batch independence.
//!
//! Fixtures come from `tools/golden/samplers.py` (diffusers' own scheduler
//! classes; see that script for how each sampler × schedule maps to one).
//! Tolerances, all absolute unless said:
//! - timesteps: 2e-3 (f32 values up to 999; Karras/exponential timesteps come
//!   from a log-σ interpolation that diffusers runs partly in f32);
//! - sigmas and `init_noise_sigma`: 1e-5 relative;
//! - full loops: 1e-4 on the final latent (values of order 1, after 6 steps
//!   of f32 arithmetic that diffusers orders differently in its
//!   variance-preserving samplers).
//!
//! The batch test demands bitwise equality: every sampler operation is
//! element-wise with per-step scalars shared by the batch, and SeededNoise
//! gives each image its own generator, so nothing in a batch can reach
//! another image's numbers. (The test network is element-wise too. A real
//! UNet run on a whole batch is not bitwise batch-invariant; the pipeline's
//! tolerance for that is checked in `src/pipeline/batch_tests.rs`.)

use std::collections::HashMap;

use easel_core::{SamplerKind, ScheduleKind};
use easel_engine::EngineError;
use easel_engine::candle_core::{Device, Tensor};
use easel_engine::sampling::{
    ModelDenoiser, NoiseSchedule, NoiseSource, Plan, ReplayNoise, SchedulerConfig, SeededNoise,
    plan, plan_img2img, sample,
};
use serde::Deserialize;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/samplers");
const TIMESTEP_TOL: f64 = 2e-3;
const SIGMA_REL_TOL: f64 = 1e-5;
const LOOP_TOL: f32 = 1e-4;

#[derive(Deserialize)]
struct ScheduleFile {
    configs: HashMap<String, serde_json::Value>,
    schedules: Vec<ScheduleCase>,
}

#[derive(Deserialize)]
struct ScheduleCase {
    config: String,
    sampler: SamplerKind,
    schedule: ScheduleKind,
    steps: usize,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
}

#[derive(Deserialize)]
struct LoopFile {
    meta: Meta,
    configs: HashMap<String, serde_json::Value>,
    noise: Vec<f32>,
    x0: Vec<f32>,
    loops: Vec<LoopCase>,
}

#[derive(Deserialize)]
struct Meta {
    shape: Vec<usize>,
}

#[derive(Deserialize)]
struct LoopCase {
    config: String,
    sampler: SamplerKind,
    schedule: ScheduleKind,
    steps: usize,
    strength: Option<f32>,
    draws: Vec<Vec<f32>>,
    output: Vec<f32>,
}

fn read<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = format!("{FIXTURES}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn configs(raw: &HashMap<String, serde_json::Value>) -> HashMap<String, SchedulerConfig> {
    raw.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                SchedulerConfig::from_json(&v.to_string()).unwrap(),
            )
        })
        .collect()
}

/// The analytic network of the fixtures: tanh(0.5·x_in) + 0.1·t/1000.
fn fake_net(x_in: &Tensor, t: f64) -> easel_engine::Result<Tensor> {
    Ok(x_in
        .affine(0.5, 0.0)?
        .tanh()?
        .affine(1.0, 0.1 * t / 1000.0)?)
}

fn run(
    cfg: &SchedulerConfig,
    sampler: SamplerKind,
    p: &Plan,
    x: Tensor,
    noise: &mut dyn NoiseSource,
) -> easel_engine::Result<Tensor> {
    let ns = NoiseSchedule::from_config(cfg)?;
    let mut den = ModelDenoiser::new(ns, cfg.prediction(), p, fake_net);
    sample(sampler, &mut den, x, p, noise, &mut |_, _| Ok(()))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn every_sampler_schedule_and_spacing_has_diffusers_timesteps_and_sigmas() {
    let file: ScheduleFile = read("schedules.json");
    let cfgs = configs(&file.configs);
    let mut failures = Vec::new();
    let (mut worst_t, mut worst_s) = (0.0f64, 0.0f64);
    for c in &file.schedules {
        let name = format!(
            "{} {} {} steps={}",
            c.config, c.sampler, c.schedule, c.steps
        );
        let p = plan(&cfgs[&c.config], c.sampler, c.schedule, c.steps).unwrap();
        assert_eq!(p.timesteps.len(), c.timesteps.len(), "{name}");
        let t_err = p
            .timesteps
            .iter()
            .zip(&c.timesteps)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        // DDIM and LCM fixtures list the sigmas of the visited timesteps only.
        let s_err = p
            .sigmas
            .iter()
            .zip(&c.sigmas)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1e-3))
            .fold(0.0, f64::max);
        let init_err = (p.init_noise_sigma - c.init_noise_sigma).abs() / c.init_noise_sigma;
        worst_t = worst_t.max(t_err);
        worst_s = worst_s.max(s_err).max(init_err);
        if t_err > TIMESTEP_TOL || s_err > SIGMA_REL_TOL || init_err > SIGMA_REL_TOL {
            failures.push(format!(
                "{name}: timestep err {t_err:.2e}, sigma rel err {s_err:.2e}, init rel err {init_err:.2e}\n  ours   t={:?} s={:?}\n  theirs t={:?} s={:?}",
                p.timesteps, p.sigmas, c.timesteps, c.sigmas
            ));
        }
    }
    eprintln!(
        "{} schedules, worst timestep err {worst_t:.2e}, worst sigma rel err {worst_s:.2e}",
        file.schedules.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        file.schedules.len(),
        failures.join("\n")
    );
}

#[test]
fn every_sampler_and_schedule_matches_a_full_diffusers_loop() {
    let file: LoopFile = read("loops.json");
    let cfgs = configs(&file.configs);
    let dev = Device::Cpu;
    let shape = file.meta.shape.clone();
    let noise = Tensor::from_vec(file.noise.clone(), shape.clone(), &dev).unwrap();
    let x0 = Tensor::from_vec(file.x0.clone(), shape.clone(), &dev).unwrap();
    let mut report = Vec::new();
    let mut worst = 0.0f32;
    for c in &file.loops {
        let cfg = &cfgs[&c.config];
        let name = format!(
            "{} {} {} strength={:?}",
            c.config, c.sampler, c.schedule, c.strength
        );
        let (p, x) = match c.strength {
            None => {
                let p = plan(cfg, c.sampler, c.schedule, c.steps).unwrap();
                let x = (&noise * p.init_noise_sigma).unwrap();
                (p, x)
            }
            Some(s) => {
                let p = plan_img2img(cfg, c.sampler, c.schedule, c.steps, s).unwrap();
                let x = (&x0 + (&noise * p.sigmas[0]).unwrap()).unwrap();
                (p, x)
            }
        };
        let draws = c
            .draws
            .iter()
            .map(|d| Tensor::from_vec(d.clone(), shape.clone(), &dev).unwrap());
        let mut replay = ReplayNoise::new(draws);
        let out = run(cfg, c.sampler, &p, x, &mut replay).unwrap();
        // Euler ancestral: diffusers also draws on the step to sigma = 0 (and multiplies it by 0).
        assert!(
            replay.remaining() <= 1,
            "{name}: {} draws unused",
            replay.remaining()
        );
        let got: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        let err = max_abs_diff(&got, &c.output);
        worst = worst.max(err);
        report.push(format!("{name}: max abs err {err:.2e}"));
    }
    let bad: Vec<&String> = report
        .iter()
        .filter(|l| l.rsplit(' ').next().unwrap().parse::<f32>().unwrap() > LOOP_TOL)
        .collect();
    assert!(
        bad.is_empty(),
        "over {LOOP_TOL:e}:\n{bad:#?}\nall:\n{}",
        report.join("\n")
    );
    eprintln!("{} loops, worst max abs err {worst:.2e}", report.len());
}

fn supported() -> Vec<(SamplerKind, ScheduleKind)> {
    let cfg = sd_config();
    let mut v = Vec::new();
    for &s in SamplerKind::ALL {
        for &k in ScheduleKind::ALL {
            if plan(&cfg, s, k, 5).is_ok() {
                v.push((s, k));
            }
        }
    }
    v
}

fn sd_config() -> SchedulerConfig {
    SchedulerConfig::from_json(
        r#"{"_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "timestep_spacing": "leading", "steps_offset": 1}"#,
    )
    .unwrap()
}

/// Text-to-image the way the pipeline does it: the first draw of each
/// image's generator is its initial noise, later draws go to the sampler.
fn generate(sampler: SamplerKind, schedule: ScheduleKind, seeds: &[u64]) -> Vec<f32> {
    let cfg = sd_config();
    let p = plan(&cfg, sampler, schedule, 5).unwrap();
    let mut noise = SeededNoise::new(seeds, &Device::Cpu);
    let x = (noise.sample(&[3, 4, 4]).unwrap() * p.init_noise_sigma).unwrap();
    let out = run(&cfg, sampler, &p, x, &mut noise).unwrap();
    out.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn a_batch_of_three_seeds_equals_each_seed_alone_for_every_sampler() {
    let seeds = [11u64, 22, 33];
    let combos = supported();
    assert_eq!(combos.len(), 14, "{combos:?}");
    for (sampler, schedule) in combos {
        let batch = generate(sampler, schedule, &seeds);
        let per = batch.len() / seeds.len();
        for (i, &seed) in seeds.iter().enumerate() {
            let alone = generate(sampler, schedule, &[seed]);
            assert!(
                batch[i * per..(i + 1) * per] == alone[..],
                "{sampler} {schedule}: seed {seed} differs in a batch (max abs diff {:e})",
                max_abs_diff(&batch[i * per..(i + 1) * per], &alone)
            );
        }
        // And the seeds really differ, so the test could fail.
        assert!(batch[..per] != batch[per..2 * per], "{sampler} {schedule}");
    }
}

#[test]
fn an_error_from_on_step_stops_the_run_between_steps() {
    let cfg = sd_config();
    let p = plan(&cfg, SamplerKind::Euler, ScheduleKind::Default, 5).unwrap();
    let ns = NoiseSchedule::from_config(&cfg).unwrap();
    let mut calls = 0;
    let mut den = ModelDenoiser::new(ns, cfg.prediction(), &p, |x: &Tensor, t| {
        calls += 1;
        fake_net(x, t)
    });
    let x = Tensor::zeros((1, 2), easel_engine::candle_core::DType::F32, &Device::Cpu).unwrap();
    let mut noise = SeededNoise::new(&[1], &Device::Cpu);
    let err = sample(
        SamplerKind::Euler,
        &mut den,
        x,
        &p,
        &mut noise,
        &mut |i, _| {
            if i == 1 {
                Err(EngineError::Cancelled)
            } else {
                Ok(())
            }
        },
    )
    .unwrap_err();
    drop(den);
    assert!(matches!(err, EngineError::Cancelled));
    assert_eq!(calls, 2);
}

#[test]
fn a_plan_is_refused_by_a_sampler_it_was_not_made_for() {
    let cfg = sd_config();
    let p = plan(&cfg, SamplerKind::Euler, ScheduleKind::Default, 5).unwrap();
    let x = Tensor::zeros((1, 2), easel_engine::candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = run(
        &cfg,
        SamplerKind::Heun,
        &p,
        x,
        &mut SeededNoise::new(&[1], &Device::Cpu),
    )
    .unwrap_err();
    assert_eq!(err.code(), "invalid_sampler");
}
