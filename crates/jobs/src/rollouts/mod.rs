//! Model versions and guarded rollouts.
//!
//! A served model name is an alias of versions, each the content hash of
//! a model folder. The configured folder's version is recorded when it
//! first loads; more are registered ([`Rollouts::register`]) and tried
//! out by a rollout: a **canary** sends a share of the alias's callers to
//! the candidate ([`route`]); a **shadow** serves every caller from the
//! alias's version and also runs a share of the requests on the candidate
//! as jobs of their own (batch tier, owned by the reserved project
//! `easel-shadow`, so never returned, listed or billed to the caller).
//! Either way its guards ([`guard`]) compare the two
//! versions over the same window with a sequential test, evaluated for as
//! long as the rollout runs. A failing guard rolls back at once (the
//! candidate's share becomes 0 in the same write that ends the rollout);
//! passing guards at the minimum sample promote the candidate when
//! `auto_promote` is on (the alias then points at it). Every start and end
//! is an audit event and a metric.
//!
//! A job routed to a candidate carries the baseline as its fallback: if
//! the candidate fails it (it does not load, the engine errs), the worker
//! puts it back in the queue on the baseline and the failure counts
//! against the candidate's error guard, so no request fails because of a
//! rollout.
//!
//! Every process holding a [`Rollouts`] routes from the same table, read
//! from the store every `evaluate_every` and at once after its own
//! changes; every process evaluates the guards, and the store lets only
//! one of them end a rollout.
//!
//! # Layout
//! - [`guard`]: the guards, the figures and the sequential test (pure).
//! - [`route`]: the sticky canary draw and the routing table (pure).
//! - this file: [`Rollouts`], the service over the store and the pool.

pub mod guard;
pub mod route;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use easel_core::GenerationParams;
use easel_engine::HashCache;
use easel_store::{
    Db, ModelVersion, NewAuditEvent, NewRollout, Rollout, RolloutEnd, RolloutState, StoreError,
};
use easel_telemetry::metrics::Metrics;
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::models::{ModelState, Models, versioned};
use guard::{Decision, Evaluation, Guards, Sample};
use route::{Active, Route, Table};

/// How long starting a rollout waits for its candidate to load.
pub const CANDIDATE_LOAD_WAIT: Duration = Duration::from_secs(300);

/// The moderation code of a job whose image was blocked.
const BLOCKED: &str = "content_blocked";

/// Why a version or rollout request was refused. Each has a stable code
/// and, where one field is at fault, its name.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// A field is missing or out of range (400).
    #[error("{message}")]
    Invalid {
        /// Stable code.
        code: &'static str,
        /// The field at fault.
        field: &'static str,
        /// What is wrong, naming the field and the limit.
        message: String,
    },
    /// The model, version or rollout does not exist (404).
    #[error("{message}")]
    NotFound {
        /// Stable code.
        code: &'static str,
        /// The field naming it.
        field: &'static str,
        /// Which.
        message: String,
    },
    /// The change conflicts with the current state (409).
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Why.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for RolloutError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::RolloutExists(_) | StoreError::RolloutEnded { .. } => {
                RolloutError::Conflict {
                    code: e.code(),
                    message: e.to_string(),
                }
            }
            StoreError::RolloutNotFound(_) => RolloutError::NotFound {
                code: e.code(),
                field: "id",
                message: e.to_string(),
            },
            other => RolloutError::Store(other),
        }
    }
}

fn invalid(code: &'static str, field: &'static str, message: String) -> RolloutError {
    RolloutError::Invalid {
        code,
        field,
        message,
    }
}

/// How a rollout sends traffic to its candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A share of the callers is served by the candidate.
    Canary,
    /// A share of the requests also runs on the candidate, unseen.
    Shadow,
}

