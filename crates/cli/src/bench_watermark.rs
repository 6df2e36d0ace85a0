//! `easel bench watermark`: the watermark measured on what users get.
//!
//! It starts the server in this process on the bundled model (or
//! `--model`) twice: once with the watermark off, for the pictures as they
//! are before marking, and once as configured by default, for the images
//! exactly as `POST /v1/images/generations` delivers them; and it marks
//! the natural pictures of `--natural` (at 256 and 512 pixels) through the
//! library. Then every transformation of `easel_media::attacks` is
//! applied to every marked image and the mark read back; unmarked images
//! (the unmarked outputs and pictures, seeded noise, flat colours and
//! gradients, each as is and after JPEG 80) count false positives. It
//! prints the detection rate with the right id per transformation and set,
//! wrong ids, false positives, PSNR/SSIM and embed/detect times.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Args;
use easel_config::{Config, ModelEntry};
use easel_core::RgbImage;
use easel_media::{DecodeLimits, WatermarkPayload, detect_watermark, embed_watermark};
use serde::Serialize;
use serde_json::json;

use easel_media::attacks::{self, jpeg, psnr, ssim};

/// Prompts the generations cycle through.
const PROMPTS: &[&str] = &[
    "a red apple",
    "a smiling face",
    "a yellow star",
    "a green tree",
    "a blue car",
    "a cat face",
    "a slice of pizza",
    "a rocket",
    "a red heart",
    "a sun with sunglasses",
    "a dog face",
    "a birthday cake",
    "a soccer ball",
    "a house",
    "a flower",
    "a ghost",
    "a rainbow",
    "a fish",
    "a frog face",
    "a taco",
];

/// Flags of `easel bench watermark`.
#[derive(Debug, Args)]
pub struct WatermarkArgs {
    /// Generated outputs to mark and attack.
    #[arg(long, default_value_t = 30)]
    images: usize,
    /// Unmarked images for the false-positive count (each read as is and
    /// after JPEG 80).
    #[arg(long, default_value_t = 200)]
    unmarked: usize,
    /// Model folder or configured model name (default: the bundled model).
    #[arg(long, value_name = "FOLDER|NAME")]
    model: Option<PathBuf>,
    /// Folder of natural pictures (PNG or JPEG) marked at 256 and 512 px.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../media/tests/fixtures/natural"))]
    natural: PathBuf,
    /// Only these transformations (comma-separated names; default: all).
    #[arg(long, value_delimiter = ',')]
    attacks: Vec<String>,
    /// Seed of the crop positions and the synthetic unmarked images.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    output: Option<PathBuf>,
}

/// One set of marked images and their unmarked originals.
struct Set {
    name: String,
    originals: Vec<RgbImage>,
    marked: Vec<RgbImage>,
    ids: Vec<WatermarkPayload>,
}

/// One transformation on one set.
#[derive(Debug, Serialize)]
pub struct Cell {
    attack: String,
    set: String,
    images: usize,
    detected: usize,
    wrong: usize,
    /// Mean detect time, ms.
    detect_ms: f64,
}

/// What a set's marking cost.
#[derive(Debug, Serialize)]
pub struct Quality {
    set: String,
    images: usize,
    psnr_min: f64,
    psnr_mean: f64,
    ssim_min: f64,
    ssim_mean: f64,
    /// Mean embed time, ms (None: embedded by the server).
    embed_ms: Option<f64>,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    cells: Vec<Cell>,
    quality: Vec<Quality>,
    unmarked: usize,
    false_positives: Vec<FalsePositive>,
    /// Mean detect time on unmarked images (the search runs to the end), ms.
    unmarked_detect_ms: f64,
}

/// An unmarked image read as marked.
#[derive(Debug, Serialize)]
struct FalsePositive {
    /// Its place in the unmarked pool (the outputs, the natural pictures,
    /// then the synthetic ones, drawn from `--seed`).
    index: usize,
    /// `output`, `natural`, `noise`, `flat` or `gradient`.
    kind: &'static str,
    /// Whether it was the JPEG 80 copy.
    jpeg80: bool,
    /// Which mark was read (`easelmark-v1` or `dwtDctSvd`).
    method: &'static str,
    /// The tags read.
    server: u16,
    image: u32,
    confidence: f32,
}

