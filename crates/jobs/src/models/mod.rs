//! The warm model pool: the served models, their load state and the memory
//! they take.
//!
//! Every configured model has a slot: `unloaded`, `loading`, `ready` or
//! `failed`. Loads run one at a time on a background OS thread (never on the
//! async runtime), so the server answers `/healthz` at once and `/readyz`
//! says 503 until the default model is ready. A slot becomes ready only
//! with a finished [`Generator`], so a half-loaded model is never handed
//! out. A model that fails to load (missing or corrupt files, even a panic
//! in the engine) is `failed` with the engine's code and message; the server
//! stays up and an admin load retries it.
//!
//! Loaded models are kept within a memory budget. Before a load, the pool
//! evicts least-recently-used models until the new one fits, never one a
//! running batch still holds (its `Arc` is shared) nor one loading; if those
//! keep too much memory, the load waits for them, then fails with
//! `memory_budget_exceeded` (retried on the next request for the model).
//! [`Models::get`] of an evicted or never-loaded model starts its load and
//! answers "not ready", so a queued job for it is served once it has
//! loaded. A model's description ([`ModelInfo`]) is kept after eviction, so
//! requests for a cold model are still validated against its real limits.
//!
//! A job with LoRAs runs on its own entry, named by its base model's pool
//! name and its LoRA combination ([`lora_slot_name`]): made on first use,
//! loaded with the engine's [`easel_engine::LoraSet`] (the LoRAs opened
//! from the server's [`LoraLibrary`] and checked against the hashes the job
//! was accepted with), counted in the budget with its measured weight bytes
//! and evicted least-recently-used like any model. A combination that fails
//! to load (a LoRA for another architecture) fails with the engine's code
//! (`lora_unmatched_key`, ...) and is not retried by itself.
//!
//! A process that serves the API only (the `api` role) holds a *remote*
//! pool ([`Models::remote`]): nothing loads there; the descriptions come
//! from the model catalog the workers publish to ([`catalog`]).
//!
//! # Layout
//! - `types`: the [`Generator`] contract, specs, options, states, errors.
//! - `budget`: the pure eviction decision (which models go), unit-tested.
//! - `estimate`: a model's f32 memory from its safetensors headers.
//! - `loader`: the background loader thread and one load's steps.
//! - `loras`: the LoRA folder ([`LoraLibrary`]) and the pool names of LoRA
//!   combinations.
//! - [`lora_metadata`]: a LoRA file's training metadata (its safetensors
//!   header's `__metadata__`).
//! - `audit`: `model.loaded`, `model.load_failed` and `model.unloaded`
//!   events for the store's audit log, and loaded models' descriptions for
//!   its model catalog ([`Models::attach_audit_log`]).
//! - [`catalog`]: a remote pool following the catalog.

mod audit;
mod budget;
pub mod catalog;
mod estimate;
mod loader;
pub mod lora_metadata;
mod loras;
mod types;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use easel_engine::{LoadOptions, Model, ModelInfo};

use audit::{AuditSink, ModelEvent, UnloadReason};
pub use budget::{Plan, Resident, plan};
pub use estimate::estimate_bytes;
pub use loras::{LoraError, LoraFile, LoraLibrary, is_lora_slot, lora_slot_name, split_lora_slot};
pub use types::{
    Generator, ModelLookupError, ModelSpec, ModelState, ModelStatus, PoolOptions, Preload,
    UnloadError,
};

/// Loads one model: the engine in production, a stand-in in tests.
pub(crate) type LoadFn =
    dyn Fn(&ModelSpec) -> Result<Arc<dyn Generator>, (String, String)> + Send + Sync;

/// A slot's state with the loaded model itself.
enum Slot {
    Unloaded,
    Loading,
    Ready(Arc<dyn Generator>),
    Failed { code: String, message: String },
}

/// The failure code of a load refused for lack of memory; such a failure is
/// transient, so the next request for the model tries again.
const OVER_BUDGET: &str = "memory_budget_exceeded";

