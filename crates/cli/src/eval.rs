//! `easel eval --model <folder>`: the bundled model's quality report (issue 7).
//!
//! Generates one image per prompt of a fixed list (`<model>/eval/prompts.txt`:
//! training names and paraphrases, format in that file) with fixed seeds
//! (1000 + the prompt's position) at the model's default settings, then:
//! - scores every image against every training name of the list with the
//!   model's scorer (`<model>/scorer`, see `easel_engine::score`) and reports
//!   top-1 and top-5 retrieval accuracy — an image counts as retrieved at k
//!   when one of its correct names (its own name; a paraphrase's listed
//!   names) has fewer than k wrong names scoring above it — separately for
//!   names and paraphrases, with the mean score of each image against its
//!   own prompt;
//! - hashes every image and flags near-copies of training images (pHash
//!   within `NEAR_COPY_BITS` bits of `<model>/index/phash.json`);
//! - times every generation call (wall clock, seconds per image).
//!
//! Writes `report.json` and `contact-sheet.png` into `--output`.

mod sheet;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Args;
use easel_core::{OutputFormat, RgbImage, ScheduleKind};
use easel_engine::score::phash::NEAR_COPY_BITS;
use easel_engine::score::{PhashIndex, cosine, load_scorer, phash};
use easel_engine::{CancelToken, ImageRequest, LoadOptions, Model};
use serde_json::json;

/// Seed of the prompt at position `i`.
const SEED_BASE: u64 = 1000;

/// Flags of `easel eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    // A diffusers model folder with `scorer/` and `eval/prompts.txt`
    // (e.g. models/easel-emoji), or a configured model's name.
    #[command(flatten)]
    model: crate::commands::ModelArg,
    /// The prompt list (default: MODEL_DIR/eval/prompts.txt).
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// The scorer folder (default: MODEL_DIR/scorer); a Hugging Face CLIP
    /// folder works too.
    #[arg(long)]
    scorer: Option<PathBuf>,
    /// The training-set pHash index (default: MODEL_DIR/index/phash.json;
    /// near-copies are not checked when it is absent).
    #[arg(long)]
    index: Option<PathBuf>,
    /// Folder where report.json and contact-sheet.png go.
    #[arg(
        short,
        long,
        alias = "out",
        value_name = "DIR",
        default_value = "easel-eval"
    )]
    output: PathBuf,
    /// Evaluate only the first N prompts (all names stay candidates).
    #[arg(long)]
    limit: Option<usize>,
    /// Images per generation call (same settings, one seed each).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[command(flatten)]
    engine: crate::commands::EngineFlags,
    /// Sampling steps (default: the model's, from its `easel.json`).
    #[arg(long)]
    steps: Option<u32>,
    /// Classifier-free guidance scale (default: the model's).
    #[arg(long)]
    guidance: Option<f32>,
    /// Print the report as JSON on stdout instead of the summary (the
    /// files are written either way).
    #[arg(long)]
    json: bool,
}

/// Whether a prompt is a training name or a paraphrase of some.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PromptKind {
    Name,
    Paraphrase,
}

impl PromptKind {
    fn as_str(self) -> &'static str {
        match self {
            PromptKind::Name => "name",
            PromptKind::Paraphrase => "paraphrase",
        }
    }
}

/// One line of the prompt list.
#[derive(Debug, Clone)]
struct EvalPrompt {
    prompt: String,
    kind: PromptKind,
    /// The names that count as correct (a name: itself).
    targets: Vec<String>,
}

/// Parses the prompt list: `NAME` or `PROMPT = NAME | NAME ...`; `#`
/// comments and blank lines skipped. Every paraphrase target must be a name
/// of the list.
fn parse_prompts(text: &str, path: &Path) -> anyhow::Result<Vec<EvalPrompt>> {
    let mut prompts = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let p = match line.split_once('=') {
            None => EvalPrompt {
                prompt: line.to_string(),
                kind: PromptKind::Name,
                targets: vec![line.to_string()],
            },
            Some((prompt, targets)) => EvalPrompt {
                prompt: prompt.trim().to_string(),
                kind: PromptKind::Paraphrase,
                targets: targets
                    .split('|')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect(),
            },
        };
        if p.prompt.is_empty() || p.targets.is_empty() {
            bail!("{}:{}: empty prompt or target list", path.display(), no + 1);
        }
        prompts.push(p);
    }
    let names: Vec<&str> = prompts
        .iter()
        .filter(|p| p.kind == PromptKind::Name)
        .map(|p| p.prompt.as_str())
        .collect();
    for p in &prompts {
        if let Some(t) = p.targets.iter().find(|t| !names.contains(&t.as_str())) {
            bail!(
                "{}: paraphrase `{}` names `{t}`, which is not a name of the list",
                path.display(),
                p.prompt
            );
        }
    }
    if names.is_empty() {
        bail!("{}: no names to rank against", path.display());
    }
    Ok(prompts)
}

