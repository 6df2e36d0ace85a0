//! The vocabulary of the model pool: the engine contract the worker uses
//! ([`Generator`]), what is configured ([`ModelSpec`], [`PoolOptions`]),
//! what is reported ([`ModelState`], [`ModelStatus`]) and why a request for
//! a model or an admin action on one was refused.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use easel_engine::{
    CancelToken, EngineError, GeneratedImage, ImageRequest, LoadOptions, Model, ModelInfo,
    ProgressSink,
};

/// What the worker needs of a model: the engine contract, as a trait so the
/// job system can be tested with a stand-in.
pub trait Generator: Send + Sync + 'static {
    /// What the model is.
    fn info(&self) -> &ModelInfo;
    /// Generates one image per request, checking `cancel` between steps.
    fn generate(
        &self,
        requests: &[ImageRequest],
        progress: &mut dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<Vec<GeneratedImage>, EngineError>;
}

impl Generator for Model {
    fn info(&self) -> &ModelInfo {
        Model::info(self)
    }

    fn generate(
        &self,
        requests: &[ImageRequest],
        progress: &mut dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<Vec<GeneratedImage>, EngineError> {
        Model::generate(self, requests, progress, cancel)
    }
}

/// A configured model.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Name used in requests.
    pub name: String,
    /// Folder to load from.
    pub path: PathBuf,
}

/// Which models load when the server starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Preload {
    /// The default model, then every other model (in configured order) that
    /// fits the budget next to those already loaded, without evicting any.
    #[default]
    DefaultThenWhatFits,
    /// Exactly these models, in this order; a later one may evict an
    /// earlier one (least recently used first) to stay within the budget.
    Named(Vec<String>),
}

/// How the pool is run.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Memory the loaded models may take together, in bytes. A model alone
    /// larger than the budget still loads, once everything else is evicted.
    pub budget_bytes: u64,
    /// How long a load waits for models held by running batches to be
    /// released when it needs their memory, before it fails with
    /// `memory_budget_exceeded`.
    pub load_wait: Duration,
    /// What loads at start.
    pub preload: Preload,
    /// Device and hash cache for [`Model::load`].
    pub load_options: LoadOptions,
    /// The LoRA folder (`*.safetensors` files named by their stem);
    /// `None`: no LoRAs.
    pub lora_dir: Option<PathBuf>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            budget_bytes: 8192 * 1024 * 1024,
            load_wait: Duration::from_secs(60),
            preload: Preload::default(),
            load_options: LoadOptions::default(),
            lora_dir: None,
        }
    }
}

/// Where a model is in its life, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    /// Configured, not in memory (never loaded, evicted or unloaded).
    Unloaded,
    /// Being loaded (or waiting for memory) on the background loader thread.
    Loading,
    /// Loaded and serving.
    Ready,
    /// Loading failed; the reason, with its code.
    Failed {
        /// Stable code: the engine's ([`EngineError::code`], e.g.
        /// `corrupt_weights`), `memory_budget_exceeded` or `load_panicked`.
        code: String,
        /// What went wrong (one line).
        message: String,
    },
}

impl ModelState {
    /// `unloaded`, `loading`, `ready` or `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            ModelState::Unloaded => "unloaded",
            ModelState::Loading => "loading",
            ModelState::Ready => "ready",
            ModelState::Failed { .. } => "failed",
        }
    }
}

impl std::fmt::Display for ModelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelState::Failed { code, message } => write!(f, "failed ({code}: {message})"),
            other => f.write_str(other.name()),
        }
    }
}

/// A model's name, folder, state and memory, as listed by `/v1/models`.
#[derive(Debug, Clone)]
pub struct ModelStatus {
    /// Name used in requests.
    pub name: String,
    /// Folder.
    pub path: PathBuf,
    /// Load state.
    pub state: ModelState,
    /// Whether requests naming no model get this one.
    pub is_default: bool,
    /// Memory the model takes when loaded, in bytes: measured (f32 weights
    /// as loaded) once it has loaded, else estimated from its files.
    pub memory_bytes: u64,
    /// When a request last used it (or it finished loading); `None` if never.
    pub last_used: Option<SystemTime>,
    /// Batches holding it right now (0 unless ready).
    pub in_use: usize,
    /// The description from its last successful load (kept after eviction).
    pub info: Option<Arc<ModelInfo>>,
}

impl ModelStatus {
    /// The description from its last load, if it ever loaded.
    pub fn info(&self) -> Option<&ModelInfo> {
        self.info.as_deref()
    }
}

/// Why a model could not be handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelLookupError {
    /// No model of that name is configured.
    #[error("model `{name}` does not exist; available: {available}")]
    NotFound {
        /// The requested name.
        name: String,
        /// Configured names, comma separated.
        available: String,
    },
    /// Configured but not (yet) loaded.
    #[error("model `{name}` is not ready ({state})")]
    NotReady {
        /// The requested name.
        name: String,
        /// Its state, with the failure reason if it failed, and what happens next.
        state: String,
    },
}

/// Why an admin unload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnloadError {
    /// No model of that name is configured.
    #[error(transparent)]
    NotFound(ModelLookupError),
    /// A running batch holds the model; unloading it would not free memory.
    #[error("model `{name}` is in use by {holders} running batch(es); retry when they finish")]
    InUse {
        /// The model.
        name: String,
        /// How many batches hold it.
        holders: usize,
    },
    /// The model is loading; it cannot be interrupted.
    #[error("model `{name}` is loading; unload it once the load has finished")]
    Loading {
        /// The model.
        name: String,
    },
}