struct Entry {
    /// The name requests use for it (`alias@version` for a registered
    /// version) and its folder.
    spec: ModelSpec,
    /// Configured in `[[models]]` (listed by `/v1/models`), as opposed to
    /// a registered version added while serving.
    configured: bool,
    slot: Slot,
    /// From the last successful load; kept after eviction.
    info: Option<Arc<ModelInfo>>,
    /// Measured after a load, estimated before.
    bytes: u64,
    /// Logical time of the last use, for LRU.
    last_used: u64,
    last_used_at: Option<SystemTime>,
    /// Who asked for the queued load (an admin key's name), for the audit
    /// log; `None` when the server started it itself.
    requested_by: Option<String>,
}

struct Pool {
    entries: Vec<Entry>,
    clock: u64,
    /// Registered versions known to this pool (`alias@version` → folder)
    /// that have no slot yet; one is made on first use.
    versions: HashMap<String, PathBuf>,
}

impl Pool {
    fn touch(&mut self, index: usize) {
        self.clock += 1;
        let entry = &mut self.entries[index];
        entry.last_used = self.clock;
        entry.last_used_at = Some(SystemTime::now());
    }
}

/// What the loader thread and the handles share.
pub(crate) struct Shared {
    default: String,
    options: PoolOptions,
    pool: Mutex<Pool>,
    load: Box<LoadFn>,
    /// Where load and unload events go, once attached.
    audit: OnceLock<AuditSink>,
    /// Where load times and load failures are counted, once attached.
    metrics: OnceLock<easel_telemetry::metrics::Metrics>,
    /// Models are served by other processes ([`Models::remote`]): nothing
    /// loads here.
    remote: bool,
    /// The LoRA folder (`[pool] lora_dir`).
    loras: Arc<LoraLibrary>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().expect("model pool lock poisoned")
    }

    /// Sends an event about model `name` to the audit log, if attached.
    fn record(&self, name: &str, actor: Option<String>, event: ModelEvent) {
        if let Some(sink) = self.audit.get() {
            sink.record(name, actor, event);
        }
    }

    /// Records a loaded model's version in the store's version registry
    /// and, for a configured model, publishes its description to the model
    /// catalog, if the audit log is attached (it writes to the same store).
    fn publish(&self, spec: &ModelSpec, configured: bool, info: &ModelInfo) {
        if let Some(sink) = self.audit.get() {
            sink.publish(spec, configured, info);
        }
    }
}

/// The served models. Cheap to clone.
#[derive(Clone)]
pub struct Models {
    shared: Arc<Shared>,
    loader: Arc<loader::Loader>,
}

impl Models {
    /// Configured models, all unloaded, with the default pool options.
    /// `default` must be one of them.
    pub fn new(specs: Vec<ModelSpec>, default: &str) -> Self {
        Self::with_pool(specs, default, PoolOptions::default())
    }

    /// Configured models, all unloaded, loaded by the engine with `options`.
    /// Reads each model's safetensors headers for its memory estimate.
    pub fn with_pool(specs: Vec<ModelSpec>, default: &str, options: PoolOptions) -> Self {
        let load_options = options.load_options.clone();
        let loras = Arc::new(LoraLibrary::new(options.lora_dir.clone()));
        let specs = specs
            .into_iter()
            .map(|s| {
                let bytes = estimate_bytes(&s.path);
                (s, bytes)
            })
            .collect();
        let load = engine_loader(load_options, loras.clone());
        let mut me = Self::with_loader(specs, default, options, load);
        Arc::get_mut(&mut me.shared)
            .expect("a new pool has one handle")
            .loras = loras;
        me
    }

