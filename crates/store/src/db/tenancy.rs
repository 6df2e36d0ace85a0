//! Projects, API keys, rate-limit buckets and the counts that limits are
//! checked against.

use easel_core::ProjectId;

use super::{Db, dispatch};
use crate::error::{Result, StoreError};
use crate::records::tenancy::{
    ApiKeyRecord, KeyWithProject, NewApiKey, NewProject, Project, ProjectChange, RateState,
    RateTake, gcra,
};
use crate::rows;

/// How stale `last_used_at` may get: a key used again within this many
/// milliseconds is not written again, so authenticating is a read, not a
/// write, on almost every request.
pub const LAST_USED_PRECISION_MS: i64 = 60_000;

/// The outcome of [`Db::take_rate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether every bucket had room; when not, none was charged.
    pub admitted: bool,
    /// Each bucket's state, in the order of the takes.
    pub states: Vec<RateState>,
}

/// Runs [`gcra::take`] over every bucket: the new `tat` of each when all
/// fit, and each bucket's state. `tats` are the buckets' stored values, in
/// the order of `takes`.
pub(crate) fn decide(
    takes: &[RateTake],
    tats: &[Option<i64>],
    now_us: i64,
) -> (Option<Vec<i64>>, Vec<RateState>) {
    let mut new = Vec::with_capacity(takes.len());
    let mut states = Vec::with_capacity(takes.len());
    let mut all = true;
    for (take, tat) in takes.iter().zip(tats) {
        let (next, state) = gcra::take(*tat, now_us, take.limit, take.cost);
        match next {
            Some(t) => new.push(t),
            None => all = false,
        }
        states.push(state);
    }
    if all {
        (Some(new), states)
    } else {
        // Report what the refused request would have left: nothing was taken.
        let states = takes
            .iter()
            .zip(tats)
            .zip(states)
            .map(|((take, tat), state)| {
                let (_, untouched) = gcra::take(*tat, now_us, take.limit, 0);
                RateState {
                    remaining: untouched.remaining,
                    reset_us: untouched.reset_us,
                    ..state
                }
            })
            .collect();
        (None, states)
    }
}

