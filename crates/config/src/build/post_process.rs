//! The post-processing stages every image goes through after the engine
//! (watermark, image moderation, near-copy check, quality score, C2PA),
//! from `[moderation]`, `[provenance]` and `[quality]`. A worker and
//! `easel generate` build the same stages, so a file made without a server
//! carries the same provenance.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use easel_jobs::{ImageModeration, Memorization, PostProcess, QualityScoring};
use easel_media::C2paSigner;
use easel_policy::image::NsfwClassifier;

use super::cache::{CLASSIFIERS, SCORERS, cached};
use crate::Config;

/// The post-processing stages of `config`. `data_dir` holds the generated
/// signing chain and server tag.
pub fn post_process(config: &Config) -> anyhow::Result<PostProcess> {
    let m = &config.moderation;
    let p = &config.provenance;
    let moderation = match &m.image_model {
        // The shipped default is a path relative to the repository root:
        // started elsewhere, the server runs without image moderation and
        // says so, rather than refusing to start. A path the operator
        // configured must exist.
        Some(path)
            if !path.exists()
                && path.as_path() == Path::new(easel_policy::image::DEFAULT_NSFW_MODEL) =>
        {
            tracing::warn!(
                path = %path.display(),
                "image moderation is OFF: the shipped open_nsfw model was not found relative to \
                 the working directory; run from the repository root or set moderation.image_model"
            );
            None
        }
        Some(path) => Some(ImageModeration {
            classifier: cached(&CLASSIFIERS, path, |path| {
                NsfwClassifier::load(path).map(Arc::new).with_context(|| {
                    format!(
                        "loading moderation.image_model {} (unset it to turn image moderation off)",
                        path.display()
                    )
                })
            })?,
            thresholds: m.image,
            low: m.image_low,
        }),
        None => None,
    };
    let signer = if p.c2pa {
        let configured = p.certificate.as_deref().zip(p.private_key.as_deref());
        let signer = C2paSigner::load_or_generate(&config.data_dir.join("c2pa"), configured)
            .context("loading the C2PA signing certificate")?;
        Some(Arc::new(signer))
    } else {
        None
    };
    let watermark = if p.watermark {
        Some(match p.server_tag {
            Some(tag) => tag,
            None => load_or_create_server_tag(&config.data_dir)?,
        })
    } else {
        None
    };
    let quality = match (&config.quality.enabled, &config.quality.scorer) {
        (false, _) => None,
        (true, None) => Some(QualityScoring::per_model(easel_engine::DeviceChoice::Cpu)),
        (true, Some(dir)) => {
            let scorer = cached(&SCORERS, dir, |dir| {
                easel_engine::score::load_scorer(dir, easel_engine::DeviceChoice::Cpu)
                    .map(Arc::from)
                    .with_context(|| {
                        format!(
                            "loading quality.scorer {} (unset it to use each model's own scorer/)",
                            dir.display()
                        )
                    })
            })?;
            Some(QualityScoring::with_scorer(scorer))
        }
    };
    Ok(PostProcess {
        watermark,
        moderation,
        memorization: m.near_copy_max_distance.map(Memorization::new),
        quality,
        signer,
        omit_prompt: !p.include_prompt,
    })
}

/// The server's watermark tag from `<data_dir>/server-tag`, generated at
/// random on first use.
fn load_or_create_server_tag(data_dir: &Path) -> anyhow::Result<u16> {
    let path = data_dir.join("server-tag");
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().with_context(|| {
            format!(
                "{} must hold a number from 0 to 65535 (the watermark's server tag)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let tag: u16 = rand::random();
            std::fs::write(&path, format!("{tag}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(tag)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