    /// This pool serving the LoRAs of `dir` (a remote pool, which checks
    /// requests against the folder its workers share). Call it on a new
    /// pool, before it is cloned.
    pub fn with_lora_dir(mut self, dir: Option<PathBuf>) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("with_lora_dir on a new pool")
            .loras = Arc::new(LoraLibrary::new(dir));
        self
    }

    /// The server's LoRA folder.
    pub fn loras(&self) -> &LoraLibrary {
        &self.shared.loras
    }

    /// Configured models that other processes serve (the `api` role):
    /// nothing ever loads here. A model's description arrives with
    /// [`Models::learn`] (from the model catalog, [`catalog::follow`]), so
    /// requests are validated as the workers would; until then the model
    /// is not ready.
    pub fn remote(specs: Vec<ModelSpec>, default: &str) -> Self {
        let specs = specs.into_iter().map(|s| (s, 0)).collect();
        let mut me = Self::with_loader(
            specs,
            default,
            PoolOptions::default(),
            engine_loader(LoadOptions::default(), Arc::default()),
        );
        Arc::get_mut(&mut me.shared)
            .expect("a new pool has one handle")
            .remote = true;
        me
    }

    /// Whether the models are served by other processes ([`Models::remote`]).
    pub fn is_remote(&self) -> bool {
        self.shared.remote
    }

    /// Takes `info` as model `name`'s description (a remote pool learns
    /// what its workers loaded). `false` when no such model is configured.
    pub fn learn(&self, name: &str, info: ModelInfo) -> bool {
        let Ok(index) = self.index(name) else {
            return false;
        };
        let mut pool = self.shared.lock();
        let entry = &mut pool.entries[index];
        if entry.info.as_deref() != Some(&info) {
            entry.bytes = info.weight_bytes;
            entry.info = Some(Arc::new(info));
        }
        true
    }

    /// Configured models with their estimated bytes, loaded by `load`.
    pub(crate) fn with_loader(
        specs: Vec<(ModelSpec, u64)>,
        default: &str,
        options: PoolOptions,
        load: Box<LoadFn>,
    ) -> Self {
        let entries = specs
            .into_iter()
            .map(|(spec, bytes)| Entry::new(spec, true, bytes))
            .collect();
        Self {
            shared: Arc::new(Shared {
                default: default.to_string(),
                options,
                pool: Mutex::new(Pool {
                    entries,
                    clock: 0,
                    versions: HashMap::new(),
                }),
                load,
                audit: OnceLock::new(),
                metrics: OnceLock::new(),
                remote: false,
                loras: Arc::default(),
            }),
            loader: Arc::new(loader::Loader::default()),
        }
    }

    /// Models already loaded (tests, `easel generate`); the first is the
    /// default. No budget: nothing is evicted.
    pub fn from_ready(models: Vec<(ModelSpec, Arc<dyn Generator>)>) -> Self {
        let default = models
            .first()
            .map(|(s, _)| s.name.clone())
            .unwrap_or_default();
        let options = PoolOptions {
            budget_bytes: u64::MAX,
            ..PoolOptions::default()
        };
        let specs = models
            .iter()
            .map(|(s, _)| (s.clone(), 0))
            .collect::<Vec<_>>();
        let me = Self::with_loader(
            specs,
            &default,
            options,
            engine_loader(LoadOptions::default(), Arc::default()),
        );
        {
            let mut pool = me.shared.lock();
            for (i, (_, g)) in models.into_iter().enumerate() {
                pool.entries[i].bytes = g.info().weight_bytes;
                pool.entries[i].info = Some(Arc::new(g.info().clone()));
                pool.entries[i].slot = Slot::Ready(g);
                pool.touch(i);
            }
        }
        me
    }

    /// Appends `model.loaded`, `model.load_failed` and `model.unloaded`
    /// events to `db`'s audit log from now on (subject: the model's name;
    /// actor: the key that asked, for admin loads and unloads). Call it
    /// within the Tokio runtime that should do the writes, before
    /// [`Models::preload`]; a second call, or a call outside a runtime,
    /// changes nothing.
    pub fn attach_audit_log(&self, db: easel_store::Db) {
        match AuditSink::start(db) {
            Some(sink) => {
                let _ = self.shared.audit.set(sink);
            }
            None => tracing::warn!("no Tokio runtime: model events are not audited"),
        }
    }

    /// Counts load times (`easel_model_load_seconds`) and load failures
    /// (`easel_model_errors_total`) into `metrics` from now on. Call it
    /// before [`Models::preload`]; a second call changes nothing.
    pub fn attach_metrics(&self, metrics: easel_telemetry::metrics::Metrics) {
        let _ = self.shared.metrics.set(metrics);
    }

    /// The `device` label of the models' engine calls: `cpu` or `cuda:N`.
    pub fn device_label(&self) -> String {
        self.shared.options.load_options.device.to_string()
    }

    /// The default model's name.
    pub fn default_name(&self) -> &str {
        &self.shared.default
    }

    /// The memory budget, in bytes.
    pub fn budget_bytes(&self) -> u64 {
        self.shared.options.budget_bytes
    }

    fn index(&self, name: &str) -> Result<usize, ModelLookupError> {
        let mut pool = self.shared.lock();
        resolve(&mut pool, name)
    }

    /// Makes registered version `version` of model `name`, in `path`,
    /// known to this pool: a job naming `name@version` then runs on it
    /// (loaded on first use, like any model). A version that is the
    /// configured folder's needs no slot of its own. `false` when no model
    /// `name` is configured.
    pub fn know_version(&self, name: &str, version: &str, path: &Path) -> bool {
        let mut pool = self.shared.lock();
        if !pool
            .entries
            .iter()
            .any(|e| e.configured && e.spec.name == name)
        {
            return false;
        }
        pool.versions
            .insert(versioned(name, version), path.to_path_buf());
        true
    }

    /// The registered versions of model `name` that have a slot in this
    /// pool, with their state: `(version, status)`.
    pub fn version_slots(&self, name: &str) -> Vec<(String, ModelStatus)> {
        let prefix = format!("{name}@");
        self.list_all()
            .into_iter()
            .filter(|s| !is_lora_slot(&s.name))
            .filter_map(|s| {
                let version = s.name.strip_prefix(&prefix)?.to_string();
                Some((version, s))
            })
            .collect()
    }

    /// Marks a slot loading and queues its load, unless it is ready or
    /// already loading. Returns whether a load was queued.
    fn start_load(&self, pool: &mut Pool, index: usize, may_evict: bool) -> bool {
        self.start_load_as(pool, index, may_evict, None)
    }

    /// [`Models::start_load`], remembering who asked for the audit log.
    fn start_load_as(
        &self,
        pool: &mut Pool,
        index: usize,
        may_evict: bool,
        actor: Option<&str>,
    ) -> bool {
        if self.shared.remote {
            return false;
        }
        match pool.entries[index].slot {
            Slot::Ready(_) | Slot::Loading => false,
            Slot::Unloaded | Slot::Failed { .. } => {
                pool.entries[index].slot = Slot::Loading;
                pool.entries[index].requested_by = actor.map(str::to_string);
                self.loader
                    .send(&self.shared, loader::Request { index, may_evict });
                true
            }
        }
    }

    /// Queues the loads of `[pool] preload` on the background loader thread
    /// and returns at once. The default model is queued first.
    pub fn preload(&self) {
        let mut pool = self.shared.lock();
        match &self.shared.options.preload {
            Preload::DefaultThenWhatFits => {
                let default = resolve(&mut pool, &self.shared.default).ok();
                if let Some(i) = default {
                    self.start_load(&mut pool, i, true);
                }
                for i in 0..pool.entries.len() {
                    if Some(i) != default {
                        self.start_load(&mut pool, i, false);
                    }
                }
            }
            Preload::Named(names) => {
                for name in names {
                    match resolve(&mut pool, name) {
                        Ok(i) => {
                            self.start_load(&mut pool, i, true);
                        }
                        Err(e) => tracing::warn!(error = %e, "preload: skipping"),
                    }
                }
            }
        }
    }

    /// A ready model by name (`None`: the default), marked as just used.
    /// An unloaded (never loaded or evicted) model starts loading in the
    /// background and the answer is [`ModelLookupError::NotReady`]; ask again
    /// once [`Models::is_ready`] says so.
    pub fn get(&self, name: Option<&str>) -> Result<Arc<dyn Generator>, ModelLookupError> {
        let name = name.unwrap_or(&self.shared.default);
        let index = self.index(name)?;
        let mut pool = self.shared.lock();
        if let Slot::Ready(g) = &pool.entries[index].slot {
            let g = g.clone();
            pool.touch(index);
            return Ok(g);
        }
        Err(self.not_ready(&mut pool, index))
    }

    /// The error for a model that is not ready, starting its load when it
    /// is unloaded (or failed only for lack of memory).
    fn not_ready(&self, pool: &mut Pool, index: usize) -> ModelLookupError {
        let retry = match &pool.entries[index].slot {
            Slot::Unloaded => true,
            Slot::Failed { code, .. } => code == OVER_BUDGET,
            Slot::Loading | Slot::Ready(_) => false,
        };
        let state = if retry && self.start_load(pool, index, true) {
            "unloaded; loading started, retry shortly".to_string()
        } else {
            match state_of(&pool.entries[index].slot) {
                ModelState::Loading => "loading; retry shortly".to_string(),
                failed @ ModelState::Failed { .. } => {
                    format!("{failed}; an administrator can retry the load")
                }
                other => other.to_string(),
            }
        };
        ModelLookupError::NotReady {
            name: pool.entries[index].spec.name.clone(),
            state,
        }
    }

    /// The description of a model (`None`: the default) for validating a
    /// request: from the loaded model, or kept from its last load when it
    /// has been evicted, in which case its load starts now so it is warm by
    /// the time the job runs. Only a model that has never loaded (or that
    /// failed) answers [`ModelLookupError::NotReady`].
    pub fn info(&self, name: Option<&str>) -> Result<Arc<ModelInfo>, ModelLookupError> {
        let name = name.unwrap_or(&self.shared.default);
        let index = self.index(name)?;
        let mut pool = self.shared.lock();
        let entry = &pool.entries[index];
        match (&entry.slot, &entry.info) {
            (Slot::Ready(_) | Slot::Loading, Some(info)) => Ok(info.clone()),
            (Slot::Unloaded, Some(info)) => {
                let info = info.clone();
                self.start_load(&mut pool, index, true);
                Ok(info)
            }
            _ => Err(self.not_ready(&mut pool, index)),
        }
    }

    /// Whether the model is loaded and can be handed out now.
    pub fn is_ready(&self, name: &str) -> bool {
        let Ok(index) = self.index(name) else {
            return false;
        };
        matches!(self.shared.lock().entries[index].slot, Slot::Ready(_))
    }

    /// A model's state now (`None`: not configured). Unlike [`Models::get`]
    /// it starts nothing and does not count as a use, so a scheduler can
    /// tell a model still loading (wait) from a failed one (fail the job).
    pub fn state(&self, name: &str) -> Option<ModelState> {
        let index = self.index(name).ok()?;
        Some(state_of(&self.shared.lock().entries[index].slot))
    }

    /// Starts loading a model in the background (an admin action; it also
    /// retries a failed model). Returns its state afterwards: `loading`, or
    /// `ready` when it already was.
    pub fn load(&self, name: &str) -> Result<ModelState, ModelLookupError> {
        self.load_as(name, None)
    }

    /// [`Models::load`] on behalf of `actor` (an admin key's name), who is
    /// recorded as the actor of the `model.loaded` or `model.load_failed`
    /// event when this call started the load.
    pub fn load_as(&self, name: &str, actor: Option<&str>) -> Result<ModelState, ModelLookupError> {
        let index = self.index(name)?;
        let mut pool = self.shared.lock();
        self.start_load_as(&mut pool, index, true, actor);
        Ok(state_of(&pool.entries[index].slot))
    }

    /// Unloads a model now (an admin action). Refused while a running batch
    /// holds it (unloading would free no memory) or while it loads.
    /// Unloading a failed model clears its failure.
    pub fn unload(&self, name: &str) -> Result<(), UnloadError> {
        self.unload_as(name, None)
    }

    /// [`Models::unload`] on behalf of `actor`, recorded as the actor of the
    /// `model.unloaded` event (there is one only when the model was ready).
    pub fn unload_as(&self, name: &str, actor: Option<&str>) -> Result<(), UnloadError> {
        let index = self.index(name).map_err(UnloadError::NotFound)?;
        let mut pool = self.shared.lock();
        let entry = &mut pool.entries[index];
        match &entry.slot {
            Slot::Loading => {
                return Err(UnloadError::Loading {
                    name: name.to_string(),
                });
            }
            Slot::Ready(g) if Arc::strong_count(g) > 1 => {
                return Err(UnloadError::InUse {
                    name: name.to_string(),
                    holders: Arc::strong_count(g) - 1,
                });
            }
            _ => {}
        }
        let was_ready = matches!(entry.slot, Slot::Ready(_));
        entry.slot = Slot::Unloaded;
        if was_ready {
            tracing::info!(model = name, "model unloaded by request");
            self.shared.record(
                name,
                actor.map(str::to_string),
                ModelEvent::Unloaded {
                    reason: UnloadReason::Requested,
                    for_model: None,
                },
            );
        }
        Ok(())
    }

    /// Whether no model is loading. The worker claims no job meanwhile, so
    /// a job is not failed merely because its model was still loading.
    pub fn settled(&self) -> bool {
        !self
            .shared
            .lock()
            .entries
            .iter()
            .any(|e| matches!(e.slot, Slot::Loading))
    }

    /// Whether the default model is ready.
    pub fn default_ready(&self) -> bool {
        self.is_ready(&self.shared.default)
    }

    /// Every configured model with its state, in configured order.
    pub fn list(&self) -> Vec<ModelStatus> {
        self.list_all()
            .into_iter()
            .filter(|s| !s.name.contains('@') && !is_lora_slot(&s.name))
            .collect()
    }

    /// The entries of LoRA combinations ([`lora_slot_name`]), in the order
    /// they were first used: each a model of the pool in its own right.
    pub fn lora_slots(&self) -> Vec<ModelStatus> {
        self.list_all()
            .into_iter()
            .filter(|s| is_lora_slot(&s.name))
            .collect()
    }

    /// Every slot, the registered versions' (`alias@version`) included.
    fn list_all(&self) -> Vec<ModelStatus> {
        let pool = self.shared.lock();
        pool.entries
            .iter()
            .map(|e| ModelStatus {
                name: e.spec.name.clone(),
                path: e.spec.path.clone(),
                state: state_of(&e.slot),
                is_default: e.spec.name == self.shared.default,
                memory_bytes: e.bytes,
                last_used: e.last_used_at,
                in_use: match &e.slot {
                    Slot::Ready(g) => Arc::strong_count(g) - 1,
                    _ => 0,
                },
                info: e.info.clone(),
            })
            .collect()
    }

    /// One model's status.
    pub fn status(&self, name: &str) -> Result<ModelStatus, ModelLookupError> {
        let index = self.index(name)?;
        Ok(self.list_all().swap_remove(index))
    }
}

