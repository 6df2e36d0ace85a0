//! Holding the queued batch jobs of projects that ran out of a quota or
//! their budget, and releasing them when the limit is raised or a new
//! period starts. Checked before every claim; the list of projects that
//! have a quota or budget is read at most every [`PROJECTS_TTL`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use easel_core::Limits;
use easel_store::{HOLD_BUDGET, Project};

use super::Worker;
use crate::error::JobError;

/// How long the worker trusts its list of projects with a budget.
pub const PROJECTS_TTL: Duration = Duration::from_secs(5);

/// Every project with its effective limits, as read at one instant.
type Snapshot = (Instant, Vec<(Project, Limits)>);

/// The worker's cached list of projects (for holds and metric labels).
#[derive(Default)]
pub(crate) struct BudgetProjects {
    cached: Mutex<Option<Snapshot>>,
}

impl Worker {
    /// Holds or releases the batch jobs of every project with a quota or
    /// budget, by where it stands now.
    pub(crate) async fn apply_budget_holds(&self) -> Result<(), JobError> {
        let db = &self.inner.db;
        let projects = self.projects().await?;
        for (project, limits) in projects.into_iter().filter(|(_, l)| l.has_budget()) {
            let spend = db.spend(&project.id).await.map_err(JobError::Store)?;
            let over = spend.exhausted(&limits);
            let reason = over.as_ref().map(|_| HOLD_BUDGET);
            let changed = db
                .hold_batch_jobs(&project.id, reason)
                .await
                .map_err(JobError::Store)?;
            if changed > 0 {
                match over {
                    Some(o) => tracing::warn!(
                        project = %project.id, jobs = changed, limit = o.limit, used = o.used, allowed = o.allowed,
                        "project out of quota or budget; its queued batch jobs are held"
                    ),
                    None => {
                        tracing::info!(project = %project.id, jobs = changed, "project back within its limits; its batch jobs resume")
                    }
                }
            }
        }
        Ok(())
    }

    /// Every project with its effective limits, from the cache when it is
    /// younger than [`PROJECTS_TTL`].
    pub(crate) async fn projects(&self) -> Result<Vec<(Project, Limits)>, JobError> {
        let inner = &self.inner;
        let fresh = inner.budgets.cached.lock().ok().and_then(|c| {
            c.as_ref()
                .filter(|(at, _)| at.elapsed() < PROJECTS_TTL)
                .map(|(_, p)| p.clone())
        });
        if let Some(p) = fresh {
            return Ok(p);
        }
        let defaults = &inner.settings.default_limits;
        let all: Vec<(Project, Limits)> = inner
            .db
            .projects()
            .await
            .map_err(JobError::Store)?
            .into_iter()
            .map(|p| {
                let limits = p.limits.or(defaults);
                (p, limits)
            })
            .collect();
        if let Ok(mut c) = inner.budgets.cached.lock() {
            *c = Some((Instant::now(), all.clone()));
        }
        Ok(all)
    }

    /// The `project` label of `id` on metrics: its name when billable,
    /// else `other` (as of the cached project list).
    pub(crate) async fn metric_project(&self, id: &easel_core::ProjectId) -> String {
        let billable = self
            .projects()
            .await
            .map(|all| all.iter().any(|(p, _)| p.id == *id && p.billable))
            .unwrap_or(false);
        if billable {
            id.to_string()
        } else {
            "other".into()
        }
    }

    /// Forgets the cached project list (after an operator changed limits).
    pub fn refresh_budgets(&self) {
        if let Ok(mut c) = self.inner.budgets.cached.lock() {
            *c = None;
        }
    }
}
