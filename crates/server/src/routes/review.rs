//! Human review (scope `review`; admin keys have it too): the next image
//! to review, leased to the caller so no other reviewer gets it, a
//! verdict on it, and the counts. Which images enter the queue is decided
//! when they are stored (`easel_jobs::review`: every flagged image and a
//! sampled share). A reviewer key sees its project's items; an admin key
//! every project's.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use easel_store::{ReviewItem, VerdictRefusal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorKind};
use crate::extract::{ApiJson, PathId};
use crate::state::AppState;

/// How long a reviewer holds an item before another may take it.
pub const LEASE_SECONDS: i64 = 300;

/// Labels a verdict may carry.
pub const LABELS: [&str; 6] = [
    "off_prompt",
    "artifact",
    "unsafe",
    "copyright",
    "low_quality",
    "other",
];

/// An item of the review queue.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewItemObject {
    /// The image's id.
    pub image_id: String,
    /// Always `review_item`.
    pub object: String,
    /// Its job.
    pub job_id: String,
    /// Its project.
    pub project: String,
    /// Its prompt.
    pub prompt: Option<String>,
    /// The model and the version that made it.
    pub model: String,
    /// The version's content hash.
    pub model_version: Option<String>,
    /// The automatic quality score.
    pub quality_score: Option<f64>,
    /// `sampled` or `flagged`.
    pub reason: String,
    /// The image's flags (`nsfw_flagged`, `near_copy`, …).
    pub flags: Vec<String>,
    /// A signed link to the image bytes.
    pub url: Option<String>,
    /// Until when the caller holds it (Unix seconds), while pending.
    pub lease_expires_at: Option<i64>,
    /// `good` or `bad`, once reviewed.
    pub verdict: Option<String>,
    /// The verdict's labels.
    pub labels: Vec<String>,
    /// Who reviewed it.
    pub reviewer: Option<String>,
}

async fn item_object(
    state: &AppState,
    item: ReviewItem,
    headers: &HeaderMap,
) -> Result<ReviewItemObject, ApiError> {
    let image = match item.image_id.parse::<easel_core::ImageId>() {
        Ok(id) => state.jobs.image(id).await?,
        Err(_) => None,
    };
    let url = match &image {
        Some(image) => Some(state.image_url(image, headers).await?),
        None => None,
    };
    Ok(ReviewItemObject {
        object: "review_item".into(),
        job_id: item.job_id,
        project: item.project,
        prompt: image.as_ref().map(|i| i.prompt.clone()),
        model: item.model,
        model_version: item.model_version,
        quality_score: item.quality_score,
        reason: item.reason,
        flags: image.as_ref().map(|i| i.flags.clone()).unwrap_or_default(),
        url,
        lease_expires_at: item.lease_expires_at.map(|t| t.timestamp()),
        verdict: item.verdict,
        labels: item.labels,
        reviewer: item.reviewer,
        image_id: item.image_id,
    })
}

/// 403 unless the principal may review.
fn require_review(principal: &Principal) -> Result<(), ApiError> {
    if principal.allows(crate::auth::Scope::Review) {
        Ok(())
    } else {
        Err(crate::extract::missing_scope(
            principal,
            crate::auth::Scope::Review,
        ))
    }
}