impl Entry {
    fn new(spec: ModelSpec, configured: bool, bytes: u64) -> Self {
        Entry {
            spec,
            configured,
            slot: Slot::Unloaded,
            info: None,
            bytes,
            last_used: 0,
            last_used_at: None,
            requested_by: None,
        }
    }
}

/// The pool name of version `version` of model `name`: `name@version`.
pub fn versioned(name: &str, version: &str) -> String {
    format!("{name}@{version}")
}

/// The pool name a job's parameters run on: `model@version` when they
/// name a version, else the model; followed by the LoRA combination when
/// they have one ([`lora_slot_name`]).
pub fn slot_name(params: &easel_core::GenerationParams) -> String {
    let base = match &params.version {
        Some(v) => versioned(&params.model, v),
        None => params.model.clone(),
    };
    lora_slot_name(&base, &params.loras)
}

/// The slot of pool name `name`. `alias@version` is the configured
/// slot of `alias` when that is the version (its last load measured that
/// hash, or the version is registered with the configured folder), else
/// the version's own slot, made on first use from the versions the pool
/// knows ([`Models::know_version`]).
fn resolve(pool: &mut Pool, name: &str) -> Result<usize, ModelLookupError> {
    if let Some(i) = pool.entries.iter().position(|e| e.spec.name == name) {
        return Ok(i);
    }
    if is_lora_slot(name) {
        // A LoRA combination of a known model: its own entry on the base
        // model's folder, estimated at the base model's size.
        let (base_name, _) = split_lora_slot(name);
        let base = resolve(pool, base_name)?;
        let (path, bytes) = {
            let b = &pool.entries[base];
            (b.spec.path.clone(), b.bytes)
        };
        let entry = Entry::new(
            ModelSpec {
                name: name.to_string(),
                path,
            },
            false,
            bytes,
        );
        return Ok(add_lora_entry(pool, entry));
    }
    let not_found = |pool: &Pool, what: String| ModelLookupError::NotFound {
        name: what,
        available: pool
            .entries
            .iter()
            .filter(|e| e.configured)
            .map(|e| e.spec.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let Some((alias, version)) = name.split_once('@') else {
        return Err(not_found(pool, name.chars().take(80).collect()));
    };
    let Some(base) = pool
        .entries
        .iter()
        .position(|e| e.configured && e.spec.name == alias)
    else {
        return Err(not_found(pool, alias.chars().take(80).collect()));
    };
    let registered = pool.versions.get(name).cloned();
    let base_entry = &pool.entries[base];
    let is_base = base_entry.info.as_ref().map(|i| i.content_hash.as_str()) == Some(version)
        || registered.as_ref() == Some(&base_entry.spec.path);
    if is_base {
        return Ok(base);
    }
    let Some(path) = registered else {
        return Err(not_found(
            pool,
            format!(
                "{alias}` version `{}",
                version.chars().take(80).collect::<String>()
            ),
        ));
    };
    let bytes = estimate_bytes(&path);
    pool.entries.push(Entry::new(
        ModelSpec {
            name: name.to_string(),
            path,
        },
        false,
        bytes,
    ));
    Ok(pool.entries.len() - 1)
}

/// Most entries of LoRA combinations the pool keeps. Every combination
/// (each weight of each set of LoRAs) is an entry: past this many, a new
/// one takes the place of the least recently used one that holds nothing
/// (unloaded or failed), so the list stays bounded however many weights
/// clients try.
const MAX_LORA_ENTRIES: usize = 32;

/// Adds a LoRA combination's entry, reusing the least recently used idle
/// one when there are [`MAX_LORA_ENTRIES`]. Reusing a slot in place keeps
/// every other entry's index (queued loads refer to slots by index; an
/// idle slot has no queued load).
fn add_lora_entry(pool: &mut Pool, entry: Entry) -> usize {
    let loras = pool
        .entries
        .iter()
        .filter(|e| is_lora_slot(&e.spec.name))
        .count();
    if loras >= MAX_LORA_ENTRIES {
        let idle = pool
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                is_lora_slot(&e.spec.name) && matches!(e.slot, Slot::Unloaded | Slot::Failed { .. })
            })
            .min_by_key(|(_, e)| e.last_used)
            .map(|(i, _)| i);
        if let Some(i) = idle {
            pool.entries[i] = entry;
            return i;
        }
    }
    pool.entries.push(entry);
    pool.entries.len() - 1
}