/// Runs `easel bench watermark`.
pub fn run(args: WatermarkArgs) -> anyhow::Result<()> {
    let chosen: Vec<attacks::Attack> = attacks::all()
        .into_iter()
        .filter(|a| args.attacks.is_empty() || args.attacks.iter().any(|n| n == a.name))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = attacks::all().iter().map(|a| a.name).collect();
        bail!("--attacks names none of: {}", names.join(", "));
    }
    let (name, model_dir) = crate::commands::model_folder(None, args.model.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    eprintln!("generating {} outputs, unmarked then marked…", args.images);
    let unmarked = runtime.block_on(outputs(&name, &model_dir, false, args.images))?;
    let delivered = runtime.block_on(outputs(&name, &model_dir, true, args.images))?;
    drop(runtime);
    let originals: Vec<RgbImage> = unmarked
        .iter()
        .map(|(image, _)| {
            easel_media::upscale_for_watermark(image).unwrap_or_else(|| image.clone())
        })
        .collect();
    let mut sets = vec![Set {
        name: "outputs".into(),
        ids: delivered.iter().map(|(_, id)| *id).collect(),
        marked: delivered.into_iter().map(|(image, _)| image).collect(),
        originals: originals.clone(),
    }];
    let natural = natural_pictures(&args.natural)?;
    let mut quality = Vec::new();
    for side in [256u32, 512] {
        let mut set = Set {
            name: format!("natural{side}"),
            originals: Vec::new(),
            marked: Vec::new(),
            ids: Vec::new(),
        };
        let mut spent = Duration::ZERO;
        for (i, picture) in natural.iter().enumerate() {
            let original = square(picture, side)?;
            let id = WatermarkPayload {
                server: 0xbe00 | side as u16 >> 8,
                image: 0x5eed_0000 | i as u32,
            };
            let start = Instant::now();
            let marked = embed_watermark(&original, id)?;
            spent += start.elapsed();
            set.originals.push(original);
            set.marked.push(marked);
            set.ids.push(id);
        }
        if !set.marked.is_empty() {
            let mut q = quality_of(&set);
            q.embed_ms = Some(spent.as_secs_f64() * 1e3 / set.marked.len() as f64);
            quality.push(q);
            sets.push(set);
        }
    }
    quality.insert(0, quality_of(&sets[0]));

    let mut cells = Vec::new();
    for attack in &chosen {
        for set in &sets {
            let mut rng = args.seed;
            let (mut detected, mut wrong, mut spent) = (0, 0, Duration::ZERO);
            for (marked, id) in set.marked.iter().zip(&set.ids) {
                let attacked = (attack.apply)(marked, &mut rng);
                let start = Instant::now();
                let reading = detect_watermark(&attacked);
                spent += start.elapsed();
                match reading {
                    Some(r) if r.payload == *id => detected += 1,
                    Some(_) => wrong += 1,
                    None => {}
                }
            }
            let cell = Cell {
                attack: attack.name.into(),
                set: set.name.clone(),
                images: set.marked.len(),
                detected,
                wrong,
                detect_ms: spent.as_secs_f64() * 1e3 / set.marked.len().max(1) as f64,
            };
            eprintln!(
                "{:<22} {:<11} {:>3}/{:<3} wrong {}",
                cell.attack, cell.set, cell.detected, cell.images, cell.wrong
            );
            cells.push(cell);
        }
    }

    let pool = unmarked_pool(&originals, &sets, args.unmarked, args.seed);
    // Every core reads a share of the pool (the reads are independent).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = pool.len().div_ceil(threads).max(1);
    let (false_positives, reads, spent) = std::thread::scope(|scope| {
        let shares: Vec<_> = pool
            .chunks(chunk)
            .enumerate()
            .map(|(part, share)| {
                scope.spawn(move || {
                    let (mut fp, mut reads, mut spent) = (Vec::new(), 0usize, Duration::ZERO);
                    for (i, (image, kind)) in share.iter().enumerate() {
                        for (jpeg80, candidate) in [(false, image.clone()), (true, jpeg(image, 80))]
                        {
                            let start = Instant::now();
                            if let Some(r) = detect_watermark(&candidate) {
                                fp.push(FalsePositive {
                                    index: part * chunk + i,
                                    kind,
                                    jpeg80,
                                    method: r.method.as_str(),
                                    server: r.payload.server,
                                    image: r.payload.image,
                                    confidence: r.confidence,
                                });
                            }
                            spent += start.elapsed();
                            reads += 1;
                        }
                    }
                    (fp, reads, spent)
                })
            })
            .collect();
        shares
            .into_iter()
            .map(|h| h.join().expect("a reader thread"))
            .fold((Vec::new(), 0, Duration::ZERO), |mut a, b| {
                a.0.extend(b.0);
                (a.0, a.1 + b.1, a.2 + b.2)
            })
    });
    let report = Report {
        cells,
        quality,
        unmarked: reads,
        false_positives,
        unmarked_detect_ms: spent.as_secs_f64() * 1e3 / reads.max(1) as f64,
    };
    crate::commands::write_report(
        &report,
        &table(&report, &sets),
        args.json.then_some(&None),
        args.output.as_deref(),
    )
}