/// A rollout to start, as `POST /v1/admin/rollouts` takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRollout {
    /// The alias.
    pub model: String,
    /// The candidate version (its content hash, as registered).
    pub candidate: String,
    /// `canary` (default) or `shadow`.
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// The candidate's share, above 0 and at most 100.
    pub percent: f64,
    /// The guards; `min_requests` is required.
    pub guards: Guards,
    /// Promote when every guard passes at the minimum sample. Default false.
    #[serde(default)]
    pub auto_promote: bool,
}

fn default_mode() -> Mode {
    Mode::Canary
}

/// What routing decided for a new job besides its version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// The version to run it on instead if its version (a canary's
    /// candidate) fails it.
    pub fallback: Option<String>,
    /// The version to also run it on, unseen (a shadow's candidate).
    pub shadow: Option<String>,
}

impl Mode {
    /// The mode's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Canary => "canary",
            Mode::Shadow => "shadow",
        }
    }
}

/// One version of a model, as `/v1/models/{name}` lists it.
#[derive(Debug, Clone)]
pub struct VersionView {
    /// The stored record.
    pub record: ModelVersion,
    /// Its load state in this process's pool (`None`: no slot here).
    pub state: Option<ModelState>,
    /// Whether the alias serves it (outside a canary's share).
    pub serving: bool,
    /// Its role in the running rollout: `baseline` or `candidate`.
    pub rollout_role: Option<&'static str>,
}

struct Inner {
    db: Db,
    models: Models,
    metrics: Metrics,
    table: RwLock<Table>,
    every: Duration,
}

/// The versions and rollouts service. Cheap to clone.
#[derive(Clone)]
pub struct Rollouts {
    inner: Arc<Inner>,
}

impl Rollouts {
    /// A service over `db` and `models`, re-reading the routing table and
    /// evaluating the guards every `every` once [`Rollouts::spawn`]ed.
    pub fn new(db: Db, models: Models, metrics: Metrics, every: Duration) -> Self {
        for model in models.list() {
            metrics.rollout_series(&model.name);
        }
        Self {
            inner: Arc::new(Inner {
                db,
                models,
                metrics,
                table: RwLock::new(Table::default()),
                every,
            }),
        }
    }