/// The next image to review, leased to the caller for 5 minutes (the one
/// it holds already, if any); 204 when the queue is empty.
#[utoipa::path(
    get,
    path = "/v1/review/next",
    tag = "review",
    responses(
        (status = 200, description = "Leased to the caller", body = ReviewItemObject),
        (status = 204, description = "Nothing to review"),
        (status = 403, description = "`missing_scope`: the key lacks the review scope", body = crate::error::ErrorBody),
    )
)]
pub async fn next_item(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_review(&principal)?;
    let project = principal.listing_scope();
    let leased = state
        .jobs
        .db()
        .lease_review(
            principal.name(),
            project.as_ref().map(|p| p.as_str()),
            LEASE_SECONDS * 1000,
        )
        .await
        .map_err(|e| ApiError::store("leasing a review item", e))?;
    match leased {
        Some(item) => Ok(Json(item_object(&state, item, &headers).await?).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// The body of `POST /v1/review/{image_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerdictBody {
    /// `good` or `bad`.
    pub verdict: String,
    /// Optional labels: `off_prompt`, `artifact`, `unsafe`, `copyright`,
    /// `low_quality`, `other`.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// Records the caller's verdict on an item it holds.
#[utoipa::path(
    post,
    path = "/v1/review/{image_id}",
    tag = "review",
    params(("image_id" = String, Path, description = "The image, `img_…`")),
    request_body = VerdictBody,
    responses(
        (status = 200, description = "Recorded", body = ReviewItemObject),
        (status = 400, description = "`invalid_verdict`, `invalid_label`", body = crate::error::ErrorBody),
        (status = 404, description = "`review_item_not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`already_reviewed`, `lease_not_held`", body = crate::error::ErrorBody),
    )
)]
pub async fn record_verdict(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    PathId(id): PathId,
    ApiJson(body): ApiJson<VerdictBody>,
) -> Result<Json<ReviewItemObject>, ApiError> {
    require_review(&principal)?;
    if body.verdict != "good" && body.verdict != "bad" {
        return Err(ApiError::invalid(
            "invalid_verdict",
            "verdict",
            format!(
                "verdict must be `good` or `bad`, got `{}`",
                body.verdict.chars().take(40).collect::<String>()
            ),
        ));
    }
    if body.labels.len() > LABELS.len() {
        return Err(ApiError::invalid(
            "invalid_label",
            "labels",
            format!("at most {} labels", LABELS.len()),
        ));
    }
    if let Some(bad) = body.labels.iter().find(|l| !LABELS.contains(&l.as_str())) {
        return Err(ApiError::invalid(
            "invalid_label",
            "labels",
            format!(
                "unknown label `{}`; labels are {}",
                bad.chars().take(40).collect::<String>(),
                LABELS.join(", ")
            ),
        ));
    }
    let db = state.jobs.db();
    let not_found = || {
        ApiError::new(
            ErrorKind::NotFound,
            "review_item_not_found",
            format!(
                "image `{}` is not in the review queue",
                id.chars().take(80).collect::<String>()
            ),
        )
    };
    // Another project's item is unknown to a reviewer of this one.
    match db
        .review_item(&id)
        .await
        .map_err(|e| ApiError::store("reading a review item", e))?
    {
        Some(item)
            if item
                .project
                .parse::<easel_core::ProjectId>()
                .is_ok_and(|p| principal.sees(&p)) => {}
        _ => return Err(not_found()),
    }
    let outcome = db
        .record_verdict(&id, principal.name(), &body.verdict, &body.labels)
        .await
        .map_err(|e| ApiError::store("recording a verdict", e))?;
    let item = match outcome {
        Ok(item) => item,
        Err(VerdictRefusal::NotFound) => return Err(not_found()),
        Err(VerdictRefusal::AlreadyReviewed) => {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                "already_reviewed",
                format!("image `{id}` has a verdict already"),
            ));
        }
        Err(VerdictRefusal::LeaseNotHeld) => {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                "lease_not_held",
                format!(
                    "image `{id}` is not leased to `{}` (take items with GET /v1/review/next; a lease lasts {LEASE_SECONDS} s)",
                    principal.name()
                ),
            ));
        }
    };
    crate::review::count_verdict(&state, &item).await;
    Ok(Json(item_object(&state, item, &headers).await?))
}

/// Review counts per model version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionReview {
    /// The model.
    pub model: String,
    /// The version's content hash.
    pub model_version: Option<String>,
    /// Items waiting for a verdict.
    pub pending: u64,
    /// `good` verdicts.
    pub good: u64,
    /// `bad` verdicts.
    pub bad: u64,
    /// good / (good + bad).
    pub approval_rate: Option<f64>,
}

/// The review queue's figures.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewStats {
    /// Always `review_stats`.
    pub object: String,
    /// Per model version.
    pub versions: Vec<VersionReview>,
    /// Per model: how well the quality score predicts the verdict (area
    /// under the ROC curve of the score for `good`; 0.5 = no better than
    /// chance), where both verdicts exist.
    #[schema(value_type = Object)]
    pub score_agreement: std::collections::BTreeMap<String, f64>,
    /// The caller's own verdicts.
    pub mine: ReviewerCounts,
}

/// One reviewer's verdicts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewerCounts {
    /// `good` verdicts.
    pub good: u64,
    /// `bad` verdicts.
    pub bad: u64,
}

/// Pending items, verdicts and approval rate per model version, the
/// score's agreement with the verdicts, and the caller's own counts.
#[utoipa::path(
    get,
    path = "/v1/review/stats",
    tag = "review",
    responses((status = 200, description = "Figures", body = ReviewStats))
)]
pub async fn review_stats(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<ReviewStats>, ApiError> {
    require_review(&principal)?;
    let db = state.jobs.db();
    let project = principal.listing_scope();
    let counts = db
        .review_counts(project.as_ref().map(|p| p.as_str()))
        .await
        .map_err(|e| ApiError::store("counting reviews", e))?;
    let mut score_agreement = std::collections::BTreeMap::new();
    for model in counts
        .iter()
        .map(|c| c.model.clone())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let scored = db
            .reviewed_scores(&model)
            .await
            .map_err(|e| ApiError::store("reading reviewed scores", e))?;
        if let Some(auc) = easel_jobs::review::auc(&scored) {
            score_agreement.insert(model, auc);
        }
    }
    let (good, bad) = db
        .reviewer_counts(principal.name())
        .await
        .map_err(|e| ApiError::store("counting reviews", e))?;
    Ok(Json(ReviewStats {
        object: "review_stats".into(),
        versions: counts
            .into_iter()
            .map(|c| VersionReview {
                approval_rate: (c.good + c.bad > 0)
                    .then(|| c.good as f64 / (c.good + c.bad) as f64),
                model: c.model,
                model_version: c.model_version,
                pending: c.pending,
                good: c.good,
                bad: c.bad,
            })
            .collect(),
        score_agreement,
        mine: ReviewerCounts { good, bad },
    }))
}
