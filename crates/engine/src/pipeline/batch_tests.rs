//! A batch against the same requests run alone, on the final latents
//! (which only the crate sees) and on the 8-bit pixels: the batching rule
//! of the module docs ("Batches"). Run with `--nocapture` to see the
//! figures recorded in `docs/performance.md`.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use easel_core::{SamplerKind, ScheduleKind, Size};

use super::denoise;
use crate::loader::hash::HashCache;
use crate::model::{LoadOptions, Model};
use crate::request::{CancelToken, ImageRequest, RgbImage};
use crate::sampling::SeededNoise;

/// The batching tolerance: largest difference allowed between an image's
/// final latents in a batch and alone, absolute for latents of order one
/// (every real model) and relative to the largest latent value above that
/// (the random-weight fixtures, whose values reach 1e5); see the module
/// docs.
const LATENT_TOLERANCE: f32 = 1e-3;

fn load(dir: &Path) -> Model {
    let opts = LoadOptions {
        hash_cache: HashCache::Off,
        ..Default::default()
    };
    Model::load(dir, &opts).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/easel-emoji")
}

/// Three requests with different prompts and seeds and the model's
/// defaults.
fn requests(model: &Model, sampler: Option<SamplerKind>) -> Vec<ImageRequest> {
    let info = model.info();
    ["a red apple", "a taco", "grinning face"]
        .iter()
        .enumerate()
        .map(|(i, p)| ImageRequest {
            prompt: (*p).into(),
            negative_prompt: if i == 1 {
                "blurry".into()
            } else {
                String::new()
            },
            size: Size {
                width: info.default_size.width,
                height: info.default_size.height,
            },
            steps: info.default_steps.min(8),
            guidance_scale: info.default_guidance,
            seed: 100 + i as u64,
            sampler,
            schedule: ScheduleKind::Default,
            init_image: None,
            mask: None,
            clip_skip: None,
        })
        .collect()
}

fn latents(model: &Model, reqs: &[ImageRequest]) -> Tensor {
    let seeds: Vec<u64> = reqs.iter().map(|r| r.seed).collect();
    let mut noise = SeededNoise::new(&seeds, model.device());
    denoise(model, reqs, &mut noise, &mut (), &CancelToken::new())
        .unwrap()
        .latents
}

