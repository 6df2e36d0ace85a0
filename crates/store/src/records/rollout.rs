//! Model versions, aliases and rollouts as stored. The store knows nothing
//! of what a guard means: a rollout's guards and its final decision are
//! opaque JSON documents the job system defines.

use chrono::{DateTime, Utc};

/// One version of a served model: the content hash of a model folder.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    /// The served name (alias).
    pub name: String,
    /// The content hash (`blake3:…`).
    pub version: String,
    /// The folder it loads from.
    pub path: String,
    /// The architecture its configs name, when known at registration.
    pub architecture: Option<String>,
    /// Who registered it (a key's name, `cli`, or `server` for the
    /// configured folder, recorded when it first loads).
    pub registered_by: Option<String>,
    /// When it was first recorded.
    pub registered_at: DateTime<Utc>,
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutState {
    /// Routing traffic to the candidate and evaluating its guards.
    Running,
    /// The candidate passed and the alias now serves it.
    Promoted,
    /// A guard failed; the candidate gets no traffic.
    RolledBack,
    /// Stopped by an operator; the alias is unchanged.
    Aborted,
}

impl RolloutState {
    /// `running`, `promoted`, `rolled_back` or `aborted`.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Promoted => "promoted",
            RolloutState::RolledBack => "rolled_back",
            RolloutState::Aborted => "aborted",
        }
    }
}

impl std::str::FromStr for RolloutState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "running" => RolloutState::Running,
            "promoted" => RolloutState::Promoted,
            "rolled_back" => RolloutState::RolledBack,
            "aborted" => RolloutState::Aborted,
            other => return Err(format!("unknown rollout state `{other}`")),
        })
    }
}

/// A rollout to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRollout {
    /// Its id (`ro_…`).
    pub id: String,
    /// The alias.
    pub model: String,
    /// The version the alias served when the rollout started.
    pub baseline: String,
    /// The version under test.
    pub candidate: String,
    /// `canary` or `shadow`.
    pub mode: String,
    /// Share of the alias's requests routed to (or shadowed on) the
    /// candidate, 0 to 100.
    pub percent: f64,
    /// The guards (opaque to the store).
    pub guards: serde_json::Value,
    /// Whether passing guards promote the candidate.
    pub auto_promote: bool,
    /// Who started it.
    pub created_by: Option<String>,
}

/// A stored rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// Its id.
    pub id: String,
    /// The alias.
    pub model: String,
    /// The baseline version.
    pub baseline: String,
    /// The candidate version.
    pub candidate: String,
    /// `canary` or `shadow`.
    pub mode: String,
    /// The candidate's share now (0 once rolled back or aborted).
    pub percent: f64,
    /// The guards.
    pub guards: serde_json::Value,
    /// Whether passing guards promote.
    pub auto_promote: bool,
    /// Where it is.
    pub state: RolloutState,
    /// Why it ended (one line).
    pub reason: Option<String>,
    /// The guard evaluation that ended it.
    pub decision: Option<serde_json::Value>,
    /// Who started it.
    pub created_by: Option<String>,
    /// When it started: the start of both versions' comparison window.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
}

/// How a rollout ends ([`crate::Db::end_rollout`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutEnd {
    /// `Promoted`, `RolledBack` or `Aborted`.
    pub state: RolloutState,
    /// Why (one line).
    pub reason: String,
    /// The evaluation at the end.
    pub decision: Option<serde_json::Value>,
    /// Point the alias at the candidate (a promotion), in the same
    /// transaction.
    pub promote: bool,
}

/// One finished job of a rollout's window, as the guards read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The version that made it (after a reroute, the fallback).
    pub version: String,
    /// The candidate it was routed to first and left because it failed
    /// there, with the failure's code.
    pub rerouted_from: Option<(String, String)>,
    /// `succeeded`, `failed` or `rejected`.
    pub status: String,
    /// The error code of a failed or rejected job.
    pub error_code: Option<String>,
    /// Milliseconds from its start on a worker to its end.
    pub run_ms: Option<i64>,
    /// Mean quality score of its images, where scored.
    pub quality: Option<f64>,
}