/// `n` outputs of the server started here with the watermark on or off,
/// as delivered (decoded), with the payload each was marked with.
async fn outputs(
    name: &str,
    model_dir: &Path,
    watermark: bool,
    n: usize,
) -> anyhow::Result<Vec<(RgbImage, WatermarkPayload)>> {
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
    config.provenance.watermark = watermark;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app = easel_server::Application::build(config, listener).await?;
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    crate::bench_serve::wait_ready(&client, &base, None).await?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let body = json!({
            "prompt": PROMPTS[i % PROMPTS.len()], "seed": 1000 + i,
            "response_format": "b64_json",
        });
        let answer: serde_json::Value = client
            .post(format!("{base}/v1/images/generations"))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let b64 = answer["data"][0]["b64_json"]
            .as_str()
            .context("no b64_json")?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64)?;
        let image = easel_media::decode_untrusted(&bytes, &DecodeLimits::default())?;
        let id = answer["data"][0]["id"].as_str().context("no image id")?;
        let record: serde_json::Value = client
            .get(format!("{base}/v1/images/{id}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let payload = record["watermark_id"]
            .as_str()
            .and_then(WatermarkPayload::parse_id)
            .unwrap_or(WatermarkPayload {
                server: 0,
                image: 0,
            });
        out.push((image, payload));
    }
    let _ = stop.send(());
    let _ = task.await;
    Ok(out)
}

/// The PNG and JPEG pictures of `folder`, in name order.
fn natural_pictures(folder: &Path) -> anyhow::Result<Vec<RgbImage>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| matches!(e.to_str(), Some("png" | "jpg" | "jpeg")))
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p)?;
            easel_media::decode_untrusted(&bytes, &DecodeLimits::default())
                .with_context(|| format!("decoding {}", p.display()))
        })
        .collect()
}

/// The central square of `picture`, resized to `side`.
fn square(picture: &RgbImage, side: u32) -> anyhow::Result<RgbImage> {
    let s = picture.width.min(picture.height);
    let cropped = attacks::crop(
        picture,
        (picture.width - s) / 2,
        (picture.height - s) / 2,
        s,
        s,
    );
    Ok(easel_media::resize(&cropped, side, side)?)
}