/// What one image got.
struct Outcome {
    score: f32,
    rank: usize,
    top5: Vec<String>,
    nearest: Option<(String, u32, bool)>,
    seconds: f64,
}

/// Runs `easel eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let device = args.engine.apply()?;
    let (_, model_dir) = args.model.resolve()?;
    let dir = &model_dir;
    let prompts_path = args
        .prompts
        .clone()
        .unwrap_or_else(|| dir.join("eval/prompts.txt"));
    let text = std::fs::read_to_string(&prompts_path)
        .with_context(|| format!("reading the prompt list {}", prompts_path.display()))?;
    let all = parse_prompts(&text, &prompts_path)?;
    let names: Vec<String> = all
        .iter()
        .filter(|p| p.kind == PromptKind::Name)
        .map(|p| p.prompt.clone())
        .collect();
    let prompts: Vec<EvalPrompt> = all
        .iter()
        .take(args.limit.unwrap_or(usize::MAX))
        .cloned()
        .collect();
    if prompts.is_empty() {
        bail!("--limit 0 leaves nothing to evaluate");
    }

    let started = Instant::now();
    let loading = crate::progress::spinner(format!("loading {}", dir.display()));
    let load = LoadOptions {
        device,
        precision: args.engine.precision.unwrap_or_default(),
        ..LoadOptions::default()
    };
    let model = Model::load(dir, &load)
        .map_err(|e| anyhow::anyhow!("loading {}: {e} ({})", dir.display(), e.code()))?;
    loading.finish_and_clear();
    let load_s = started.elapsed().as_secs_f64();
    let info = model.info().clone();
    let steps = args.steps.unwrap_or(info.default_steps);
    let guidance = args.guidance.unwrap_or(info.default_guidance);
    let scorer_dir = args.scorer.clone().unwrap_or_else(|| dir.join("scorer"));
    let scorer = load_scorer(&scorer_dir, device).map_err(|e| {
        anyhow::anyhow!(
            "loading the scorer {}: {e} ({})",
            scorer_dir.display(),
            e.code()
        )
    })?;
    let index_path = args
        .index
        .clone()
        .unwrap_or_else(|| dir.join("index/phash.json"));
    let index = if index_path.is_file() {
        Some(PhashIndex::load(&index_path).map_err(|e| anyhow::anyhow!("{e}"))?)
    } else {
        eprintln!(
            "easel eval: no index at {}; near-copies not checked",
            index_path.display()
        );
        None
    };
    let threads = easel_engine::candle_core::utils::get_num_threads();
    eprintln!(
        "easel eval: {} ({}), {} prompts, {} {} steps, guidance {}, {}x{}, {threads} threads",
        info.name,
        info.content_hash,
        prompts.len(),
        info.default_sampler,
        steps,
        guidance,
        info.default_size.width,
        info.default_size.height,
    );

    // Generate, timing each call.
    let mut images: Vec<RgbImage> = Vec::with_capacity(prompts.len());
    let mut seconds = Vec::with_capacity(prompts.len());
    let cancel = CancelToken::new();
    let batch = args.batch.max(1);
    let bar = crate::progress::bar(prompts.len() as u64, "images", "generating");
    for (chunk_no, chunk) in prompts.chunks(batch).enumerate() {
        let requests: Vec<ImageRequest> = chunk
            .iter()
            .enumerate()
            .map(|(j, p)| ImageRequest {
                prompt: p.prompt.clone(),
                negative_prompt: String::new(),
                size: info.default_size,
                steps,
                guidance_scale: guidance,
                seed: SEED_BASE + (chunk_no * batch + j) as u64,
                sampler: None,
                schedule: ScheduleKind::Default,
                init_image: None,
                mask: None,
                clip_skip: None,
            })
            .collect();
        let t = Instant::now();
        let out = model
            .generate(&requests, &mut (), &cancel)
            .map_err(|e| anyhow::anyhow!("generating `{}`: {e}", chunk[0].prompt))?;
        let per_image = t.elapsed().as_secs_f64() / chunk.len() as f64;
        for g in out {
            images.push(g.image);
            seconds.push(per_image);
        }
        bar.set_position(images.len() as u64);
    }
    bar.finish_and_clear();
    drop(model);

    // Score against every name; hash against the index.
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let name_emb = scorer.embed_texts(&name_refs)?;
    let own: Vec<&str> = prompts.iter().map(|p| p.prompt.as_str()).collect();
    let own_emb = scorer.embed_texts(&own)?;
    let img_emb = scorer.embed_images(&images)?;
    let mut outcomes = Vec::with_capacity(prompts.len());
    for (i, p) in prompts.iter().enumerate() {
        let scores: Vec<f32> = name_emb.iter().map(|t| cosine(&img_emb[i], t)).collect();
        let is_target = |k: usize| p.targets.contains(&names[k]);
        let best = (0..names.len())
            .filter(|&k| is_target(k))
            .map(|k| scores[k])
            .fold(f32::NEG_INFINITY, f32::max);
        let rank = (0..names.len())
            .filter(|&k| !is_target(k) && scores[k] > best)
            .count();
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let nearest = index.as_ref().and_then(|ix| {
            ix.nearest(phash(&images[i]))
                .map(|m| (ix.entries[m.index].caption.clone(), m.distance, m.near_copy))
        });
        outcomes.push(Outcome {
            score: cosine(&img_emb[i], &own_emb[i]),
            rank,
            top5: order.iter().take(5).map(|&k| names[k].clone()).collect(),
            nearest,
            seconds: seconds[i],
        });
    }

    let summary = |kind: Option<PromptKind>| {
        let sel: Vec<&Outcome> = prompts
            .iter()
            .zip(&outcomes)
            .filter(|(p, _)| kind.is_none_or(|k| p.kind == k))
            .map(|(_, o)| o)
            .collect();
        let n = sel.len();
        let frac = |f: &dyn Fn(&Outcome) -> bool| {
            if n == 0 {
                None
            } else {
                Some(sel.iter().filter(|o| f(o)).count() as f64 / n as f64)
            }
        };
        let mean = (n > 0).then(|| sel.iter().map(|o| o.score as f64).sum::<f64>() / n as f64);
        json!({
            "n": n,
            "top1": frac(&|o| o.rank < 1),
            "top5": frac(&|o| o.rank < 5),
            "mean_score": mean,
        })
    };
    let flagged = outcomes
        .iter()
        .filter(|o| o.nearest.as_ref().is_some_and(|n| n.2))
        .count();
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    let mean_s = seconds.iter().sum::<f64>() / seconds.len() as f64;
    let report = json!({
        "model": info.name,
        "content_hash": info.content_hash,
        "model_dir": dir,
        "prompts_file": prompts_path,
        "scorer": scorer_dir,
        "scorer_kind": scorer.kind(),
        "settings": {
            "sampler": info.default_sampler.to_string(),
            "steps": steps,
            "guidance": guidance,
            "width": info.default_size.width,
            "height": info.default_size.height,
            "seeds": format!("{SEED_BASE} + prompt position"),
            "batch": batch,
            "threads": threads,
        },
        "candidates": names.len(),
        "names": summary(Some(PromptKind::Name)),
        "paraphrases": summary(Some(PromptKind::Paraphrase)),
        "all": summary(None),
        "near_copies": {
            "checked": index.is_some(),
            "threshold_bits": NEAR_COPY_BITS,
            "count": flagged,
            "fraction": index.as_ref().map(|_| flagged as f64 / prompts.len() as f64),
        },
        "seconds_per_image": {"mean": mean_s, "median": median, "min": sorted[0], "max": sorted[sorted.len() - 1]},
        "load_seconds": load_s,
        "images": prompts.iter().zip(&outcomes).enumerate().map(|(i, (p, o))| json!({
            "prompt": p.prompt,
            "kind": p.kind.as_str(),
            "seed": SEED_BASE + i as u64,
            "targets": p.targets,
            "score": o.score,
            "rank": o.rank,
            "top5": o.top5,
            "nearest_training_image": o.nearest.as_ref().map(|n| json!({"caption": n.0, "distance": n.1, "near_copy": n.2})),
            "seconds": o.seconds,
        })).collect::<Vec<_>>(),
    });

    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let report_path = args.output.join("report.json");
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", report_path.display()))?;
    let tiles: Vec<sheet::Tile> = prompts
        .iter()
        .zip(&outcomes)
        .zip(&images)
        .map(|((p, o), image)| sheet::Tile {
            image,
            caption: &p.prompt,
            hit: o.rank < 5,
        })
        .collect();
    let png = easel_media::encode(
        &sheet::contact_sheet(&tiles, &sheet::SheetLayout::default()),
        OutputFormat::Png,
        None,
        &easel_media::Metadata::none(),
    )?;
    let sheet_path = args.output.join("contact-sheet.png");
    std::fs::write(&sheet_path, png)
        .with_context(|| format!("writing {}", sheet_path.display()))?;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print_summary(&report);
    println!(
        "wrote {} and {}",
        report_path.display(),
        sheet_path.display()
    );
    Ok(())
}

