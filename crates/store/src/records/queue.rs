//! What the scheduler sees of a queued job: enough to order and group it,
//! without its delivery options or its history.

use chrono::{DateTime, Utc};
use easel_core::{GenerationParams, JobId, Tier};

/// A queued job, as returned by [`Db::queued_candidates`](crate::Db::queued_candidates).
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedJob {
    /// The job.
    pub id: JobId,
    /// Realtime or batch.
    pub tier: Tier,
    /// Who asked, as fair share counts them: the user id in the `default`
    /// project, `project/user` in any other, so two projects' keys of the
    /// same name are two users; `None` for anonymous use (all anonymous
    /// jobs share one fair-share slot).
    pub user_id: Option<String>,
    /// What to generate: the batching key is derived from these.
    pub params: GenerationParams,
    /// When it was queued: the order within one user.
    pub created_at: DateTime<Utc>,
}