    /// Re-reads the aliases and the running rollouts.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let db = &self.inner.db;
        let aliases = db.model_aliases().await?.into_iter().collect();
        let running = db
            .rollouts(None, true, 1000)
            .await?
            .into_iter()
            .map(|r| {
                (
                    r.model.clone(),
                    Active {
                        shadow: r.mode == "shadow",
                        id: r.id,
                        baseline: r.baseline,
                        candidate: r.candidate,
                        percent: r.percent,
                    },
                )
            })
            .collect();
        *self.inner.table.write().expect("routing table lock") = Table { aliases, running };
        Ok(())
    }

    /// The version a new job of `params.model` runs on, set into
    /// `params.version`; returns the version to fall back to when that one
    /// is a canary candidate, and the version to shadow the job on. `caller`
    /// is the caller's identity (or the job's id for anonymous callers),
    /// `request` the job's id.
    pub fn route(&self, params: &mut GenerationParams, caller: &str, request: &str) -> Routing {
        let configured = self.configured_version(&params.model);
        let routed = self.inner.table.read().expect("routing table lock").route(
            &params.model,
            caller,
            request,
            configured.as_deref(),
        );
        match routed {
            Some(Route {
                version,
                fallback,
                shadow,
            }) => {
                params.version = Some(version);
                Routing { fallback, shadow }
            }
            None => Routing::default(),
        }
    }

    /// Counts a shadow job of `model` (`submitted`, or `skipped` when the
    /// batch tier had no room for it).
    pub fn shadow_counted(&self, model: &str, outcome: &'static str) {
        self.inner.metrics.rollout_shadow_job(model, outcome);
    }

    /// The version the configured folder of `model` holds, as its last
    /// load (here or on a worker, through the catalog) measured it.
    fn configured_version(&self, model: &str) -> Option<String> {
        self.inner
            .models
            .status(model)
            .ok()
            .and_then(|s| s.info.map(|i| i.content_hash.clone()))
    }

    /// The version alias `model` serves now.
    pub fn current_version(&self, model: &str) -> Option<String> {
        let table = self.inner.table.read().expect("routing table lock");
        table
            .aliases
            .get(model)
            .cloned()
            .or_else(|| self.configured_version(model))
    }

    /// Registers the folder `path` as a version of configured model
    /// `name`: checks that the engine can read it (configs, weight
    /// headers), hashes its weights, and records it. Registering a known
    /// version again changes nothing. Returns the version and whether it
    /// was new.
    pub async fn register(
        &self,
        name: &str,
        path: &Path,
        actor: Option<&str>,
    ) -> Result<(ModelVersion, bool), RolloutError> {
        self.configured(name)?;
        let (version, architecture) = hash_folder(path.to_path_buf()).await?;
        let db = &self.inner.db;
        let path_text = path.display().to_string();
        let new = db
            .record_model_version(name, &version, &path_text, Some(&architecture), actor)
            .await?;
        let record = db.model_version(name, &version).await?.ok_or_else(|| {
            RolloutError::Store(StoreError::Corrupt {
                what: "model_versions",
                detail: format!("version {version} of `{name}` vanished after it was recorded"),
            })
        })?;
        if new {
            self.audit(
                NewAuditEvent::new("model.version_registered")
                    .subject(name)
                    .detail(serde_json::json!({"version": version, "path": path_text})),
                actor,
            )
            .await;
        }
        Ok((record, new))
    }

    /// The versions of configured model `name`, oldest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionView>, RolloutError> {
        self.configured(name)?;
        let records = self.inner.db.model_versions(Some(name)).await?;
        let current = self.current_version(name);
        let configured = self.configured_version(name);
        let running = self
            .inner
            .table
            .read()
            .expect("routing table lock")
            .running
            .get(name)
            .cloned();
        let slots = self.inner.models.version_slots(name);
        let base_state = self.inner.models.state(name);
        Ok(records
            .into_iter()
            .map(|record| {
                let state = if configured.as_deref() == Some(record.version.as_str()) {
                    base_state.clone()
                } else {
                    slots
                        .iter()
                        .find(|(v, _)| *v == record.version)
                        .map(|(_, s)| s.state.clone())
                };
                let rollout_role = running.as_ref().and_then(|r| {
                    if r.candidate == record.version {
                        Some("candidate")
                    } else if r.baseline == record.version {
                        Some("baseline")
                    } else {
                        None
                    }
                });
                VersionView {
                    serving: current.as_deref() == Some(record.version.as_str()),
                    state,
                    rollout_role,
                    record,
                }
            })
            .collect())
    }

    /// Starts a rollout. Nothing changes when any check fails: the model
    /// must be configured, the candidate registered, different from the
    /// version served now and loadable; the share and the guards in range;
    /// no other rollout of the alias running.
    pub async fn start(
        &self,
        start: StartRollout,
        actor: Option<&str>,
    ) -> Result<Rollout, RolloutError> {
        self.configured(&start.model)?;
        if !(start.percent.is_finite() && start.percent > 0.0 && start.percent <= 100.0) {
            return Err(invalid(
                "invalid_percent",
                "percent",
                format!(
                    "percent must be above 0 and at most 100, got {}",
                    start.percent
                ),
            ));
        }
        start.guards.validate().map_err(|e| RolloutError::Invalid {
            code: "invalid_guard",
            field: e.field,
            message: e.message,
        })?;
        let db = &self.inner.db;
        self.refresh().await?;
        let Some(candidate) = db.model_version(&start.model, &start.candidate).await? else {
            return Err(RolloutError::NotFound {
                code: "version_not_found",
                field: "candidate",
                message: format!(
                    "candidate `{}` is not a registered version of model `{}` \
                     (register it with POST /v1/admin/models/{}/versions or `easel models register`)",
                    start.candidate.chars().take(80).collect::<String>(),
                    start.model,
                    start.model
                ),
            });
        };
        let Some(baseline) = self.current_version(&start.model) else {
            return Err(RolloutError::Conflict {
                code: "model_not_ready",
                message: format!(
                    "model `{}` has not loaded yet, so the version it serves is not known; retry once it is ready",
                    start.model
                ),
            });
        };
        if baseline == candidate.version {
            return Err(invalid(
                "candidate_is_baseline",
                "candidate",
                format!(
                    "candidate `{}` is the version model `{}` serves already",
                    candidate.version, start.model
                ),
            ));
        }
        if let Some(running) = db.rollouts(Some(&start.model), true, 1).await?.first() {
            return Err(RolloutError::Conflict {
                code: "rollout_exists",
                message: format!(
                    "model `{}` already has a running rollout `{}`; promote or abort it first",
                    start.model, running.id
                ),
            });
        }
        self.load_candidate(&start.model, &candidate).await?;
        let new = NewRollout {
            id: format!("ro_{}", uuid::Uuid::now_v7().simple()),
            model: start.model.clone(),
            baseline,
            candidate: candidate.version.clone(),
            mode: start.mode.as_str().into(),
            percent: start.percent,
            guards: serde_json::to_value(&start.guards).unwrap_or_default(),
            auto_promote: start.auto_promote,
            created_by: actor.map(str::to_string),
        };
        let rollout = db.create_rollout(&new).await?;
        self.refresh().await?;
        self.inner
            .metrics
            .rollout_event(&rollout.model, "started", rollout.percent);
        tracing::info!(
            rollout = %rollout.id, model = %rollout.model, candidate = %rollout.candidate,
            mode = %rollout.mode, percent = rollout.percent, "rollout started"
        );
        self.audit(
            NewAuditEvent::new("rollout.started")
                .subject(&rollout.id)
                .detail(serde_json::json!({
                    "model": rollout.model,
                    "baseline": rollout.baseline,
                    "candidate": rollout.candidate,
                    "mode": rollout.mode,
                    "percent": rollout.percent,
                    "guards": rollout.guards,
                    "auto_promote": rollout.auto_promote,
                })),
            actor,
        )
        .await;
        Ok(rollout)
    }

    /// Loads the candidate on this process's pool and waits for it; a
    /// process that loads no model checks that the engine can read the
    /// folder instead (its workers' failures then count against the
    /// candidate and their jobs fall back to the baseline).
    async fn load_candidate(&self, model: &str, v: &ModelVersion) -> Result<(), RolloutError> {
        let models = &self.inner.models;
        let failed = |message: String| {
            invalid(
                "candidate_load_failed",
                "candidate",
                format!("candidate `{}` does not load: {message}", v.version),
            )
        };
        if models.is_remote() {
            let path = PathBuf::from(&v.path);
            return tokio::task::spawn_blocking(move || {
                easel_engine::inspect(&path, &HashCache::Sidecar)
            })
            .await
            .map_err(|e| failed(e.to_string()))?
            .map(|_| ())
            .map_err(|e| failed(format!("{}: {e}", e.code())));
        }
        models.know_version(model, &v.version, Path::new(&v.path));
        let slot = versioned(model, &v.version);
        models.load(&slot).map_err(|e| failed(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + CANDIDATE_LOAD_WAIT;
        loop {
            match models.state(&slot) {
                Some(ModelState::Ready) => return Ok(()),
                Some(ModelState::Failed { code, message }) => {
                    return Err(failed(format!("{code}: {message}")));
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(failed(format!(
                        "still loading after {} s",
                        CANDIDATE_LOAD_WAIT.as_secs()
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// A rollout with its guards evaluated now (a running one), or as they
    /// stood when it ended.
    pub async fn status(&self, id: &str) -> Result<(Rollout, Option<Evaluation>), RolloutError> {
        let rollout = self.inner.db.rollout(id).await?;
        let evaluation = if rollout.state == RolloutState::Running {
            Some(self.evaluate(&rollout).await?)
        } else {
            None
        };
        Ok((rollout, evaluation))
    }

    /// Rollouts, newest first.
    pub async fn list(
        &self,
        model: Option<&str>,
        running_only: bool,
        limit: u32,
    ) -> Result<Vec<Rollout>, RolloutError> {
        Ok(self.inner.db.rollouts(model, running_only, limit).await?)
    }

    /// Promotes a running rollout's candidate by an operator's decision
    /// (the guards are not consulted, but recorded).
    pub async fn promote(&self, id: &str, actor: Option<&str>) -> Result<Rollout, RolloutError> {
        let rollout = self.inner.db.rollout(id).await?;
        let evaluation = self.evaluate(&rollout).await.ok();
        self.end(
            &rollout,
            RolloutState::Promoted,
            "promoted by an operator".into(),
            evaluation,
            actor,
        )
        .await
    }

    /// Stops a running rollout without promoting: the candidate gets no
    /// more traffic and the alias is unchanged.
    pub async fn abort(&self, id: &str, actor: Option<&str>) -> Result<Rollout, RolloutError> {
        let rollout = self.inner.db.rollout(id).await?;
        let evaluation = self.evaluate(&rollout).await.ok();
        self.end(
            &rollout,
            RolloutState::Aborted,
            "aborted by an operator".into(),
            evaluation,
            actor,
        )
        .await
    }

    async fn end(
        &self,
        rollout: &Rollout,
        state: RolloutState,
        reason: String,
        evaluation: Option<Evaluation>,
        actor: Option<&str>,
    ) -> Result<Rollout, RolloutError> {
        let end = RolloutEnd {
            state,
            reason: reason.clone(),
            decision: evaluation
                .as_ref()
                .and_then(|e| serde_json::to_value(e).ok()),
            promote: state == RolloutState::Promoted,
        };
        let ended = self.inner.db.end_rollout(&rollout.id, &end).await?;
        self.refresh().await?;
        let outcome = state.as_str();
        self.inner.metrics.rollout_event(&ended.model, outcome, 0.0);
        tracing::warn!(
            rollout = %ended.id, model = %ended.model, candidate = %ended.candidate,
            outcome, reason = %reason, "rollout ended"
        );
        self.audit(
            NewAuditEvent::new(format!("rollout.{outcome}"))
                .subject(&ended.id)
                .detail(serde_json::json!({
                    "model": ended.model,
                    "baseline": ended.baseline,
                    "candidate": ended.candidate,
                    "reason": reason,
                    "evaluation": end.decision,
                })),
            actor,
        )
        .await;
        Ok(ended)
    }

    /// The guards of `rollout` on its window's jobs now.
    async fn evaluate(&self, rollout: &Rollout) -> Result<Evaluation, RolloutError> {
        let guards: Guards = serde_json::from_value(rollout.guards.clone()).map_err(|e| {
            RolloutError::Store(StoreError::Corrupt {
                what: "rollouts.guards",
                detail: e.to_string(),
            })
        })?;
        let observations = self
            .inner
            .db
            .rollout_observations(
                &rollout.model,
                rollout.created_at,
                &rollout.baseline,
                &rollout.candidate,
            )
            .await?;
        let (mut baseline, mut candidate) = (Vec::new(), Vec::new());
        for o in observations {
            let sample = Sample {
                error: o.status == "failed",
                blocked: o.status == "rejected" && o.error_code.as_deref() == Some(BLOCKED),
                run_ms: (o.status == "succeeded")
                    .then_some(o.run_ms)
                    .flatten()
                    .map(|ms| ms as f64),
                quality: o.quality,
            };
            match &o.rerouted_from {
                // The candidate failed it: one error for the candidate;
                // what the baseline then made is not the baseline's
                // window sample (it ran late, after a failure).
                Some((from, _)) if *from == rollout.candidate => candidate.push(Sample {
                    error: true,
                    blocked: false,
                    run_ms: None,
                    quality: None,
                }),
                _ if o.version == rollout.candidate => candidate.push(sample),
                _ if o.version == rollout.baseline => baseline.push(sample),
                _ => {}
            }
        }
        Ok(guard::evaluate(&guards, &baseline, &candidate))
    }

    /// One pass over the running rollouts: a failing guard rolls back, a
    /// passing rollout with `auto_promote` is promoted.
    pub async fn evaluate_running(&self) -> Result<(), RolloutError> {
        for rollout in self.inner.db.rollouts(None, true, 1000).await? {
            let evaluation = self.evaluate(&rollout).await?;
            let outcome = match &evaluation.decision {
                Decision::RollBack { guard } => {
                    let reason = format!(
                        "guard `{guard}` failed after {} candidate and {} baseline jobs",
                        evaluation.candidate.jobs, evaluation.baseline.jobs
                    );
                    Some((RolloutState::RolledBack, reason))
                }
                Decision::Promote if rollout.auto_promote => Some((
                    RolloutState::Promoted,
                    format!(
                        "every guard passed after {} candidate jobs",
                        evaluation.candidate.jobs
                    ),
                )),
                _ => None,
            };
            if let Some((state, reason)) = outcome {
                match self
                    .end(&rollout, state, reason, Some(evaluation), None)
                    .await
                {
                    // Another process ended it first.
                    Err(RolloutError::Conflict { .. }) => {}
                    other => {
                        other?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Re-reads the routing table and evaluates the running rollouts every
    /// `every`, until aborted.
    pub fn spawn(&self) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.inner.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = me.refresh().await {
                    tracing::warn!(error = %e, "could not read the rollouts");
                    continue;
                }
                if let Err(e) = me.evaluate_running().await {
                    tracing::warn!(error = %e, "could not evaluate the rollouts");
                }
            }
        })
    }

    /// `name` is a configured model.
    fn configured(&self, name: &str) -> Result<(), RolloutError> {
        if name.contains('@') || self.inner.models.status(name).is_err() {
            let available: Vec<String> = self
                .inner
                .models
                .list()
                .into_iter()
                .map(|m| m.name)
                .collect();
            return Err(RolloutError::NotFound {
                code: "model_not_found",
                field: "model",
                message: format!(
                    "model `{}` does not exist; available: {}",
                    name.chars().take(80).collect::<String>(),
                    available.join(", ")
                ),
            });
        }
        Ok(())
    }

    async fn audit(&self, mut event: NewAuditEvent, actor: Option<&str>) {
        event.actor = actor.map(str::to_string);
        if let Err(e) = self.inner.db.append_audit(event).await {
            tracing::warn!(error = %e, "could not append a rollout event to the audit log");
        }
    }
}

/// The content hash and architecture of the folder at `path`, checked as
/// the engine would before loading.
async fn hash_folder(path: PathBuf) -> Result<(String, String), RolloutError> {
    let bad = |message: String| invalid("invalid_model_folder", "path", message);
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        let summary = easel_engine::inspect(&path, &HashCache::Sidecar)
            .map_err(|e| format!("{}: {e}", e.code()))?;
        if let easel_engine::WeightsCheck::Damaged { path, detail } = &summary.weights {
            return Err(format!("{}: {detail}", path.display()));
        }
        let hash = easel_engine::loader::hash::content_hash(
            &path,
            &summary.weight_files,
            &HashCache::Sidecar,
        )
        .map_err(|e| format!("{}: {e}", e.code()))?;
        let architecture = serde_json::to_value(summary.architecture)
            .ok()
            .and_then(|a| a.as_str().map(str::to_string))
            .unwrap_or_default();
        Ok((hash, architecture))
    })
    .await
    .map_err(|e| bad(e.to_string()))?
    .map_err(|e| bad(format!("the folder {shown} cannot be served: {e}")))
}
