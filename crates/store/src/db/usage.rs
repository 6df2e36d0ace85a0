//! Usage reports, a project's spend against its quotas, holding and
//! releasing its queued batch jobs, and the mean cost of a model's images.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use easel_core::ProjectId;

use super::{Db, dispatch};
use crate::error::Result;
use crate::records::usage::{Spend, UsageQuery, UsageRow};
use crate::rows;

/// The reason batch jobs of a project over its quota or budget are held.
pub const HOLD_BUDGET: &str = "budget_exhausted";

/// How many recent images of a model [`Db::mean_image_cost`] averages.
pub const COST_SAMPLE: i64 = 200;

/// The start of `now`'s UTC day and UTC month.
pub fn periods(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let day = Utc
        .with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0)
        .single()
        .unwrap_or(now);
    let month = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    (day, month)
}

impl Db {
    /// Images, device seconds and cost, grouped as `query` says, largest
    /// cost first.
    pub async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>> {
        let (from, until) = (rows::ms(query.from), rows::ms(query.until));
        let project = query.project.as_ref().map(ProjectId::as_str);
        dispatch!(self, b => b.usage(query.group, from, until, project).await)
    }

    /// Where project `id` stands this UTC day and month.
    pub async fn spend(&self, id: &ProjectId) -> Result<Spend> {
        let (day, month) = periods(self.now());
        dispatch!(self, b => b.spend(id.as_str(), rows::ms(day), rows::ms(month)).await)
    }

    /// The mean cost of the last [`COST_SAMPLE`] images of `model` (any
    /// project); `None` before the first.
    pub async fn mean_image_cost(&self, model: &str) -> Result<Option<f64>> {
        dispatch!(self, b => b.mean_image_cost(model, COST_SAMPLE).await)
    }

    /// Holds (`Some(reason)`) or releases (`None`) the queued batch jobs
    /// of project `id`; returns how many changed.
    pub async fn hold_batch_jobs(&self, id: &ProjectId, reason: Option<&str>) -> Result<u64> {
        dispatch!(self, b => b.hold_batch_jobs(id.as_str(), reason).await)
    }
}
