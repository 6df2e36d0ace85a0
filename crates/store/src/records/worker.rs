//! The worker registry's records: what a worker registers and reports on
//! each heartbeat, and what an operator reads back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use easel_core::JobId;

/// How many heartbeat intervals may pass without one before a worker that
/// has not said it stopped counts as lost.
pub const MISSED_HEARTBEATS: u32 = 3;

/// A worker process, as it registers itself ([`crate::Db::register_worker`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewWorker {
    /// Unique per process start (host, pid and a random part): the name
    /// its claims carry as the jobs' lease owner.
    pub id: String,
    /// The machine (or pod) it runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// The Easel version it runs.
    pub version: String,
    /// How often it promises a heartbeat.
    pub heartbeat_every: Duration,
}

/// What a worker reports on each heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerBeat {
    /// The models it has loaded now.
    pub models: Vec<String>,
    /// The models whose circuit breaker is open (it claims none of their
    /// jobs for now).
    pub open_circuits: Vec<String>,
    /// Whether it has stopped claiming (drain requested, or shutting down).
    pub draining: bool,
}

/// Where a worker is in its life, as the registry judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Heartbeating and claiming jobs.
    Active,
    /// Heartbeating, claiming nothing new: a drain was requested or it is
    /// shutting down; it finishes (or requeues) what it holds.
    Draining,
    /// It said it stopped.
    Stopped,
    /// No heartbeat for [`MISSED_HEARTBEATS`] intervals and no word that it
    /// stopped: it died or lost the database. Its jobs go back to the
    /// queue when their leases run out.
    Lost,
}

impl WorkerState {
    /// The state's name in the API: `active`, `draining`, `stopped`, `lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Active => "active",
            WorkerState::Draining => "draining",
            WorkerState::Stopped => "stopped",
            WorkerState::Lost => "lost",
        }
    }

    /// The state of a worker with these facts at time `now_ms`.
    pub(crate) fn judge(
        stopped: bool,
        draining: bool,
        heartbeat_at_ms: i64,
        every_ms: i64,
        now_ms: i64,
    ) -> Self {
        if stopped {
            WorkerState::Stopped
        } else if now_ms - heartbeat_at_ms > every_ms.saturating_mul(i64::from(MISSED_HEARTBEATS)) {
            WorkerState::Lost
        } else if draining {
            WorkerState::Draining
        } else {
            WorkerState::Active
        }
    }
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One worker of the registry ([`crate::Db::workers`]).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRecord {
    /// Its id (the jobs' lease owner).
    pub id: String,
    /// Its host.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// The Easel version it runs.
    pub version: String,
    /// The models it had loaded at its last heartbeat.
    pub models: Vec<String>,
    /// The models whose circuit breaker was open at its last heartbeat.
    pub open_circuits: Vec<String>,
    /// How often it heartbeats.
    pub heartbeat_every: Duration,
    /// When it registered.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub last_heartbeat_at: DateTime<Utc>,
    /// Whether an operator asked it to drain.
    pub drain_requested: bool,
    /// When it said it stopped.
    pub stopped_at: Option<DateTime<Utc>>,
    /// Its state, judged by the database's clock when read.
    pub state: WorkerState,
    /// The jobs it holds a lease on now.
    pub running_jobs: Vec<JobId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_lost_after_three_missed_heartbeats_unless_it_said_it_stopped() {
        let judge = |stopped, draining, age| WorkerState::judge(stopped, draining, 0, 10, age);
        assert_eq!(judge(false, false, 30), WorkerState::Active);
        assert_eq!(judge(false, true, 30), WorkerState::Draining);
        assert_eq!(judge(false, false, 31), WorkerState::Lost);
        assert_eq!(judge(false, true, 31), WorkerState::Lost);
        assert_eq!(judge(true, false, 1_000), WorkerState::Stopped);
    }
}