fn pixels(model: &Model, reqs: &[ImageRequest]) -> Vec<RgbImage> {
    model
        .generate(reqs, &mut (), &CancelToken::new())
        .unwrap()
        .into_iter()
        .map(|g| g.image)
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Over a batch's images against the same images alone.
#[derive(Debug, Default)]
struct Figures {
    latent_max: f32,
    latent_scale: f32,
    channels_differing: usize,
    channels: usize,
    pixel_max: u8,
}

/// Runs `reqs` as one batch and each alone, checks the rule and the
/// reproducibility of both, and returns the differences.
fn measure(model: &Model, reqs: &[ImageRequest]) -> Figures {
    let batch = latents(model, reqs);
    assert_eq!(
        max_abs_diff(&batch, &latents(model, reqs)),
        0.0,
        "a batch run twice gives identical latents"
    );
    let batch_px = pixels(model, reqs);
    assert_eq!(
        batch_px,
        pixels(model, reqs),
        "a batch run twice: same pixels"
    );
    let mut f = Figures::default();
    for (i, r) in reqs.iter().enumerate() {
        let one = std::slice::from_ref(r);
        let alone = latents(model, one);
        assert_eq!(max_abs_diff(&alone, &latents(model, one)), 0.0);
        let d = max_abs_diff(&batch.narrow(0, i, 1).unwrap(), &alone);
        f.latent_max = f.latent_max.max(d);
        let scale = alone.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        f.latent_scale = f.latent_scale.max(scale.to_scalar::<f32>().unwrap());
        let alone_px = pixels(model, one).remove(0);
        assert_eq!(alone_px, pixels(model, one)[0], "alone twice: same pixels");
        for (a, b) in alone_px.pixels.iter().zip(&batch_px[i].pixels) {
            f.channels += 1;
            if a != b {
                f.channels_differing += 1;
                f.pixel_max = f.pixel_max.max(a.abs_diff(*b));
            }
        }
    }
    // The images of a batch really differ, so the comparison could fail.
    assert_ne!(batch_px[0], batch_px[1]);
    f
}

fn check(name: &str, model: &Model, reqs: &[ImageRequest]) {
    let f = measure(model, reqs);
    eprintln!(
        "{name}: batch of {} vs alone: max |Δlatent| {:.3e} (max |latent| {:.3e}); 8-bit values differing {}/{} ({:.3} %), max {}",
        reqs.len(),
        f.latent_max,
        f.latent_scale,
        f.channels_differing,
        f.channels,
        100.0 * f.channels_differing as f64 / f.channels as f64,
        f.pixel_max
    );
    let allowed = LATENT_TOLERANCE * f.latent_scale.max(1.0);
    assert!(
        f.latent_max <= allowed,
        "{name}: a batch moved the final latents by {:e} (allowed {allowed:e})",
        f.latent_max
    );
}

#[test]
fn a_batch_stays_within_the_tolerance_of_each_request_alone_on_the_fixtures() {
    for (name, sampler) in [
        ("tiny-pixel", SamplerKind::Euler),
        ("tiny-pixel", SamplerKind::EulerAncestral),
        ("tiny-sd1", SamplerKind::EulerAncestral),
        ("tiny-sd2", SamplerKind::Euler),
        ("tiny-sdxl", SamplerKind::DpmPp2m),
    ] {
        let model = load(&fixture(name));
        let reqs = requests(&model, Some(sampler));
        check(&format!("{name} {sampler}"), &model, &reqs);
    }
}

#[test]
fn an_image_to_image_batch_stays_within_the_tolerance() {
    let model = load(&fixture("tiny-sd1"));
    let side = model.info().default_size.width;
    let init = |shade: u8| RgbImage {
        width: side,
        height: side,
        pixels: (0..side * side * 3)
            .map(|i| (i as u8).wrapping_mul(shade))
            .collect(),
    };
    let mut reqs = requests(&model, Some(SamplerKind::Euler));
    for (i, r) in reqs.iter_mut().enumerate() {
        r.steps = 6;
        r.init_image = Some((init(3 + 2 * i as u8), 0.6));
    }
    check("tiny-sd1 img2img", &model, &reqs);
}

#[test]
fn a_batch_stays_within_the_tolerance_on_the_bundled_model() {
    let dir = bundled();
    if !dir.join("model_index.json").exists() {
        eprintln!("skipped: {} is absent", dir.display());
        return;
    }
    let model = load(&dir);
    let mut reqs = requests(&model, None);
    for r in &mut reqs {
        r.steps = model.info().default_steps;
    }
    check("easel-emoji (defaults)", &model, &reqs);
}

/// Peak resident memory of one VAE decode of `images` latents of
/// `side × side` on the tiny SD 1 fixture, against the largest feature
/// map: how many maps are alive at once (`vae::LIVE_MAPS` assumes 4).
/// Prints; run alone, since other tests' threads share the process peak:
/// `cargo test --release -p easel-engine --lib decode_memory -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, prints only"]
fn decode_memory_against_the_largest_feature_map() {
    fn kib(field: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
    let model = load(&fixture("tiny-sd1"));
    let vae = model.vae.as_ref().unwrap();
    let side = 256;
    for images in [1, 2, 4] {
        let z = Tensor::zeros(
            (images, 4, side, side),
            candle_core::DType::F32,
            model.device(),
        )
        .unwrap();
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let before = kib("VmRSS:");
        let out = vae.decode(&z).unwrap();
        let peak = kib("VmHWM:");
        drop(out);
        // The largest map: 16 channels at twice the latent side.
        let map_kib = (16 * (2 * side) * (2 * side) * 4 / 1024) as u64;
        eprintln!(
            "decode of {images} × {side}²: peak {} MiB above the start, {:.1} maps of {} MiB an image; \
             {} images per call under the budget",
            (peak - before) / 1024,
            (peak - before) as f64 / (map_kib * images as u64) as f64,
            map_kib / 1024,
            vae.decode_images_per_call(side, side),
        );
    }
}

/// Images per second of the bundled model at its defaults, one call per
/// image against calls of 4 images (the same 4 requests). Prints; the
/// figures are indicative on a shared machine:
/// `cargo test --release -p easel-engine --lib batch_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, prints only"]
fn batch_throughput_on_the_bundled_model() {
    let dir = bundled();
    if !dir.join("model_index.json").exists() {
        eprintln!("skipped: {} is absent", dir.display());
        return;
    }
    let model = load(&dir);
    let mut reqs = requests(&model, None);
    reqs.push(ImageRequest {
        seed: 200,
        ..reqs[0].clone()
    });
    for r in &mut reqs {
        r.steps = model.info().default_steps;
    }
    let rounds = 5;
    pixels(&model, &reqs); // warm-up
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        for r in &reqs {
            pixels(&model, std::slice::from_ref(r));
        }
    }
    let one = (rounds * reqs.len()) as f64 / start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        pixels(&model, &reqs);
    }
    let four = (rounds * reqs.len()) as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "easel-emoji, {} steps: batch 1 {one:.2} img/s, batch 4 {four:.2} img/s ({:.2}×)",
        model.info().default_steps,
        four / one
    );
}
