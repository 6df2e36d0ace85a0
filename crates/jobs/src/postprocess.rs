//! Post-processing of every generated image, in one place and one order:
//!
//! 1. **upscale**, only when the image is smaller than the watermark needs
//!    ([`easel_media::WATERMARK_MIN_SIDE`]): nearest-neighbour by the
//!    smallest integer factor, so pixels stay sharp;
//! 2. **watermark**: the invisible easelmark carrying this server's tag and
//!    the image's tag (it survives re-encoding, resizing and cropping);
//! 3. **moderation**: the open_nsfw score of the marked image; above the
//!    block threshold the image is never encoded, stored or served;
//! 4. **memorization**: the pHash of the generated image against the
//!    model's training-set index (`<model>/index/phash.json`);
//! 5. **score**: how well the generated image shows its prompt (cosine in
//!    [-1, 1] from the model's own `scorer/` or a configured CLIP folder):
//!    the quality SLI, recorded, never a gate;
//! 6. **encode** to PNG, JPEG or WebP with the metadata (the A1111
//!    `parameters` chunk and Easel's JSON record, PNG only);
//! 7. **sign**: C2PA Content Credentials over the final bytes, last,
//!    because the manifest hashes them.
//!
//! Storing comes after, in [`crate::batch`]. Each stage's wall time is
//! recorded on the image.
//!
//! Every stage reads the image's [`GenerationRecord`]; the watermark stage
//! writes its id into it, and the metadata and the C2PA claim are derived
//! from it ([`crate::metadata`]).
//!
//! # Reproducibility
//! The image's watermark tag is a hash of a canonical encoding of
//! everything in the record that determines its pixels (the model's content
//! hash, the parameters, the seed and sampler; see
//! [`GenerationRecord::image_tag`]), not of its id, so the same model, parameters and seed still give the same
//! pixels, watermark included, on servers with the same watermark tag
//! (`provenance.server_tag`; each data folder generates its own unless it
//! is set). Two identical generations therefore carry
//! the same mark, which points at either record: they are the same
//! picture. The C2PA manifest, whose claim has its own id and time, makes
//! the *files* differ; compare decoded pixels, not file hashes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use easel_core::{ModerationLevel, OutputOptions, RgbImage};
use easel_engine::score::{PhashIndex, Scorer, phash};
use easel_media::{C2paSigner, MediaError, WatermarkPayload};
use easel_policy::image::{ImageDecision, ImageThresholds, NsfwClassifier, decide};
use easel_policy::{Action, PolicyError};
use sha2::Digest as _;

use crate::record::GenerationRecord;

/// The flag on an image whose moderation score reached the flag threshold.
pub const FLAG_NSFW: &str = "nsfw_flagged";
/// The flag on an image within the near-copy distance of a training image.
pub const FLAG_NEAR_COPY: &str = "near_copy";

/// What happens to each generated image after the engine. The default does
/// nothing but encode with metadata (prompt included): the server turns the
/// stages on from its configuration.
#[derive(Default)]
pub struct PostProcess {
    /// The invisible watermark, with this server's 16-bit tag; `None`: off.
    pub watermark: Option<u16>,
    /// Image moderation; `None`: off.
    pub moderation: Option<ImageModeration>,
    /// The near-copy check; `None`: off.
    pub memorization: Option<Memorization>,
    /// The quality score; `None`: off.
    pub quality: Option<QualityScoring>,
    /// C2PA signing; `None`: off.
    pub signer: Option<Arc<C2paSigner>>,
    /// Leave the prompt and negative prompt out of the file's metadata.
    pub omit_prompt: bool,
}

/// Image moderation settings.
pub struct ImageModeration {
    /// The classifier, shared.
    pub classifier: Arc<NsfwClassifier>,
    /// Flag and block thresholds.
    pub thresholds: ImageThresholds,
    /// The thresholds of jobs that asked for `moderation: low`; `None`:
    /// the server offers no such level (requests for it are refused at
    /// the edge, and a job that still carries it gets `thresholds`).
    pub low: Option<ImageThresholds>,
}

/// The near-copy check: a training-set index per model folder, read once.
pub struct Memorization {
    max_distance: u32,
    indexes: Mutex<HashMap<PathBuf, Option<Arc<PhashIndex>>>>,
}

impl Memorization {
    /// Flags outputs within `max_distance` bits (of 64) of a training image.
    pub fn new(max_distance: u32) -> Self {
        Self {
            max_distance,
            indexes: Mutex::new(HashMap::new()),
        }
    }

