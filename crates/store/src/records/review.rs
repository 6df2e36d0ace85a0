//! The human review queue as stored.

use chrono::{DateTime, Utc};

/// An image entering the review queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReviewItem {
    /// The image.
    pub image_id: String,
    /// Its job.
    pub job_id: String,
    /// Its project.
    pub project: String,
    /// Its model (alias).
    pub model: String,
    /// The version that made it.
    pub model_version: Option<String>,
    /// Its quality score, where scored.
    pub quality_score: Option<f64>,
    /// `sampled` or `flagged`.
    pub reason: &'static str,
}

/// A review item.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewItem {
    /// The image.
    pub image_id: String,
    /// Its job.
    pub job_id: String,
    /// Its project.
    pub project: String,
    /// Its model.
    pub model: String,
    /// The version that made it.
    pub model_version: Option<String>,
    /// Its quality score.
    pub quality_score: Option<f64>,
    /// `sampled` or `flagged`.
    pub reason: String,
    /// Who holds it now.
    pub lease_owner: Option<String>,
    /// Until when.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// `good` or `bad`, once reviewed.
    pub verdict: Option<String>,
    /// The verdict's labels.
    pub labels: Vec<String>,
    /// Who reviewed it.
    pub reviewer: Option<String>,
    /// When.
    pub reviewed_at: Option<DateTime<Utc>>,
    /// When it entered the queue.
    pub created_at: DateTime<Utc>,
}

/// Why a verdict was not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictRefusal {
    /// No such item.
    NotFound,
    /// It has a verdict already.
    AlreadyReviewed,
    /// The reviewer does not hold its lease (never leased it, or the lease
    /// ran out and it went to someone else).
    LeaseNotHeld,
}

/// Review counts of one model version: how many items wait, and the
/// verdicts so far.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReviewCounts {
    /// The model.
    pub model: String,
    /// The version (`None`: images from before versions).
    pub model_version: Option<String>,
    /// Items without a verdict.
    pub pending: u64,
    /// `good` verdicts.
    pub good: u64,
    /// `bad` verdicts.
    pub bad: u64,
}
