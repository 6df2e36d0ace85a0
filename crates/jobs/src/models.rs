//! The served models and their load state.
//!
//! Models load on their own OS thread at startup, so the server answers
//! `/healthz` at once and `/readyz` says 503 until the default model is
//! ready. A model that fails to load is kept with its reason and reported;
//! it never takes the server down. A half-loaded model is never handed out:
//! a slot only becomes [`ModelState::Ready`] with a finished [`Generator`].
//! (The warm pool with a memory budget and eviction grows from here.)

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

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

/// Where a model is in its life.
#[derive(Clone)]
pub enum ModelState {
    /// Configured, not yet loading.
    Unloaded,
    /// Being loaded on a background thread.
    Loading,
    /// Loaded and serving.
    Ready(Arc<dyn Generator>),
    /// Loading failed; the reason, with its engine code.
    Failed {
        /// Stable code from [`EngineError::code`].
        code: String,
        /// What went wrong.
        message: String,
    },
}

impl ModelState {
    /// `unloaded`, `loading`, `ready` or `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            ModelState::Unloaded => "unloaded",
            ModelState::Loading => "loading",
            ModelState::Ready(_) => "ready",
            ModelState::Failed { .. } => "failed",
        }
    }
}

impl std::fmt::Debug for ModelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelState::Failed { code, message } => write!(f, "failed({code}: {message})"),
            other => f.write_str(other.name()),
        }
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

struct Slot {
    spec: ModelSpec,
    state: RwLock<ModelState>,
}

/// A model's name, folder and state, as listed by `/v1/models`.
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
}

impl ModelStatus {
    /// The loaded model's description, when ready.
    pub fn info(&self) -> Option<&ModelInfo> {
        match &self.state {
            ModelState::Ready(g) => Some(g.info()),
            _ => None,
        }
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
        /// Its state, with the failure reason if it failed.
        state: String,
    },
}

/// The served models. Cheap to clone.
#[derive(Clone)]
pub struct Models {
    slots: Arc<Vec<Slot>>,
    default: Arc<str>,
}

impl Models {
    /// Configured models, all unloaded. `default` must be one of them.
    pub fn new(specs: Vec<ModelSpec>, default: &str) -> Self {
        let slots = specs
            .into_iter()
            .map(|spec| Slot {
                spec,
                state: RwLock::new(ModelState::Unloaded),
            })
            .collect();
        Self {
            slots: Arc::new(slots),
            default: default.into(),
        }
    }

    /// Models already loaded (tests, `easel generate`); the first is the default.
    pub fn from_ready(models: Vec<(ModelSpec, Arc<dyn Generator>)>) -> Self {
        let default = models
            .first()
            .map(|(s, _)| s.name.clone())
            .unwrap_or_default();
        let slots = models
            .into_iter()
            .map(|(spec, g)| Slot {
                spec,
                state: RwLock::new(ModelState::Ready(g)),
            })
            .collect();
        Self {
            slots: Arc::new(slots),
            default: default.into(),
        }
    }

    /// The default model's name.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.spec.name == name)
    }

    fn set(&self, name: &str, state: ModelState) {
        if let Some(slot) = self.slot(name) {
            *slot.state.write().expect("model state lock poisoned") = state;
        }
    }

    /// Loads one model on the calling thread (slow: call it off the async
    /// runtime). The slot is `Loading` meanwhile and `Ready` or `Failed` after.
    pub fn load_blocking(&self, name: &str, options: &LoadOptions) {
        let Some(slot) = self.slot(name) else { return };
        self.set(name, ModelState::Loading);
        let options = LoadOptions {
            name: Some(name.to_string()),
            ..options.clone()
        };
        let started = std::time::Instant::now();
        let state = match Model::load(&slot.spec.path, &options) {
            Ok(model) => {
                tracing::info!(
                    model = name,
                    seconds = started.elapsed().as_secs_f64(),
                    "model loaded"
                );
                ModelState::Ready(Arc::new(model))
            }
            Err(e) => {
                tracing::error!(model = name, code = e.code(), error = %e, "model failed to load");
                // Only the first line: some tensor errors append a backtrace.
                let message = e.to_string();
                ModelState::Failed {
                    code: e.code().to_string(),
                    message: message.lines().next().unwrap_or_default().to_string(),
                }
            }
        };
        self.set(name, state);
    }

    /// Loads every unloaded model, default first, on one background OS
    /// thread. The thread is detached on purpose: a load cannot be
    /// interrupted, and the process may exit while it runs.
    pub fn load_all_in_background(&self, options: LoadOptions) {
        let me = self.clone();
        let mut names: Vec<String> = self.slots.iter().map(|s| s.spec.name.clone()).collect();
        names.sort_by_key(|n| n.as_str() != me.default_name());
        for name in &names {
            me.set(name, ModelState::Loading);
        }
        std::thread::Builder::new()
            .name("easel-model-loader".into())
            .spawn(move || {
                for name in names {
                    me.load_blocking(&name, &options);
                }
            })
            .expect("spawning the model loader thread");
    }

    /// A ready model by name (`None`: the default).
    pub fn get(&self, name: Option<&str>) -> Result<Arc<dyn Generator>, ModelLookupError> {
        let name = name.unwrap_or(&self.default);
        let slot = self.slot(name).ok_or_else(|| ModelLookupError::NotFound {
            name: name.chars().take(80).collect(),
            available: self
                .slots
                .iter()
                .map(|s| s.spec.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        match &*slot.state.read().expect("model state lock poisoned") {
            ModelState::Ready(g) => Ok(g.clone()),
            other => Err(ModelLookupError::NotReady {
                name: name.to_string(),
                state: format!("{other:?}"),
            }),
        }
    }

    /// Whether every model has finished loading (ready or failed). The
    /// worker claims no job before, so a job is never failed merely because
    /// its model was still loading.
    pub fn settled(&self) -> bool {
        self.slots.iter().all(|s| {
            matches!(
                *s.state.read().expect("model state lock poisoned"),
                ModelState::Ready(_) | ModelState::Failed { .. }
            )
        })
    }

    /// Whether the default model is ready.
    pub fn default_ready(&self) -> bool {
        self.get(None).is_ok()
    }

    /// Every configured model with its state, in configured order.
    pub fn list(&self) -> Vec<ModelStatus> {
        self.slots
            .iter()
            .map(|s| ModelStatus {
                name: s.spec.name.clone(),
                path: s.spec.path.clone(),
                state: s.state.read().expect("model state lock poisoned").clone(),
                is_default: s.spec.name == *self.default,
            })
            .collect()
    }
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list().iter().map(|m| (&m.name, &m.state)))
            .finish()
    }
}
