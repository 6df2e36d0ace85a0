//! What a recorded review verdict changes besides the store: the verdict
//! counter per model version, and the score's agreement with the
//! verdicts (the ROC AUC of `easel_jobs::review::auc`) per model.

use easel_store::ReviewItem;

use crate::state::AppState;

/// Counts `item`'s verdict and recomputes its model's score agreement.
pub async fn count_verdict(state: &AppState, item: &ReviewItem) {
    let Some(verdict) = item.verdict.as_deref() else {
        return;
    };
    state
        .metrics
        .review_verdict(&item.model, item.model_version.as_deref(), verdict);
    match state.jobs.db().reviewed_scores(&item.model).await {
        Ok(scored) => {
            if let Some(auc) = easel_jobs::review::auc(&scored) {
                state.metrics.review_score_agreement(&item.model, auc);
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read the reviewed scores"),
    }
}