/// The reported state of a slot.
fn state_of(slot: &Slot) -> ModelState {
    match slot {
        Slot::Unloaded => ModelState::Unloaded,
        Slot::Loading => ModelState::Loading,
        Slot::Ready(_) => ModelState::Ready,
        Slot::Failed { code, message } => ModelState::Failed {
            code: code.clone(),
            message: message.clone(),
        },
    }
}

/// Loads with the engine; a failure keeps the engine's code and the first
/// line of its message (some tensor errors append a backtrace). A LoRA
/// combination's entry loads with its LoRAs, opened from `loras`.
fn engine_loader(options: LoadOptions, loras: Arc<LoraLibrary>) -> Box<LoadFn> {
    Box::new(move |spec: &ModelSpec| {
        let (base, refs) = split_lora_slot(&spec.name);
        // A registered version (`alias@version`) describes itself by its
        // alias, the name its images record.
        let alias = base.split('@').next().unwrap_or(base);
        let options = LoadOptions {
            name: Some(alias.to_string()),
            loras: lora_set(&loras, &refs)?,
            ..options.clone()
        };
        match Model::load(&spec.path, &options) {
            Ok(model) => Ok(Arc::new(model) as Arc<dyn Generator>),
            Err(e) => {
                let message = e.to_string();
                Err((
                    e.code().to_string(),
                    message.lines().next().unwrap_or_default().to_string(),
                ))
            }
        }
    })
}

/// The engine's set for a combination: each LoRA opened by name and
/// checked to be the content its jobs were accepted with.
fn lora_set(
    library: &LoraLibrary,
    refs: &[easel_core::LoraRef],
) -> Result<easel_engine::LoraSet, (String, String)> {
    let mut set = easel_engine::LoraSet::new();
    for r in refs {
        let adapter = library
            .open(&r.name)
            .map_err(|e| (e.code().to_string(), e.to_string()))?;
        if let Some(want) = r.hash.as_deref().filter(|h| *h != adapter.hash()) {
            return Err((
                "lora_changed".into(),
                format!(
                    "LoRA `{}` is now {}, not {want} as when its jobs were accepted; \
                     submit them again",
                    r.name,
                    adapter.hash()
                ),
            ));
        }
        set.push(adapter, r.weight);
    }
    Ok(set)
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.list()
                    .iter()
                    .map(|m| (m.name.clone(), m.state.to_string())),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests;
