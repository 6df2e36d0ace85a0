//! Automatic QA of a batch's lines, after their jobs succeed. The
//! pipeline has already scored, moderated and near-copy-checked every
//! image; QA reads those results against the batch's settings:
//! - a line **needs review** when one of its images scores below
//!   `min_quality_score` or carries a flag (`nsfw_flagged`, `near_copy`);
//!   those images go to the human review queue (reason `below_threshold`,
//!   or `flagged`);
//! - a further `review_sample_percent` of the other images, drawn from
//!   each image's id (so every process draws the same), goes to the review
//!   queue as `sampled`, so people see ordinary outputs too.

use easel_store::{BatchRecord, NewReviewItem, QaImage};
use serde::{Deserialize, Serialize};

/// A batch's QA settings, stored with it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct QaSettings {
    /// Images scoring below this need review; `None`: no threshold.
    pub min_quality_score: Option<f64>,
    /// The share (percent) of the other images sent to human review.
    pub review_sample_percent: f64,
}

impl QaSettings {
    /// The settings stored with `batch` (none: no threshold, no sample).
    pub fn of(batch: &BatchRecord) -> QaSettings {
        batch
            .qa
            .as_ref()
            .and_then(|q| serde_json::from_value(q.clone()).ok())
            .unwrap_or_default()
    }
}

/// What QA decided for a page of lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checked {
    /// Each line checked, and whether it needs review.
    pub lines: Vec<(u32, bool)>,
    /// The images to put in the review queue.
    pub review: Vec<NewReviewItem>,
}

/// Checks the images of succeeded lines (as [`easel_store::Db::unchecked_batch_images`]
/// gives them: grouped by line).
pub fn check(batch: &BatchRecord, settings: &QaSettings, images: &[QaImage]) -> Checked {
    let mut checked = Checked::default();
    for image in images {
        let below = match (settings.min_quality_score, image.quality_score) {
            (Some(min), Some(score)) => score < min,
            _ => false,
        };
        let flagged = !image.flags.is_empty();
        let needs_review = image.image_id.is_some() && (below || flagged);
        match checked.lines.last_mut() {
            Some((line, needs)) if *line == image.line => *needs |= needs_review,
            _ => checked.lines.push((image.line, needs_review)),
        }
        let Some(id) = &image.image_id else {
            continue;
        };
        let reason = if flagged {
            "flagged"
        } else if below {
            "below_threshold"
        } else if crate::review::draw(id) < settings.review_sample_percent {
            "sampled"
        } else {
            continue;
        };
        checked.review.push(NewReviewItem {
            image_id: id.clone(),
            job_id: image.job_id.map(|j| j.to_string()).unwrap_or_default(),
            project: batch.project.as_str().to_string(),
            model: image.model.clone().unwrap_or_default(),
            model_version: image.model_version.clone(),
            quality_score: image.quality_score,
            reason,
        });
    }
    checked
}
