//! Projects, API keys and rate-limit buckets.

use chrono::{DateTime, Utc};
use easel_core::{Limits, ProjectId};

/// A project (tenant).
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    /// Its name.
    pub id: ProjectId,
    /// Its rates and caps.
    pub limits: Limits,
    /// Whether it gets its own `project` label on metrics.
    pub billable: bool,
    /// How long its images are kept, in seconds; `None`: forever.
    pub retention_seconds: Option<u64>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A project to create.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewProject {
    /// Its name.
    pub id: ProjectId,
    /// Its rates and caps.
    pub limits: Limits,
    /// Whether it gets its own `project` label on metrics.
    pub billable: bool,
    /// How long its images are kept, in seconds; `None`: forever.
    pub retention_seconds: Option<u64>,
}

/// A change to a project: each `Some` field is set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectChange {
    /// New limits (replacing the old ones whole).
    pub limits: Option<Limits>,
    /// New billable flag.
    pub billable: Option<bool>,
    /// New retention: `Some(None)` keeps images forever.
    pub retention_seconds: Option<Option<u64>>,
}

/// A key to store. The secret itself never reaches the store: only its
/// hash and a short prefix for listings.
#[derive(Debug, Clone, PartialEq)]
pub struct NewApiKey {
    /// `key_…`.
    pub id: String,
    /// The project that owns it.
    pub project: ProjectId,
    /// A label, unique within the project among keys not revoked.
    pub name: String,
    /// `blake3:<hex>` of the secret.
    pub hash: String,
    /// The secret's first characters, for people to tell keys apart.
    pub prefix: String,
    /// Scope names (`generate`, `read`, `admin`, `review`).
    pub scopes: Vec<String>,
    /// The key's own limits, on top of its project's.
    pub limits: Limits,
    /// When it stops working; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A stored key (never its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    /// `key_…`.
    pub id: String,
    /// The project that owns it.
    pub project: ProjectId,
    /// Its label.
    pub name: String,
    /// The secret's first characters.
    pub prefix: String,
    /// Scope names.
    pub scopes: Vec<String>,
    /// The key's own limits.
    pub limits: Limits,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked; `None`: not revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it last authenticated a request (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    /// Whether the key authenticates requests at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| now < t)
    }
}

/// A key found by its hash, with its project's row: what authenticating a
/// request needs, in one query.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyWithProject {
    /// The key.
    pub key: ApiKeyRecord,
    /// Its project.
    pub project: Project,
}

/// One rate-limit bucket to charge: `cost` units against `limit` per
/// minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateTake {
    /// The bucket's name, e.g. `key:key_…:requests`.
    pub subject: String,
    /// Units per minute.
    pub limit: u64,
    /// Units this request takes (1 for a request, `n` for images).
    pub cost: u64,
}

/// The state of one bucket after a [`RateTake`], for the
/// `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    /// Units per minute.
    pub limit: u64,
    /// Units that could still be taken at once.
    pub remaining: u64,
    /// Microseconds until the bucket is full again.
    pub reset_us: i64,
    /// Microseconds until this take would have fitted (0 when admitted).
    pub retry_after_us: i64,
}

/// The generic cell rate algorithm over one-minute windows, as pure
/// arithmetic (the store runs it inside a transaction that locks the
/// bucket's row). A bucket admits `limit` units at once and refills one
/// unit every `60 s / limit`; its only state is the theoretical arrival
/// time `tat`. Admitting `cost` units at `now` needs
/// `max(tat, now) + cost × interval − now ≤ 60 s`.
pub mod gcra {
    use super::RateState;

    /// One minute in microseconds.
    pub const WINDOW_US: i64 = 60_000_000;

    /// Microseconds per unit at `limit` units per minute.
    pub fn interval_us(limit: u64) -> f64 {
        WINDOW_US as f64 / limit.max(1) as f64
    }

    /// The new `tat` if `cost` units fit at `now`, and the bucket's state
    /// either way. `tat` is `None` for a bucket never used.
    pub fn take(tat: Option<i64>, now: i64, limit: u64, cost: u64) -> (Option<i64>, RateState) {
        let interval = interval_us(limit);
        let base = tat.unwrap_or(now).max(now);
        let new_tat = base + (cost as f64 * interval).ceil() as i64;
        let admitted = new_tat - now <= WINDOW_US;
        let held = if admitted { new_tat } else { base };
        let remaining = ((WINDOW_US - (held - now)) as f64 / interval)
            .floor()
            .max(0.0) as u64;
        let state = RateState {
            limit,
            remaining: remaining.min(limit),
            reset_us: (held - now).max(0),
            retry_after_us: if admitted {
                0
            } else {
                (new_tat - now - WINDOW_US).max(1)
            },
        };
        (admitted.then_some(new_tat), state)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_burst_gets_exactly_the_limit() {
            let mut tat = None;
            let mut admitted = 0;
            for _ in 0..50 {
                let (next, state) = take(tat, 1_000, 10, 1);
                if let Some(t) = next {
                    tat = Some(t);
                    admitted += 1;
                    assert_eq!(state.remaining, 10 - admitted);
                } else {
                    assert_eq!(state.remaining, 0);
                    assert!(state.retry_after_us > 0 && state.retry_after_us <= 6_000_000);
                }
            }
            assert_eq!(admitted, 10);
        }

        #[test]
        fn the_bucket_refills_one_unit_per_interval() {
            let mut tat = None;
            for _ in 0..10 {
                tat = take(tat, 0, 10, 1).0.or(tat);
            }
            assert!(take(tat, 5_999_999, 10, 1).0.is_none());
            assert!(take(tat, 6_000_000, 10, 1).0.is_some());
            // A full minute later the whole burst is back.
            let (_, state) = take(tat, 60_000_000, 10, 0);
            assert_eq!(state.remaining, 10);
        }

        #[test]
        fn a_cost_above_the_limit_never_fits() {
            let (next, state) = take(None, 0, 4, 5);
            assert!(next.is_none());
            assert_eq!(state.remaining, 4);
        }
    }
}
