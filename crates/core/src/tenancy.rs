//! Tenancy's plain data: project names and the limits a project or a key
//! carries. Who enforces what lives in the server; these are the values,
//! validated.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::params::ParamError;

/// The longest project name.
pub const MAX_PROJECT_LEN: usize = 64;

/// A project (tenant) name: 1 to 64 characters of lowercase ASCII letters,
/// digits, `-` and `_`, starting with a letter or a digit. Owns keys, jobs,
/// images and audit entries.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProjectId(String);

impl ProjectId {
    /// The project every row belonged to before projects existed, and the
    /// one config-file keys and unauthenticated use map to by default.
    pub const DEFAULT: &'static str = "default";

    /// The project that owns a shadow rollout's jobs and images
    /// (docs/rollouts.md): run on a candidate version next to a user's
    /// request, never shown, returned or billed to that user. It always
    /// exists; no key can be made in it.
    pub const SHADOW: &'static str = "easel-shadow";

    /// The `default` project.
    pub fn default_project() -> Self {
        Self(Self::DEFAULT.to_string())
    }

    /// The shadow project ([`ProjectId::SHADOW`]).
    pub fn shadow() -> Self {
        Self(Self::SHADOW.to_string())
    }

    /// Whether the server keeps this project for itself (no key may act
    /// in it).
    pub fn is_reserved(&self) -> bool {
        self.0 == Self::SHADOW
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ProjectId {
    fn default() -> Self {
        Self::default_project()
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProjectId({})", self.0)
    }
}

impl FromStr for ProjectId {
    type Err = ParamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= MAX_PROJECT_LEN
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(ParamError::new(
                "project",
                "invalid_project",
                format!(
                    "project must be 1 to {MAX_PROJECT_LEN} lowercase letters, digits, `-` or `_`, \
                     starting with a letter or digit; got `{}`",
                    s.chars().take(80).collect::<String>()
                ),
            ))
        }
    }
}

impl TryFrom<String> for ProjectId {
    type Error = ParamError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ProjectId> for String {
    fn from(p: ProjectId) -> String {
        p.0
    }
}

/// The largest value any limit may take: far above any real rate, small
/// enough that the rate arithmetic cannot overflow.
pub const MAX_LIMIT: u64 = 1_000_000_000;

/// Limits of a project or of one key. Every field is optional: absent means
/// not limited here (a key's request still counts against its project's
/// limits, and the other way round).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute to the authenticated API (any route).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Images requested per minute (the `n` of each generation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_per_minute: Option<u64>,
    /// Jobs queued or running at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent_jobs: Option<u64>,
    /// Largest `n` of one request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_n: Option<u64>,
    /// Most denoising steps of one request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
    /// Largest image, in pixels (width × height).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pixels: Option<u64>,
    /// Images per UTC day (a quota, not a rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_per_day: Option<u64>,
    /// Images per UTC calendar month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_per_month: Option<u64>,
    /// Spend per UTC calendar month, in the currency unit of the prices
    /// (`metrics.price_per_device_second`, `metrics.storage_price_per_gb_month`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_budget: Option<f64>,
    /// The share of a quota or budget, in percent (1 to 100), at which an
    /// audit event and a metric warn, without refusing anything. Default 80.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_limit_percent: Option<u64>,
}

/// The soft limit when a project sets none.
pub const DEFAULT_SOFT_LIMIT_PERCENT: u64 = 80;

