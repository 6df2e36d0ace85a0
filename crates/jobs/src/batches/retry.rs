//! Bounded retries of a batch's lines: a line whose job failed for a
//! reason that may pass (an engine or storage fault, a deadline, a model
//! that could not load) is made again, up to the configured number of
//! attempts, and every failed attempt's reason is kept with the line. A
//! refusal (the content policy, a bad input image) is final at once: the
//! same request would fail the same way and cost the same again.

use easel_core::JobId;
use easel_store::{ItemOutcome, ItemStatus};
use serde_json::{Value, json};

/// Job error codes worth another attempt.
pub const RETRYABLE: &[&str] = &[
    "engine_error",
    "engine_panic",
    "model_failed",
    "model_io_error",
    "model_not_ready",
    "candidate_load_failed",
    "memory_budget_exceeded",
    "storage_failed",
    "deadline_exceeded",
    "internal_error",
];

/// Whether a line whose job ended with `outcome` after `attempts` jobs
/// gets another, with at most `max_attempts` in all.
pub fn should_retry(outcome: &ItemOutcome, attempts: u32, max_attempts: u32) -> bool {
    outcome.status == ItemStatus::Failed
        && attempts < max_attempts
        && outcome
            .error_code
            .as_deref()
            .is_some_and(|c| RETRYABLE.contains(&c))
}

/// The line's list of retried attempts with this one added.
pub fn record(
    retries: Option<&Value>,
    attempt: u32,
    job_id: Option<JobId>,
    outcome: &ItemOutcome,
) -> Value {
    let mut list = retries
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    list.push(json!({
        "attempt": attempt,
        "job_id": job_id.map(|j| j.to_string()),
        "code": outcome.error_code,
        "message": outcome.error_message,
    }));
    Value::Array(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(code: &str) -> ItemOutcome {
        ItemOutcome {
            line: 3,
            status: ItemStatus::Failed,
            error_code: Some(code.into()),
            error_message: Some(format!("it failed: {code}")),
        }
    }

    #[test]
    fn transient_failures_are_retried_up_to_the_bound() {
        assert!(should_retry(&failed("engine_error"), 1, 3));
        assert!(should_retry(&failed("storage_failed"), 2, 3));
        assert!(!should_retry(&failed("storage_failed"), 3, 3));
        assert!(!should_retry(&failed("engine_error"), 1, 1));
    }

    #[test]
    fn refusals_and_successes_are_final() {
        assert!(!should_retry(&failed("content_blocked"), 1, 3));
        assert!(!should_retry(&failed("invalid_image"), 1, 3));
        let ok = ItemOutcome {
            status: ItemStatus::Succeeded,
            error_code: None,
            ..failed("x")
        };
        assert!(!should_retry(&ok, 1, 3));
        let cancelled = ItemOutcome {
            status: ItemStatus::Cancelled,
            ..failed("engine_error")
        };
        assert!(!should_retry(&cancelled, 1, 3));
    }

    #[test]
    fn every_retried_attempt_keeps_its_reason() {
        let first = record(None, 1, None, &failed("engine_error"));
        let both = record(Some(&first), 2, None, &failed("storage_failed"));
        let list = both.as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["attempt"], 1);
        assert_eq!(list[0]["code"], "engine_error");
        assert_eq!(list[1]["code"], "storage_failed");
        assert_eq!(list[1]["message"], "it failed: storage_failed");
    }
}
