//! Responsible generation, composed from configuration: the prompt policy
//! checked at the edge, before a job is stored, and the post-processing
//! stages the worker runs on every image (watermark, image moderation,
//! near-copy check, quality score, C2PA). `easel generate` builds the same stages, so a
//! file made without a server carries the same provenance.
//!
//! Models used here (MiniLM, open_nsfw) are loaded once per process and
//! shared, so servers built again in one process (the tests) do not pay for
//! them again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context as _;
use easel_engine::score::Scorer;
use easel_jobs::{ImageModeration, Memorization, PostProcess, QualityScoring};
use easel_media::C2paSigner;
use easel_policy::Action;
use easel_policy::image::NsfwClassifier;
use easel_policy::prompt::{Embedder, MiniLmEmbedder, PromptDecision, PromptPolicy};
use easel_store::NewAuditEvent;
use easel_telemetry::metrics::{ModerationAction, ModerationStage};

use crate::auth::Principal;
use crate::config::Config;
use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;

/// One loaded value per path, for the life of the process.
fn cached<T: ?Sized + Send + Sync + 'static>(
    cache: &'static OnceLock<Mutex<HashMap<PathBuf, Arc<T>>>>,
    path: &Path,
    load: impl FnOnce(&Path) -> anyhow::Result<Arc<T>>,
) -> anyhow::Result<Arc<T>> {
    let map = cache.get_or_init(|| Mutex::new(HashMap::new()));
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if let Some(found) = map.lock().expect("model cache poisoned").get(&key) {
        return Ok(found.clone());
    }
    let loaded = load(path)?;
    map.lock()
        .expect("model cache poisoned")
        .insert(key, loaded.clone());
    Ok(loaded)
}

static EMBEDDERS: OnceLock<Mutex<HashMap<PathBuf, Arc<MiniLmEmbedder>>>> = OnceLock::new();
static CLASSIFIERS: OnceLock<Mutex<HashMap<PathBuf, Arc<NsfwClassifier>>>> = OnceLock::new();
static SCORERS: OnceLock<Mutex<HashMap<PathBuf, Arc<dyn Scorer>>>> = OnceLock::new();

/// The prompt policy of `config.moderation`, or `None` when it is off.
pub fn build_prompt_policy(config: &Config) -> anyhow::Result<Option<Arc<PromptPolicy>>> {
    let m = &config.moderation;
    if !m.prompt_enabled {
        return Ok(None);
    }
    let mut rules = m.prompt.clone();
    let embedder: Option<Arc<dyn Embedder>> = match &m.semantic_model {
        Some(dir) if dir.exists() => Some(cached(&EMBEDDERS, dir, |dir| {
            MiniLmEmbedder::load(dir)
                .map(Arc::new)
                .with_context(|| format!("loading moderation.semantic_model {}", dir.display()))
        })?),
        // The shipped default is relative to the repository root: started
        // elsewhere, terms and patterns still apply and the log says the
        // semantic filter is off. A folder the operator named must exist.
        Some(dir) if dir.as_path() == Path::new(easel_policy::DEFAULT_PROMPT_MODEL) => {
            tracing::warn!(
                path = %dir.display(),
                "the semantic prompt filter is OFF: the bundled MiniLM encoder was not found \
                 relative to the working directory; run from the repository root or set \
                 moderation.semantic_model"
            );
            rules.concepts.clear();
            None
        }
        Some(dir) => anyhow::bail!(
            "moderation.semantic_model {} does not exist (unset it and clear \
             moderation.prompt.concepts to run without the semantic filter)",
            dir.display()
        ),
        None => {
            rules.concepts.clear();
            None
        }
    };
    let policy = PromptPolicy::new(rules, embedder)
        .context("building the prompt policy from [moderation.prompt]")?;
    Ok(Some(Arc::new(policy)))
}

/// The post-processing stages of `config`. `data_dir` holds the generated
/// signing chain and server tag.
pub fn build_post_process(config: &Config) -> anyhow::Result<PostProcess> {
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

/// Checks a prompt against the policy. A block answers 400
/// `prompt_rejected` naming only the category (never the matched rule or
/// text) and is written to the audit log; a flag is audited too. Returns
/// the decision to record on the job (`None` when the policy is off).
pub async fn check_prompt(
    state: &AppState,
    principal: &Principal,
    user: Option<&str>,
    prompt: &str,
) -> Result<Option<serde_json::Value>, ApiError> {
    let Some(policy) = state.prompt_policy.clone() else {
        return Ok(None);
    };
    let text = prompt.to_string();
    let decision: PromptDecision = tokio::task::spawn_blocking(move || policy.check(&text))
        .await
        .map_err(|e| ApiError::internal("checking the prompt policy", e))?
        .map_err(|e| {
            tracing::error!(error = %e, code = e.code(), "the prompt policy failed");
            ApiError::new(
                ErrorKind::Unavailable,
                "policy_unavailable",
                "the prompt policy could not be evaluated; try again",
            )
        })?;
    let value = serde_json::to_value(&decision).unwrap_or_default();
    let category = decision
        .category
        .clone()
        .unwrap_or_else(|| "unspecified".into());
    let (event, action) = match decision.action {
        Action::Allow => (None, ModerationAction::Allow),
        Action::Flag => (Some("moderation.prompt_flagged"), ModerationAction::Flag),
        Action::Block => (Some("moderation.prompt_blocked"), ModerationAction::Block),
    };
    state.metrics.moderation(ModerationStage::Prompt, action);
    if let Some(event) = event {
        let actor = user
            .map(str::to_string)
            .unwrap_or_else(|| principal.name().to_string());
        let entry = NewAuditEvent::new(event)
            .actor(actor)
            .detail(serde_json::json!({
                "decision": value,
                "prompt_blake3": blake3::hash(prompt.as_bytes()).to_hex().to_string(),
            }));
        state.jobs.append_audit(entry).await;
    }
    if decision.action == Action::Block {
        return Err(ApiError::invalid(
            "prompt_rejected",
            "prompt",
            format!(
                "the prompt was rejected by this server's content policy (category: {category})"
            ),
        ));
    }
    Ok(Some(value))
}