impl Limits {
    /// Checks every set field is from 1 to [`MAX_LIMIT`]; the error names
    /// the field (as `limits.<field>`) and the range.
    pub fn validate(&self) -> Result<(), ParamError> {
        let fields = [
            ("limits.requests_per_minute", self.requests_per_minute),
            ("limits.images_per_minute", self.images_per_minute),
            ("limits.concurrent_jobs", self.concurrent_jobs),
            ("limits.max_n", self.max_n),
            ("limits.max_steps", self.max_steps),
            ("limits.max_pixels", self.max_pixels),
            ("limits.images_per_day", self.images_per_day),
            ("limits.images_per_month", self.images_per_month),
        ];
        for (field, value) in fields {
            if let Some(v) = value
                && !(1..=MAX_LIMIT).contains(&v)
            {
                return Err(ParamError::new(
                    field,
                    "invalid_limit",
                    format!(
                        "{field} must be from 1 to {MAX_LIMIT} (omit it for no limit), got {v}"
                    ),
                ));
            }
        }
        if let Some(b) = self.monthly_budget
            && !(b.is_finite() && b > 0.0)
        {
            return Err(ParamError::new(
                "limits.monthly_budget",
                "invalid_limit",
                format!("limits.monthly_budget must be a finite amount above 0, got {b}"),
            ));
        }
        if let Some(p) = self.soft_limit_percent
            && !(1..=100).contains(&p)
        {
            return Err(ParamError::new(
                "limits.soft_limit_percent",
                "invalid_limit",
                format!("limits.soft_limit_percent must be from 1 to 100, got {p}"),
            ));
        }
        Ok(())
    }

    /// Whether a quota or a budget is set (then spend is tracked).
    pub fn has_budget(&self) -> bool {
        self.images_per_day.is_some()
            || self.images_per_month.is_some()
            || self.monthly_budget.is_some()
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `self`, with each unset field taken from `fallback`.
    pub fn or(&self, fallback: &Limits) -> Limits {
        Limits {
            requests_per_minute: self.requests_per_minute.or(fallback.requests_per_minute),
            images_per_minute: self.images_per_minute.or(fallback.images_per_minute),
            concurrent_jobs: self.concurrent_jobs.or(fallback.concurrent_jobs),
            max_n: self.max_n.or(fallback.max_n),
            max_steps: self.max_steps.or(fallback.max_steps),
            max_pixels: self.max_pixels.or(fallback.max_pixels),
            images_per_day: self.images_per_day.or(fallback.images_per_day),
            images_per_month: self.images_per_month.or(fallback.images_per_month),
            monthly_budget: self.monthly_budget.or(fallback.monthly_budget),
            soft_limit_percent: self.soft_limit_percent.or(fallback.soft_limit_percent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_slugs() {
        for good in ["default", "acme", "a", "team-7_x", &"a".repeat(64)] {
            assert!(good.parse::<ProjectId>().is_ok(), "{good}");
        }
        for bad in ["", "Acme", "-x", "_x", "a b", "a/b", &"a".repeat(65), "é"] {
            let e = bad.parse::<ProjectId>().unwrap_err();
            assert_eq!(e.code, "invalid_project");
            assert_eq!(e.field, "project");
        }
    }

    #[test]
    fn limits_name_the_bad_field() {
        let l: Limits = serde_json::from_str(r#"{"max_n": 0}"#).unwrap();
        let e = l.validate().unwrap_err();
        assert_eq!(e.field, "limits.max_n");
        assert!(e.message.contains("from 1 to"));
        assert!(serde_json::from_str::<Limits>(r#"{"max_m": 3}"#).is_err());
        let l: Limits = serde_json::from_str(r#"{"monthly_budget": -1}"#).unwrap();
        assert_eq!(l.validate().unwrap_err().field, "limits.monthly_budget");
        let l: Limits = serde_json::from_str(r#"{"soft_limit_percent": 101}"#).unwrap();
        assert_eq!(l.validate().unwrap_err().field, "limits.soft_limit_percent");
        let ok: Limits = serde_json::from_str(r#"{"requests_per_minute": 10}"#).unwrap();
        ok.validate().unwrap();
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"requests_per_minute":10}"#
        );
    }

    #[test]
    fn a_key_limit_falls_back_to_the_default() {
        let key = Limits {
            max_n: Some(2),
            ..Limits::default()
        };
        let default = Limits {
            max_n: Some(4),
            max_steps: Some(30),
            ..Limits::default()
        };
        let merged = key.or(&default);
        assert_eq!(merged.max_n, Some(2));
        assert_eq!(merged.max_steps, Some(30));
    }
}