/// Seconds as stored (a retention longer than `i64::MAX` s is forever in
/// practice).
fn seconds(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

impl Db {
    /// Creates a project; [`StoreError::ProjectExists`] if one has its name.
    pub async fn create_project(&self, new: &NewProject) -> Result<Project> {
        let limits_json = rows::to_json(&new.limits, "projects.limits")?;
        let now = self.now_ms();
        let retention = new.retention_seconds.map(seconds);
        let id = new.id.as_str();
        if dispatch!(self, b => b.insert_project(id, &limits_json, new.billable, retention, now).await)?
        {
            self.project(&new.id).await
        } else {
            Err(StoreError::ProjectExists(new.id.to_string()))
        }
    }

    /// Creates project `id` unless it exists (config-file keys name
    /// projects that must exist).
    pub async fn ensure_project(&self, id: &ProjectId) -> Result<Project> {
        let now = self.now_ms();
        dispatch!(self, b => b.insert_project(id.as_str(), "{}", false, None, now).await)?;
        self.project(id).await
    }

    /// Project `id`.
    pub async fn project(&self, id: &ProjectId) -> Result<Project> {
        dispatch!(self, b => b.project(id.as_str()).await)?
            .ok_or_else(|| StoreError::ProjectNotFound(id.to_string()))
    }

    /// Every project, by name.
    pub async fn projects(&self) -> Result<Vec<Project>> {
        dispatch!(self, b => b.projects().await)
    }

    /// Applies `change` to project `id`.
    pub async fn update_project(&self, id: &ProjectId, change: &ProjectChange) -> Result<Project> {
        let limits = change
            .limits
            .as_ref()
            .map(|l| rows::to_json(l, "projects.limits"))
            .transpose()?;
        let retention = change.retention_seconds.map(|r| r.map(seconds));
        let billable = change.billable;
        if dispatch!(self, b => b.update_project(id.as_str(), limits.as_deref(), billable, retention).await)?
        {
            self.project(id).await
        } else {
            Err(StoreError::ProjectNotFound(id.to_string()))
        }
    }

    /// Stores a new key; [`StoreError::ProjectNotFound`] when its project
    /// does not exist (nothing is written).
    pub async fn insert_api_key(&self, key: &NewApiKey) -> Result<ApiKeyRecord> {
        self.project(&key.project).await?;
        let scopes = rows::to_json(&key.scopes, "api_keys.scopes")?;
        let limits = rows::to_json(&key.limits, "api_keys.limits")?;
        let now = self.now_ms();
        let expires = key.expires_at.map(rows::ms);
        dispatch!(self, b => b.insert_api_key(key, &scopes, &limits, now, expires, None).await)?;
        self.api_key(&key.id).await
    }

    /// Replaces key `old` by `new` in one transaction: `new` is stored and
    /// `old` stops working at `old_until` (now, or later for a grace
    /// period), unless it already stops earlier.
    pub async fn rotate_api_key(
        &self,
        old: &str,
        new: &NewApiKey,
        old_until: chrono::DateTime<chrono::Utc>,
    ) -> Result<ApiKeyRecord> {
        let scopes = rows::to_json(&new.scopes, "api_keys.scopes")?;
        let limits = rows::to_json(&new.limits, "api_keys.limits")?;
        let now = self.now_ms();
        let expires = new.expires_at.map(rows::ms);
        let retire = (old.to_string(), rows::ms(old_until));
        dispatch!(self, b => b.insert_api_key(new, &scopes, &limits, now, expires, Some(&retire)).await)?;
        self.api_key(&new.id).await
    }

    /// Key `id` (revoked and expired ones included).
    pub async fn api_key(&self, id: &str) -> Result<ApiKeyRecord> {
        dispatch!(self, b => b.api_key(id).await)?
            .ok_or_else(|| StoreError::ApiKeyNotFound(id.to_string()))
    }

    /// The keys of one project, or of all (`None`), newest first.
    pub async fn api_keys(&self, project: Option<&ProjectId>) -> Result<Vec<ApiKeyRecord>> {
        dispatch!(self, b => b.api_keys(project.map(ProjectId::as_str)).await)
    }

    /// The key whose secret hashes to `hash` (`blake3:<hex>`), with its
    /// project, whatever its state (the caller checks
    /// [`ApiKeyRecord::is_active`]).
    pub async fn api_key_by_hash(&self, hash: &str) -> Result<Option<KeyWithProject>> {
        dispatch!(self, b => b.api_key_by_hash(hash).await)
    }

    /// Revokes key `id` (a key already revoked keeps its first time).
    pub async fn revoke_api_key(&self, id: &str) -> Result<ApiKeyRecord> {
        let now = self.now_ms();
        if dispatch!(self, b => b.revoke_api_key(id, now).await)? {
            self.api_key(id).await
        } else {
            Err(StoreError::ApiKeyNotFound(id.to_string()))
        }
    }

    /// Stamps `last_used_at` on key `id`, unless it was stamped within
    /// [`LAST_USED_PRECISION_MS`].
    pub async fn touch_api_key(&self, id: &str) -> Result<()> {
        let now = self.now_ms();
        dispatch!(self, b => b.touch_api_key(id, now, LAST_USED_PRECISION_MS).await)
    }

    /// Whether any key in the database still works (then requests must
    /// authenticate, whatever the config says).
    pub async fn any_active_api_key(&self) -> Result<bool> {
        let now = self.now_ms();
        dispatch!(self, b => b.any_active_api_key(now).await)
    }

    /// Charges every bucket of `takes`, or none: the buckets' rows are
    /// locked (PostgreSQL, in subject order) or the write lock held
    /// (SQLite) while they are read and written, so API replicas sharing
    /// the database share each bucket exactly.
    pub async fn take_rate(&self, takes: &[RateTake]) -> Result<RateDecision> {
        if takes.is_empty() {
            return Ok(RateDecision {
                admitted: true,
                states: Vec::new(),
            });
        }
        let now_us = self.now_ms().saturating_mul(1000);
        let (admitted, states) = dispatch!(self, b => b.take_rate(takes, now_us).await)?;
        Ok(RateDecision { admitted, states })
    }

    /// Jobs queued or running in `project`, and those of them that `user`
    /// submitted.
    pub async fn active_jobs(&self, project: &ProjectId, user: Option<&str>) -> Result<(u64, u64)> {
        dispatch!(self, b => b.active_jobs(project.as_str(), user).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(subject: &str, limit: u64, cost: u64) -> RateTake {
        RateTake {
            subject: subject.into(),
            limit,
            cost,
        }
    }

    #[test]
    fn a_refusal_by_one_bucket_charges_none() {
        let takes = [take("a", 10, 1), take("b", 2, 3)];
        let (new, states) = decide(&takes, &[None, None], 0);
        assert!(new.is_none());
        assert_eq!(states[0].remaining, 10, "untouched bucket keeps its room");
        assert_eq!(states[1].remaining, 2);
        assert!(states[1].retry_after_us > 0);
        let (new, states) = decide(&takes[..1], &[None], 0);
        assert_eq!(new.unwrap().len(), 1);
        assert_eq!(states[0].remaining, 9);
    }
}