fn quality_of(set: &Set) -> Quality {
    let psnrs: Vec<f64> = set
        .originals
        .iter()
        .zip(&set.marked)
        .map(|(a, b)| psnr(a, b))
        .collect();
    let ssims: Vec<f64> = set
        .originals
        .iter()
        .zip(&set.marked)
        .map(|(a, b)| ssim(a, b))
        .collect();
    let n = psnrs.len().max(1) as f64;
    Quality {
        set: set.name.clone(),
        images: psnrs.len(),
        psnr_min: psnrs.iter().copied().fold(f64::INFINITY, f64::min),
        psnr_mean: psnrs.iter().sum::<f64>() / n,
        ssim_min: ssims.iter().copied().fold(f64::INFINITY, f64::min),
        ssim_mean: ssims.iter().sum::<f64>() / n,
        embed_ms: None,
    }
}

/// `n` unmarked images: the unmarked outputs and natural pictures, then
/// seeded noise, flat colours and gradients at 256 px.
fn unmarked_pool(
    outputs: &[RgbImage],
    sets: &[Set],
    n: usize,
    seed: u64,
) -> Vec<(RgbImage, &'static str)> {
    let mut pool: Vec<(RgbImage, &'static str)> =
        outputs.iter().map(|o| (o.clone(), "output")).collect();
    for set in &sets[1..] {
        pool.extend(set.originals.iter().map(|o| (o.clone(), "natural")));
    }
    let mut rng = seed ^ 0x5eed;
    let mut k = 0usize;
    while pool.len() < n {
        pool.push(attacks::synthetic(&mut rng, k));
        k += 1;
    }
    pool.truncate(n.max(outputs.len()));
    pool
}

fn table(report: &Report, sets: &[Set]) -> String {
    let mut out =
        String::from("detected with the right id (wrong ids), per transformation and set:\n\n");
    out.push_str("| transformation |");
    for set in sets {
        out.push_str(&format!(" {} |", set.name));
    }
    out.push_str(" all |\n|---|");
    for _ in sets {
        out.push_str("---|");
    }
    out.push_str("---|\n");
    let mut names: Vec<&str> = Vec::new();
    for c in &report.cells {
        if !names.contains(&c.attack.as_str()) {
            names.push(&c.attack);
        }
    }
    for name in names {
        out.push_str(&format!("| {name} |"));
        let (mut d, mut n) = (0, 0);
        for c in report.cells.iter().filter(|c| c.attack == name) {
            let wrong = if c.wrong > 0 {
                format!(" ({} wrong)", c.wrong)
            } else {
                String::new()
            };
            out.push_str(&format!(" {}/{}{wrong} |", c.detected, c.images));
            d += c.detected;
            n += c.images;
        }
        out.push_str(&format!(" {:.1} % |\n", 100.0 * d as f64 / n.max(1) as f64));
    }
    out.push_str("\n| set | images | PSNR min / mean (dB) | SSIM min / mean | embed ms |\n|---|---|---|---|---|\n");
    for q in &report.quality {
        out.push_str(&format!(
            "| {} | {} | {:.2} / {:.2} | {:.4} / {:.4} | {} |\n",
            q.set,
            q.images,
            q.psnr_min,
            q.psnr_mean,
            q.ssim_min,
            q.ssim_mean,
            q.embed_ms
                .map_or("(server)".into(), |ms| format!("{ms:.1}")),
        ));
    }
    let detect: Vec<String> = report
        .cells
        .iter()
        .filter(|c| c.attack == "none")
        .map(|c| format!("{} {:.1} ms", c.set, c.detect_ms))
        .collect();
    out.push_str(&format!(
        "\nfalse positives: {} of {} unmarked reads; detect: {}; unmarked {:.1} ms\n",
        report.false_positives.len(),
        report.unmarked,
        detect.join(", "),
        report.unmarked_detect_ms
    ));
    for fp in &report.false_positives {
        out.push_str(&format!(
            "  false positive: unmarked image {} ({}{}) read by {} as server {:#06x} image \
             {:#010x}, confidence {:.3}\n",
            fp.index,
            fp.kind,
            if fp.jpeg80 { ", JPEG 80" } else { "" },
            fp.method,
            fp.server,
            fp.image,
            fp.confidence
        ));
    }
    out
}
