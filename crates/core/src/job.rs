//! The lifecycle state of a job, shared by the store, the job system and the
//! server so that all three spell the states the same way.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::sampler::UnknownName;

/// Where a job is in its life.
///
/// ```text
/// queued ──claim──▶ running ──▶ succeeded | failed | rejected | cancelled
///    │                 │
///    └──cancel──▶ cancelled      (a crash puts running back to queued)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Persisted and waiting for a worker.
    Queued,
    /// Claimed by a worker that is generating its images.
    Running,
    /// Every image was generated and stored.
    Succeeded,
    /// Generation failed; the job records the error code and message.
    Failed,
    /// Cancelled by its owner before it finished.
    Cancelled,
    /// Refused by policy (prompt or image moderation); the job records why.
    Rejected,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: &'static [JobStatus] = &[
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Rejected,
    ];

    /// The snake_case name used in the API and the database.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Rejected => "rejected",
        }
    }

    /// Whether the job can no longer change state.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase();
        JobStatus::ALL
            .iter()
            .copied()
            .find(|status| status.as_str() == norm)
            .ok_or_else(|| UnknownName {
                what: "job status",
                value: s.chars().take(80).collect(),
                expected: JobStatus::ALL
                    .iter()
                    .map(JobStatus::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
    }

    #[test]
    fn only_queued_and_running_are_not_terminal() {
        let live: Vec<_> = JobStatus::ALL.iter().filter(|s| !s.is_terminal()).collect();
        assert_eq!(live, [&JobStatus::Queued, &JobStatus::Running]);
    }

    #[test]
    fn an_unknown_status_lists_the_alternatives() {
        let err = "done".parse::<JobStatus>().unwrap_err();
        assert!(err.to_string().contains("succeeded"));
    }
}