    /// The most bits an output may differ from a training image and still
    /// count as a near-copy.
    pub fn max_distance(&self) -> u32 {
        self.max_distance
    }

    /// The index of the model in `dir`, or `None` when it ships none.
    fn index_for(&self, dir: &Path) -> Option<Arc<PhashIndex>> {
        let mut indexes = self.indexes.lock().expect("index cache poisoned");
        indexes
            .entry(dir.to_path_buf())
            .or_insert_with(|| {
                let path = dir.join("index/phash.json");
                if !path.exists() {
                    tracing::info!(path = %path.display(), "no training-set index; near-copies not checked for this model");
                    return None;
                }
                match PhashIndex::load(&path) {
                    Ok(index) => Some(Arc::new(index)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "unreadable training-set index; near-copies not checked");
                        None
                    }
                }
            })
            .clone()
    }
}

/// Which scorer judges each model's images: one configured for every
/// model (a CLIP folder, say), or each model's own `scorer/` folder, loaded
/// once on first use. A model with neither is not scored.
pub struct QualityScoring {
    fixed: Option<Arc<dyn Scorer>>,
    device: easel_engine::DeviceChoice,
    per_model: Mutex<HashMap<PathBuf, Option<Arc<dyn Scorer>>>>,
}

impl QualityScoring {
    /// Scores every model's images with `scorer`.
    pub fn with_scorer(scorer: Arc<dyn Scorer>) -> Self {
        Self {
            fixed: Some(scorer),
            device: easel_engine::DeviceChoice::Cpu,
            per_model: Mutex::new(HashMap::new()),
        }
    }

    /// Scores each model's images with the scorer in its own `scorer/`
    /// folder, loaded on `device`.
    pub fn per_model(device: easel_engine::DeviceChoice) -> Self {
        Self {
            fixed: None,
            device,
            per_model: Mutex::new(HashMap::new()),
        }
    }

    /// The scorer for the model in `dir`, or `None` when there is none or
    /// it does not load (said once in the log).
    fn scorer_for(&self, dir: &Path) -> Option<Arc<dyn Scorer>> {
        if let Some(fixed) = &self.fixed {
            return Some(fixed.clone());
        }
        let mut cache = self.per_model.lock().expect("scorer cache poisoned");
        cache
            .entry(dir.to_path_buf())
            .or_insert_with(|| {
                let folder = dir.join("scorer");
                if !folder.join("config.json").exists() {
                    tracing::info!(model = %dir.display(), "the model ships no scorer/; its images are not scored");
                    return None;
                }
                match easel_engine::score::load_scorer(&folder, self.device) {
                    Ok(scorer) => Some(Arc::from(scorer)),
                    Err(e) => {
                        tracing::warn!(path = %folder.display(), error = %e, "the scorer did not load; images are not scored");
                        None
                    }
                }
            })
            .clone()
    }
}

/// One generated image and what made it.
pub struct ImageInput<'a> {
    /// The pixels as the engine made them.
    pub image: RgbImage,
    /// How they were made (not yet watermarked), built from the model
    /// that rendered them.
    pub record: GenerationRecord,
    /// The job's output format and compression.
    pub output: &'a OutputOptions,
    /// The rendering model's folder (its training-set index and scorer).
    pub model_dir: &'a Path,
}

/// A processed image, ready to store.
#[derive(Debug, Clone)]
pub struct Processed {
    /// The final file.
    pub bytes: Vec<u8>,
    /// Lower-case hex SHA-256 of `bytes`.
    pub sha256: String,
    /// Final width (after any upscale).
    pub width: u32,
    /// Final height.
    pub height: u32,
    /// The image's record, with its watermark id once marked.
    pub record: GenerationRecord,
    /// The generated image's pHash, 16 hex digits, when checked.
    pub perceptual_hash: Option<String>,
    /// Moderation and near-copy results, when any ran.
    pub moderation: Option<serde_json::Value>,
    /// Flags raised: [`FLAG_NSFW`], [`FLAG_NEAR_COPY`].
    pub flags: Vec<String>,
    /// How well the image shows its prompt (cosine in [-1, 1]), when scored.
    pub quality_score: Option<f32>,
    /// Seconds per stage, in order.
    pub stages: Vec<(&'static str, f64)>,
}

/// The result of post-processing one image.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Store it.
    Ready(Box<Processed>),
    /// Moderation blocked it: never store or serve it.
    Blocked(ImageDecision),
}

