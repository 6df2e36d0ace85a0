//! Quotas and budgets at the edge: a generation whose images would pass
//! the project's daily or monthly image quota, or whose estimated cost
//! (the model's mean cost per image, times the images requested and
//! already queued) would pass its monthly budget, is refused with 429
//! `insufficient_quota` (OpenAI's code), and the project's queued batch
//! jobs are held (`budget_exhausted`) until the limit is raised or a new
//! period starts. Passing the soft limit (`soft_limit_percent` of any
//! quota or of the budget, default 80) is audited once per month
//! (`project.soft_limit_reached`) and counted in
//! `easel_quota_soft_limit_total`; it refuses nothing.

use axum::response::{IntoResponse, Response};
use easel_core::GenerationParams;
use easel_core::tenancy::DEFAULT_SOFT_LIMIT_PERCENT;
use easel_store::{AuditQuery, HOLD_BUDGET, NewAuditEvent, Spend};

use crate::auth::{KeyHolder, Principal};
use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;

/// The audit event of a soft limit.
pub const SOFT_LIMIT_EVENT: &str = "project.soft_limit_reached";

/// Checks a generation of `params.n` images against the caller's
/// project's quotas and budget.
pub async fn admit(
    state: &AppState,
    principal: &Principal,
    params: &GenerationParams,
) -> Result<(), Response> {
    let Principal::Key(holder) = principal else {
        return Ok(());
    };
    let limits = &holder.project_limits;
    if !limits.has_budget() {
        return Ok(());
    }
    let db = state.jobs.db();
    let store = |e| ApiError::store("reading the project's spend", e).into_response();
    let spend = db.spend(&holder.project).await.map_err(store)?;
    let mean = if limits.monthly_budget.is_some() {
        db.mean_image_cost(&params.model).await.map_err(store)?
    } else {
        None
    };
    if let Err(over) = spend.admits(limits, u64::from(params.n), mean) {
        if spend.exhausted(limits).is_some()
            && let Err(e) = db.hold_batch_jobs(&holder.project, Some(HOLD_BUDGET)).await
        {
            tracing::warn!(error = %e, project = %holder.project, "could not hold batch jobs");
        }
        tracing::info!(project = %holder.project, limit = over.limit, used = over.used, allowed = over.allowed, "quota refused a request");
        let shown = |v: f64| {
            if over.limit == "monthly_budget" {
                format!("{v:.6}")
            } else {
                format!("{v:.0}")
            }
        };
        return Err(ApiError::new(
            ErrorKind::TooManyRequests,
            "insufficient_quota",
            format!(
                "project `{}` would pass its {} ({} allowed; {} with this request and its queued \
                 jobs); an admin can raise it with PATCH /v1/admin/projects/{}",
                holder.project,
                over.limit,
                shown(over.allowed),
                shown(over.used),
                holder.project
            ),
        )
        .into_response());
    }
    soft_limit(state, holder, &spend).await;
    Ok(())
}

/// Audits (once a month) and counts a project past its soft limit.
async fn soft_limit(state: &AppState, holder: &KeyHolder, spend: &Spend) {
    let limits = &holder.project_limits;
    let percent = limits
        .soft_limit_percent
        .unwrap_or(DEFAULT_SOFT_LIMIT_PERCENT) as f64;
    let used = spend.used_fraction(limits) * 100.0;
    if used < percent {
        return;
    }
    let db = state.jobs.db();
    let (_, month) = easel_store::periods(db.now());
    let seen = db
        .list_audit(&AuditQuery {
            from: Some(month),
            event_type: Some(SOFT_LIMIT_EVENT.into()),
            project: Some(holder.project.clone()),
            limit: Some(1),
            ..AuditQuery::default()
        })
        .await
        .map(|e| !e.is_empty())
        .unwrap_or(true);
    if seen {
        return;
    }
    state.metrics.quota_soft_limit(&holder.metric_project());
    tracing::warn!(project = %holder.project, used_percent = used, soft_limit_percent = percent, "project past its soft limit");
    state
        .jobs
        .append_audit(
            NewAuditEvent::new(SOFT_LIMIT_EVENT)
                .subject(&holder.project)
                .project(&holder.project)
                .detail(serde_json::json!({
                    "used_percent": used,
                    "soft_limit_percent": percent,
                    "images_today": spend.images_today,
                    "images_month": spend.images_month,
                    "cost_month": spend.cost_month,
                })),
        )
        .await;
}