fn print_summary(r: &serde_json::Value) {
    let pct = |v: &serde_json::Value| {
        v.as_f64()
            .map_or("-".to_string(), |f| format!("{:.1}%", 100.0 * f))
    };
    let num = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |f| format!("{f:.3}"));
    let s = &r["settings"];
    println!(
        "{} ({}): {} {} steps, guidance {}, {}x{}, seeds {}",
        r["model"].as_str().unwrap_or(""),
        r["content_hash"].as_str().unwrap_or(""),
        s["sampler"].as_str().unwrap_or(""),
        s["steps"],
        s["guidance"],
        s["width"],
        s["height"],
        s["seeds"].as_str().unwrap_or(""),
    );
    println!(
        "ranked against {} names; scorer {}",
        r["candidates"],
        r["scorer_kind"].as_str().unwrap_or("")
    );
    println!(
        "{:<12} {:>4} {:>7} {:>7} {:>11}",
        "", "n", "top-1", "top-5", "mean score"
    );
    for key in ["names", "paraphrases", "all"] {
        let v = &r[key];
        println!(
            "{key:<12} {:>4} {:>7} {:>7} {:>11}",
            v["n"],
            pct(&v["top1"]),
            pct(&v["top5"]),
            num(&v["mean_score"])
        );
    }
    let nc = &r["near_copies"];
    if nc["checked"].as_bool() == Some(true) {
        println!(
            "near-copies (pHash within {} bits of a training image): {} ({})",
            nc["threshold_bits"],
            nc["count"],
            pct(&nc["fraction"])
        );
    }
    let t = &r["seconds_per_image"];
    println!(
        "seconds per image: mean {}, median {}, min {}, max {} ({} threads, batch {}); load {} s",
        num(&t["mean"]),
        num(&t["median"]),
        num(&t["min"]),
        num(&t["max"]),
        s["threads"],
        s["batch"],
        num(&r["load_seconds"]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_list_parses_names_and_paraphrases_with_targets() {
        let text = "# c\nred apple\ntaco\n\na tasty taco = taco\nfruit = red apple | taco\n";
        let p = parse_prompts(text, Path::new("p.txt")).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].kind, PromptKind::Name);
        assert_eq!(p[0].targets, vec!["red apple"]);
        assert_eq!(p[2].kind, PromptKind::Paraphrase);
        assert_eq!(p[2].prompt, "a tasty taco");
        assert_eq!(p[3].targets, vec!["red apple", "taco"]);
    }

    #[test]
    fn a_paraphrase_naming_an_unlisted_caption_is_an_error() {
        let err = parse_prompts("taco\nfood = pizza\n", Path::new("p.txt")).unwrap_err();
        assert!(err.to_string().contains("`pizza`"), "{err}");
    }

    #[test]
    fn the_committed_prompt_list_has_100_names_and_20_paraphrases() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/easel-emoji/eval/prompts.txt");
        let p = parse_prompts(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        let names = p.iter().filter(|p| p.kind == PromptKind::Name).count();
        assert_eq!((names, p.len() - names), (100, 20));
    }
}