/// Why post-processing failed (not a moderation decision).
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// Watermarking, encoding or signing failed.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The moderation model failed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl PostError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            PostError::Media(e) => e.code(),
            PostError::Policy(e) => e.code(),
        }
    }
}

/// Times one stage into `stages`.
fn timed<T>(
    stages: &mut Vec<(&'static str, f64)>,
    stage: &'static str,
    f: impl FnOnce() -> T,
) -> T {
    // One span per stage (`post.<stage>` in a trace), under the job's
    // `postprocess` span.
    let _span =
        tracing::info_span!("post.stage", otel.name = %format!("post.{stage}"), stage).entered();
    let started = Instant::now();
    let out = f();
    stages.push((stage, started.elapsed().as_secs_f64()));
    out
}

impl PostProcess {
    /// Runs every enabled stage on one image, in the order of the module
    /// documentation. CPU-bound: call it on the engine thread.
    pub fn process(&self, input: ImageInput<'_>) -> Result<Outcome, PostError> {
        let mut stages = Vec::new();
        let mut flags = Vec::new();
        let mut moderation = serde_json::Map::new();
        let generated = input.image;
        let mut image = generated.clone();
        let mut record = input.record;

        if let Some(server) = self.watermark {
            if let Some(bigger) = timed(&mut stages, "upscale", || {
                easel_media::upscale_for_watermark(&image)
            }) {
                image = bigger;
            }
            let payload = WatermarkPayload {
                server,
                image: record.image_tag(),
            };
            image = timed(&mut stages, "watermark", || {
                easel_media::embed_watermark(&image, payload)
            })?;
            record.watermark_id = Some(payload.id());
        }

        if let Some(m) = &self.moderation {
            let score = timed(&mut stages, "moderation", || m.classifier.score(&image))?;
            let thresholds = match (input.output.moderation, &m.low) {
                (ModerationLevel::Low, Some(low)) => low,
                _ => &m.thresholds,
            };
            let decision = decide(score, thresholds);
            let mut value = serde_json::to_value(&decision).unwrap_or_default();
            if let Some(fields) = value.as_object_mut() {
                fields.insert("level".into(), input.output.moderation.as_str().into());
            }
            match decision.action {
                Action::Block => return Ok(Outcome::Blocked(decision)),
                Action::Flag => flags.push(FLAG_NSFW.to_string()),
                Action::Allow => {}
            }
            moderation.insert("nsfw".into(), value);
        }

        let mut perceptual_hash = None;
        if let Some(m) = &self.memorization
            && let Some(index) = m.index_for(input.model_dir)
        {
            let started = Instant::now();
            let hash = phash(&generated);
            perceptual_hash = Some(format!("{hash:016x}"));
            if let Some(nearest) = index.nearest(hash) {
                let near_copy = nearest.distance <= m.max_distance;
                if near_copy {
                    flags.push(FLAG_NEAR_COPY.to_string());
                }
                moderation.insert(
                    "memorization".into(),
                    serde_json::json!({
                        "nearest_distance": nearest.distance,
                        "nearest_caption": index.entries[nearest.index].caption,
                        "max_distance": m.max_distance,
                        "near_copy": near_copy,
                    }),
                );
            }
            stages.push(("memorization", started.elapsed().as_secs_f64()));
        }

        let mut quality_score = None;
        if let Some(q) = &self.quality
            && let Some(scorer) = q.scorer_for(input.model_dir)
        {
            match timed(&mut stages, "score", || {
                scorer.score(&generated, &record.prompt)
            }) {
                Ok(score) if score.is_finite() => quality_score = Some(score),
                Ok(score) => tracing::warn!(score, "the scorer returned a non-finite score"),
                Err(e) => {
                    tracing::warn!(error = %e, "scoring the image failed; it is stored unscored")
                }
            }
        }

        let metadata = crate::metadata::for_record(&record, !self.omit_prompt);
        let format = input.output.output_format;
        let mut bytes = timed(&mut stages, "encode", || {
            easel_media::encode(&image, format, input.output.output_compression, &metadata)
        })?;
        if let Some(signer) = &self.signer {
            let claim = crate::metadata::claim_info(&record, format);
            bytes = timed(&mut stages, "sign", || signer.sign(&bytes, format, &claim))?;
        }
        let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
        Ok(Outcome::Ready(Box::new(Processed {
            bytes,
            sha256,
            width: image.width,
            height: image.height,
            record,
            perceptual_hash,
            moderation: (!moderation.is_empty()).then_some(serde_json::Value::Object(moderation)),
            flags,
            quality_score,
            stages,
        })))
    }
}
