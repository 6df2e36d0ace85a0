//! The prompt policy at the edge: a prompt is checked before its job is
//! stored, blocks and flags are audited and counted. The policy itself is
//! built from `[moderation]` by `easel_config::build::prompt_policy`.

use easel_policy::Action;
use easel_policy::prompt::PromptDecision;
use easel_store::NewAuditEvent;
use easel_telemetry::metrics::{ModerationAction, ModerationStage};

use crate::auth::Principal;
use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;

/// Checks a prompt against the policy. A block answers 400
/// `prompt_rejected` naming only the category (never the matched rule or
/// text) and is written to the audit log; a flag is audited too. Returns
/// the decision to record on the job (`None` when the policy is off).
pub async fn check_prompt(
    state: &AppState,
    principal: &Principal,
    user: Option<&str>,
    prompt: &str,
) -> Result<Option<serde_json::Value>, ApiError> {
    let actor = user
        .map(str::to_string)
        .unwrap_or_else(|| principal.name().to_string());
    check_prompt_as(state, actor, prompt).await
}

/// [`check_prompt`] for a request made by `actor` (a key's or user's
/// name, as the audit log records it), such as a batch's request line.
pub async fn check_prompt_as(
    state: &AppState,
    actor: String,
    prompt: &str,
) -> Result<Option<serde_json::Value>, ApiError> {
    let Some(policy) = state.prompt_policy.clone() else {
        return Ok(None);
    };
    let text = prompt.to_string();
    let decision: PromptDecision = tokio::task::spawn_blocking(move || policy.check(&text))
        .await
        .map_err(|e| ApiError::internal("checking the prompt policy", e))?
        .map_err(|e| {
            tracing::error!(error = %e, code = e.code(), "the prompt policy failed");
            ApiError::new(
                ErrorKind::Unavailable,
                "policy_unavailable",
                "the prompt policy could not be evaluated; try again",
            )
        })?;
    if let (Some(drift), Some(embedding)) = (&state.drift, &decision.embedding) {
        drift.observe(prompt, embedding);
    }
    let value = serde_json::to_value(&decision).unwrap_or_default();
    let category = decision
        .category
        .clone()
        .unwrap_or_else(|| "unspecified".into());
    let (event, action) = match decision.action {
        Action::Allow => (None, ModerationAction::Allow),
        Action::Flag => (Some("moderation.prompt_flagged"), ModerationAction::Flag),
        Action::Block => (Some("moderation.prompt_blocked"), ModerationAction::Block),
    };
    state.metrics.moderation(ModerationStage::Prompt, action);
    if let Some(event) = event {
        let entry = NewAuditEvent::new(event)
            .actor(actor)
            .detail(serde_json::json!({
                "decision": value,
                "prompt_blake3": blake3::hash(prompt.as_bytes()).to_hex().to_string(),
            }));
        state.jobs.append_audit(entry).await;
    }
    if decision.action == Action::Block {
        return Err(ApiError::invalid(
            "prompt_rejected",
            "prompt",
            format!(
                "the prompt was rejected by this server's content policy (category: {category})"
            ),
        ));
    }
    Ok(Some(value))
}
