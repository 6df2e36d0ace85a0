//! Usage: what projects spent, grouped, and where a project stands
//! against its quotas and budget.

use chrono::{DateTime, Utc};
use easel_core::ProjectId;

/// How [`Db::usage`](crate::Db::usage) groups images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    /// By project.
    Project,
    /// By key: `project/key name` (or `project/` for unnamed use).
    Key,
    /// By model name.
    Model,
    /// By UTC day, `YYYY-MM-DD`.
    Day,
}

impl std::str::FromStr for UsageGroup {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "project" => Ok(Self::Project),
            "key" => Ok(Self::Key),
            "model" => Ok(Self::Model),
            "day" => Ok(Self::Day),
            other => Err(format!(
                "group_by must be project, key, model or day, got `{}`",
                other.chars().take(40).collect::<String>()
            )),
        }
    }
}

impl UsageGroup {
    /// The name, as `group_by` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Project => "project",
            Self::Key => "key",
            Self::Model => "model",
            Self::Day => "day",
        }
    }
}

/// Which images [`Db::usage`](crate::Db::usage) counts.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageQuery {
    /// Images made at or after this time.
    pub from: DateTime<Utc>,
    /// Images made before this time.
    pub until: DateTime<Utc>,
    /// Only this project's; `None`: every project's.
    pub project: Option<ProjectId>,
    /// How to group.
    pub group: UsageGroup,
}

/// One group's usage.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    /// The group's name (a project, `project/key`, a model, a day).
    pub group: String,
    /// Images made.
    pub images: u64,
    /// Device seconds they took.
    pub device_seconds: f64,
    /// What they cost.
    pub cost: f64,
}

/// Where a project stands: what it made and spent, and what it has in the
/// queue.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    /// Images made since the start of the UTC day.
    pub images_today: u64,
    /// Images made since the start of the UTC month.
    pub images_month: u64,
    /// Their cost, this month.
    pub cost_month: f64,
    /// Images of its jobs still queued or running (not yet made).
    pub pending_images: u64,
}

/// Which quota a project ran out of, or would with a request.
#[derive(Debug, Clone, PartialEq)]
pub struct OverQuota {
    /// The limit's name: `images_per_day`, `images_per_month` or
    /// `monthly_budget`.
    pub limit: &'static str,
    /// The limit's value.
    pub allowed: f64,
    /// What is used (made, plus queued for the request checks), with the
    /// request.
    pub used: f64,
}

impl Spend {
    /// The first quota `limits` sets that this spend has reached (nothing
    /// more may be made): what the worker holds batch jobs on.
    pub fn exhausted(&self, limits: &easel_core::Limits) -> Option<OverQuota> {
        let checks = [
            (
                "images_per_day",
                limits.images_per_day.map(|q| q as f64),
                self.images_today as f64,
            ),
            (
                "images_per_month",
                limits.images_per_month.map(|q| q as f64),
                self.images_month as f64,
            ),
            ("monthly_budget", limits.monthly_budget, self.cost_month),
        ];
        checks.into_iter().find_map(|(limit, allowed, used)| {
            allowed.filter(|a| used >= *a).map(|allowed| OverQuota {
                limit,
                allowed,
                used,
            })
        })
    }

    /// Whether a request for `n` more images fits, counting the images
    /// already queued and, for the budget, `mean_cost` per image (unknown
    /// before a model's first image: then only the spend so far counts).
    pub fn admits(
        &self,
        limits: &easel_core::Limits,
        n: u64,
        mean_cost: Option<f64>,
    ) -> Result<(), OverQuota> {
        let ahead = self.pending_images + n;
        let images = [
            (
                "images_per_day",
                limits.images_per_day,
                self.images_today + ahead,
            ),
            (
                "images_per_month",
                limits.images_per_month,
                self.images_month + ahead,
            ),
        ];
        for (limit, allowed, used) in images {
            if let Some(allowed) = allowed
                && used > allowed
            {
                return Err(OverQuota {
                    limit,
                    allowed: allowed as f64,
                    used: used as f64,
                });
            }
        }
        if let Some(budget) = limits.monthly_budget {
            let used = self.cost_month + mean_cost.unwrap_or(0.0) * ahead as f64;
            if self.cost_month >= budget || used > budget {
                return Err(OverQuota {
                    limit: "monthly_budget",
                    allowed: budget,
                    used,
                });
            }
        }
        Ok(())
    }

    /// The largest share used of any quota or budget `limits` sets, as a
    /// fraction (what the soft limit compares against).
    pub fn used_fraction(&self, limits: &easel_core::Limits) -> f64 {
        [
            limits
                .images_per_day
                .map(|q| self.images_today as f64 / q as f64),
            limits
                .images_per_month
                .map(|q| self.images_month as f64 / q as f64),
            limits.monthly_budget.map(|b| self.cost_month / b),
        ]
        .into_iter()
        .flatten()
        .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use easel_core::Limits;

    fn spend(today: u64, month: u64, cost: f64, pending: u64) -> Spend {
        Spend {
            images_today: today,
            images_month: month,
            cost_month: cost,
            pending_images: pending,
        }
    }

    #[test]
    fn a_quota_of_five_admits_five_images_counting_the_queue() {
        let limits = Limits {
            images_per_month: Some(5),
            ..Limits::default()
        };
        assert!(spend(0, 0, 0.0, 0).admits(&limits, 5, None).is_ok());
        assert!(spend(0, 3, 0.0, 1).admits(&limits, 1, None).is_ok());
        let over = spend(0, 3, 0.0, 2).admits(&limits, 1, None).unwrap_err();
        assert_eq!(
            (over.limit, over.allowed, over.used),
            ("images_per_month", 5.0, 6.0)
        );
        assert!(spend(0, 5, 0.0, 0).exhausted(&limits).is_some());
        assert!(
            spend(0, 4, 0.0, 9).exhausted(&limits).is_none(),
            "queued work is not spent"
        );
    }

    #[test]
    fn a_budget_refuses_once_spent_or_when_the_estimate_passes_it() {
        let limits = Limits {
            monthly_budget: Some(1.0),
            ..Limits::default()
        };
        assert!(spend(0, 0, 0.5, 0).admits(&limits, 1, Some(0.4)).is_ok());
        assert!(spend(0, 0, 0.5, 1).admits(&limits, 1, Some(0.4)).is_err());
        assert!(spend(0, 0, 1.0, 0).admits(&limits, 1, None).is_err());
        assert_eq!(
            spend(0, 0, 1.2, 0).exhausted(&limits).unwrap().limit,
            "monthly_budget"
        );
        assert!((spend(0, 0, 0.8, 0).used_fraction(&limits) - 0.8).abs() < 1e-12);
    }
}
