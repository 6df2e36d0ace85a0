//! User batches (docs/batches.md): many requests submitted at once, made
//! as ordinary batch-tier jobs, with their results gathered into files.
//!
//! The server validates every request line when the batch is created and
//! stores each as an [`ItemRequest`]; from then on the [`BatchDriver`]
//! does the rest, on a timer, in every API process:
//! - **feeds** each batch's pending items to the queue, at most
//!   `window` in flight per batch, so one batch never fills the batch
//!   tier and several batches share the workers; each item's job carries
//!   the idempotency key `batch:{id}:{line}`, so a process that dies
//!   between submitting a job and recording it submits the same job again
//!   instead of a second one;
//! - **settles** items whose jobs ended, and keeps the batch's counts; a
//!   line whose job failed for a passing reason is made again, up to
//!   `max_attempts` jobs ([`retry`]);
//! - **checks** the images of succeeded lines ([`qa`]): a score below the
//!   batch's threshold or a flag marks the line `needs_review`, and those
//!   images and a sample of the others go to the human review queue;
//! - **finishes** a batch when no item is open: completed, cancelled (a
//!   cancel closes pending items and cancels running jobs) or expired
//!   (past its completion window), with its output and error files;
//! - **delivers** the completion webhook of finished batches, retried
//!   with backoff ([`webhook`]).
//!
//! What the driver cannot know (whether the content policy admits a
//! prompt, what an output file looks like) it asks the server through
//! [`BatchHooks`]. All state is in the database and every transition is
//! conditional, so a restart resumes where it stopped and several
//! processes may drive the same batches.

pub mod qa;
pub mod retry;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use easel_core::{GenerationParams, OutputOptions, Tier};
use easel_store::{BatchRecord, BatchStatus, ItemOutcome, ItemStatus, NewFile};

pub use qa::QaSettings;
use serde::{Deserialize, Serialize};

use crate::error::JobError;
use crate::handle::{Jobs, NewJob};

/// One validated request line, as stored with its item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRequest {
    /// What to make.
    pub params: GenerationParams,
    /// How to deliver it.
    pub output: OutputOptions,
    /// The line's `user` (OpenAI's end-user id), recorded on its job;
    /// absent in items stored before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<String>,
}

/// What a batch is expected to cost, made when it is created from the
/// recent images of its models (stored with the batch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Request lines.
    pub requests: u64,
    /// Images they make.
    pub images: u64,
    /// Device time, in seconds (`None` while a model has made no image
    /// to measure).
    pub device_seconds: Option<f64>,
    /// Cost, in the configured currency.
    pub cost: Option<f64>,
    /// The mean cost of one line.
    pub cost_per_request: Option<f64>,
    /// Seconds until done at the measured rate, on the workers alive now.
    pub eta_seconds: Option<f64>,
    /// What it is based on, for people (`"the last 200 images of …"`).
    pub basis: String,
}

/// Why the server refused an item when it came to be submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The HTTP status the request would have had on its own.
    pub status: u16,
    /// The stable error code.
    pub code: String,
    /// For people.
    pub message: String,
}

/// A boxed future, for [`BatchHooks`]' object-safe methods.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A finished batch's output and error files (`None` for a file with no
/// line).
pub type OutputFiles = (Option<NewFile>, Option<NewFile>);

/// What the driver asks the server.
pub trait BatchHooks: Send + Sync + 'static {
    /// Admits one item as the batch's owner would be admitted for the
    /// same request (the prompt policy): the policy decision to store
    /// with the job, or why it is refused.
    fn admit<'a>(
        &'a self,
        batch: &'a BatchRecord,
        request: &'a ItemRequest,
    ) -> HookFuture<'a, Result<Option<serde_json::Value>, Refusal>>;

    /// The output and error files of a batch whose items are all done
    /// (`None` for a file with no line), or why they cannot be made now
    /// (the batch stays `finalizing` and is tried again).
    fn output_files<'a>(
        &'a self,
        batch: &'a BatchRecord,
    ) -> HookFuture<'a, Result<OutputFiles, String>>;

    /// Sends a finished batch's completion webhook once, or says why it
    /// was not delivered (the driver tries again later).
    fn notify<'a>(&'a self, batch: &'a BatchRecord) -> HookFuture<'a, Result<(), String>>;
}

/// How the driver runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverSettings {
    /// Jobs in flight (queued or running) per batch.
    pub window: u32,
    /// How often it looks at the open batches.
    pub interval: Duration,
    /// Jobs made for one line at most (1: no retry).
    pub max_attempts: u32,
    /// Tries of a completion webhook at most.
    pub webhook_attempts: u32,
    /// The wait after a webhook's first failed try; it doubles after each.
    pub webhook_backoff: Duration,
    /// How long one try may take (no other process tries meanwhile).
    pub webhook_timeout: Duration,
}

impl Default for DriverSettings {
    fn default() -> Self {
        DriverSettings {
            window: 64,
            interval: Duration::from_secs(1),
            max_attempts: 3,
            webhook_attempts: 8,
            webhook_backoff: Duration::from_secs(10),
            webhook_timeout: Duration::from_secs(10),
        }
    }
}

/// Items read per page while feeding.
const FEED_PAGE: u32 = 256;

/// Webhooks sent per pass at most.
const WEBHOOKS_PER_PASS: u32 = 32;

/// The error code and message of items closed by a cancel or an expiry.
const CANCELLED: (&str, &str) = (
    "batch_cancelled",
    "the batch was cancelled before this request ran",
);
const CANCELLED_RUNNING: &str = "the batch was cancelled while this request was queued or running";
const EXPIRED: (&str, &str) = (
    "batch_expired",
    "the batch's completion window ended before this request ran",
);

/// The code an item refused by the job system fails with.
fn refusal_code(e: &JobError) -> &'static str {
    match e {
        JobError::Model(_) => "model_not_found",
        JobError::Param(_) => "invalid_request",
        JobError::IdempotencyConflict => "idempotency_conflict",
        _ => "internal_error",
    }
}

/// The idempotency key of an item's job: `batch:{id}:{line}` for its
/// first attempt, with `:{attempt}` after it for a retry.
pub fn item_key(batch_id: &str, line: u32, attempt: u32) -> String {
    if attempt <= 1 {
        format!("batch:{batch_id}:{line}")
    } else {
        format!("batch:{batch_id}:{line}:{attempt}")
    }
}

/// Drives open batches; see the module overview.
pub struct BatchDriver {
    jobs: Jobs,
    hooks: Box<dyn BatchHooks>,
    settings: DriverSettings,
}

impl BatchDriver {
    /// A driver over `jobs`.
    pub fn new(jobs: Jobs, hooks: Box<dyn BatchHooks>, settings: DriverSettings) -> BatchDriver {
        BatchDriver {
            jobs,
            hooks,
            settings,
        }
    }

    /// Runs [`BatchDriver::tick`] every interval until the task is
    /// aborted.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(self.settings.interval);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                timer.tick().await;
                if let Err(e) = self.tick().await {
                    tracing::warn!(error = %e, "driving batches failed; retrying at the next tick");
                }
            }
        })
    }

    /// One pass over every open batch.
    pub async fn tick(&self) -> Result<(), JobError> {
        let db = self.jobs.db();
        for batch in db.open_batches().await.map_err(JobError::Store)? {
            if let Err(e) = self.drive(&batch).await {
                tracing::warn!(batch = %batch.id, error = %e, "driving a batch failed");
            }
        }
        self.deliver_webhooks().await
    }

    /// Sends the due completion webhooks, concurrently.
    async fn deliver_webhooks(&self) -> Result<(), JobError> {
        let db = self.jobs.db();
        let due = db
            .due_webhooks(WEBHOOKS_PER_PASS)
            .await
            .map_err(JobError::Store)?;
        let sends = due.iter().map(|id| self.deliver_webhook(id));
        for result in futures::future::join_all(sends).await {
            if let Err(e) = result {
                tracing::warn!(error = %e, "delivering a batch webhook failed");
            }
        }
        Ok(())
    }

    async fn deliver_webhook(&self, id: &str) -> Result<(), JobError> {
        let db = self.jobs.db();
        let Some(batch) = db.batch(id).await.map_err(JobError::Store)? else {
            return Ok(());
        };
        let Some(hook) = &batch.webhook else {
            return Ok(());
        };
        let lease = self.settings.webhook_timeout + Duration::from_secs(5);
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        if !db
            .claim_webhook(id, hook.attempts, lease_ms)
            .await
            .map_err(JobError::Store)?
        {
            return Ok(());
        }
        match self.hooks.notify(&batch).await {
            Ok(()) => {
                tracing::info!(batch = %id, attempt = hook.attempts + 1, "batch webhook delivered");
                db.webhook_delivered(id).await.map_err(JobError::Store)
            }
            Err(e) => {
                let failed = hook.attempts + 1;
                let wait = webhook::next_try(
                    failed,
                    self.settings.webhook_attempts,
                    self.settings.webhook_backoff,
                );
                let retry_at = wait.map(|w| {
                    db.now() + chrono::Duration::from_std(w).unwrap_or(chrono::Duration::MAX)
                });
                tracing::warn!(batch = %id, attempt = failed, error = %e, retry = retry_at.is_some(),
                    "batch webhook not delivered");
                db.webhook_failed(id, &e, retry_at)
                    .await
                    .map_err(JobError::Store)
            }
        }
    }

    async fn drive(&self, batch: &BatchRecord) -> Result<(), JobError> {
        let db = self.jobs.db();
        let expired = db.now() >= batch.expires_at;
        // Settle first, so the window counts the jobs still in flight.
        self.settle(batch).await?;
        self.check_quality(batch).await?;
        match batch.status {
            BatchStatus::InProgress
            | BatchStatus::AwaitingApproval
            | BatchStatus::PausedBudget
            | BatchStatus::Paused
                if expired =>
            {
                let (code, message) = EXPIRED;
                db.close_pending_items(&batch.id, ItemStatus::Expired, code, message)
                    .await
                    .map_err(JobError::Store)?;
            }
            BatchStatus::InProgress => self.feed(batch).await?,
            BatchStatus::Cancelling => {
                let (code, message) = CANCELLED;
                db.close_pending_items(&batch.id, ItemStatus::Cancelled, code, message)
                    .await
                    .map_err(JobError::Store)?;
                self.cancel_running(batch).await?;
            }
            _ => {}
        }
        if batch.status == BatchStatus::Cancelling {
            // What the cancel stopped just now.
            self.settle(batch).await?;
            self.check_quality(batch).await?;
        }
        let open = db
            .count_batch_items(&batch.id, ItemStatus::Pending)
            .await
            .map_err(JobError::Store)?
            + db.count_batch_items(&batch.id, ItemStatus::Submitted)
                .await
                .map_err(JobError::Store)?;
        if open == 0 {
            self.finish(batch, expired).await?;
        }
        Ok(())
    }

    /// Submits pending items until `window` are in flight, the dry run's
    /// sample only until the rest is approved, and no more than the cost
    /// cap allows; stops a dry run whose sample is done, and pauses a
    /// batch at its cap.
    async fn feed(&self, batch: &BatchRecord) -> Result<(), JobError> {
        let db = self.jobs.db();
        let sampling = batch.sampling();
        if sampling
            && db
                .open_sample_items(&batch.id)
                .await
                .map_err(JobError::Store)?
                == 0
        {
            if db
                .await_batch_approval(&batch.id)
                .await
                .map_err(JobError::Store)?
                .is_some()
            {
                tracing::info!(batch = %batch.id, "dry run done; waiting for approval");
            }
            return Ok(());
        }
        let in_flight = db
            .count_batch_items(&batch.id, ItemStatus::Submitted)
            .await
            .map_err(JobError::Store)?;
        let mut room = u64::from(self.settings.window).saturating_sub(in_flight);
        if room == 0 {
            return Ok(());
        }
        if let Some(cap) = batch.cost_cap {
            let allowed = self.allowed_by_cap(batch, cap, in_flight).await?;
            if allowed == 0 {
                let pending = db
                    .pending_batch_items(&batch.id, sampling, 1)
                    .await
                    .map_err(JobError::Store)?;
                if in_flight == 0
                    && !pending.is_empty()
                    && db
                        .pause_batch(&batch.id)
                        .await
                        .map_err(JobError::Store)?
                        .is_some()
                {
                    tracing::info!(batch = %batch.id, cap, "batch paused at its cost cap");
                }
                return Ok(());
            }
            room = room.min(allowed);
        }
        let page = u32::try_from(room).unwrap_or(u32::MAX).min(FEED_PAGE);
        let items = db
            .pending_batch_items(&batch.id, sampling, page)
            .await
            .map_err(JobError::Store)?;
        for item in items {
            let request: ItemRequest = match serde_json::from_value(item.request.clone()) {
                Ok(r) => r,
                Err(e) => {
                    self.refuse(batch, item.line, "invalid_request", &e.to_string())
                        .await?;
                    continue;
                }
            };
            let policy = match self.hooks.admit(batch, &request).await {
                Ok(policy) => policy,
                // The policy could not answer: the rest waits for the next
                // pass.
                Err(refusal) if refusal.status >= 500 => {
                    tracing::warn!(batch = %batch.id, code = %refusal.code, "a batch item could not be admitted now");
                    break;
                }
                Err(refusal) => {
                    self.refuse(batch, item.line, &refusal.code, &refusal.message)
                        .await?;
                    continue;
                }
            };
            let submitted = self
                .jobs
                .submit(NewJob {
                    params: request.params,
                    output: request.output,
                    tier: Tier::Batch,
                    project: batch.project.clone(),
                    user_id: batch.user_id.clone(),
                    end_user: request.end_user,
                    idempotency_key: Some(item_key(&batch.id, item.line, item.attempts + 1)),
                    init_image: None,
                    mask: None,
                    timeout: None,
                    policy,
                    request_id: Some(format!("{}:{}", batch.id, item.custom_id)),
                    trace_parent: None,
                })
                .await;
            match submitted {
                Ok((job, _created)) => {
                    db.mark_item_submitted(&batch.id, item.line, job.id)
                        .await
                        .map_err(JobError::Store)?;
                }
                // The tier is full: the rest waits for the next tick.
                Err(JobError::QueueFull { .. }) => break,
                Err(JobError::ShuttingDown) => return Ok(()),
                Err(e @ (JobError::Store(_) | JobError::Blob(_))) => return Err(e),
                Err(e) => {
                    self.refuse(batch, item.line, refusal_code(&e), &e.to_string())
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// How many more lines the cost cap allows now: what is left of it
    /// over the measured cost of a line (the estimate's until one is
    /// made), less the lines in flight; one at a time while nothing tells
    /// what a line costs.
    async fn allowed_by_cap(
        &self,
        batch: &BatchRecord,
        cap: f64,
        in_flight: u64,
    ) -> Result<u64, JobError> {
        let spend = self
            .jobs
            .db()
            .batch_spend(&batch.id, false)
            .await
            .map_err(JobError::Store)?;
        let estimated = batch
            .estimate
            .as_ref()
            .and_then(|e| serde_json::from_value::<Estimate>(e.clone()).ok())
            .and_then(|e| e.cost_per_request);
        let per_line = if spend.succeeded > 0 {
            Some(spend.cost / spend.succeeded as f64)
        } else {
            estimated
        };
        Ok(match per_line {
            Some(c) if c > 0.0 => {
                let lines = ((cap - spend.cost) / c + 1e-9).floor().max(0.0) as u64;
                lines.saturating_sub(in_flight)
            }
            // Free lines: the cap never binds.
            Some(_) => u64::MAX,
            // No measure yet: one at a time, until one is made.
            None if spend.cost <= cap => u64::from(in_flight == 0),
            None => 0,
        })
    }

    async fn refuse(
        &self,
        batch: &BatchRecord,
        line: u32,
        code: &str,
        message: &str,
    ) -> Result<(), JobError> {
        tracing::info!(batch = %batch.id, line, code, "a batch item was refused");
        self.jobs
            .db()
            .finish_batch_items(
                &batch.id,
                &[ItemOutcome {
                    line,
                    status: ItemStatus::Failed,
                    error_code: Some(code.to_string()),
                    error_message: Some(message.to_string()),
                }],
            )
            .await
            .map_err(JobError::Store)
    }

    /// Cancels the jobs of a cancelling batch's submitted items.
    async fn cancel_running(&self, batch: &BatchRecord) -> Result<(), JobError> {
        let db = self.jobs.db();
        let mut after = None;
        loop {
            let items = db
                .batch_items(&batch.id, Some(ItemStatus::Submitted), after, FEED_PAGE)
                .await
                .map_err(JobError::Store)?;
            let Some(last) = items.last() else {
                return Ok(());
            };
            after = Some(last.line);
            for job in items.iter().filter_map(|i| i.job_id) {
                match self.jobs.cancel(job).await {
                    Ok(_) | Err(JobError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Records the outcome of items whose jobs ended; puts those that
    /// failed for a passing reason back to pending for another attempt.
    async fn settle(&self, batch: &BatchRecord) -> Result<(), JobError> {
        let db = self.jobs.db();
        let settled = db
            .settled_batch_items(&batch.id)
            .await
            .map_err(JobError::Store)?;
        let mut finished = Vec::with_capacity(settled.len());
        for item in settled {
            let mut outcome = item.outcome;
            if batch.status != BatchStatus::Cancelling
                && retry::should_retry(&outcome, item.attempts, self.settings.max_attempts)
            {
                let retries =
                    retry::record(item.retries.as_ref(), item.attempts, item.job_id, &outcome);
                if db
                    .retry_batch_item(&batch.id, outcome.line, &retries)
                    .await
                    .map_err(JobError::Store)?
                {
                    tracing::info!(batch = %batch.id, line = outcome.line, attempt = item.attempts,
                        code = outcome.error_code.as_deref().unwrap_or(""), "retrying a batch line");
                }
                continue;
            }
            // Jobs the batch's cancel stopped say so, as the lines it
            // closed before they ran do.
            if batch.status == BatchStatus::Cancelling && outcome.status == ItemStatus::Cancelled {
                outcome.error_code = Some(CANCELLED.0.to_string());
                outcome.error_message = Some(CANCELLED_RUNNING.to_string());
            }
            finished.push(outcome);
        }
        if !finished.is_empty() {
            db.finish_batch_items(&batch.id, &finished)
                .await
                .map_err(JobError::Store)?;
        }
        Ok(())
    }

    /// Runs QA on the succeeded lines not yet checked: the review queue
    /// first, then the lines' marks, so a crash between the two only
    /// queues the same images again (which changes nothing).
    async fn check_quality(&self, batch: &BatchRecord) -> Result<(), JobError> {
        let db = self.jobs.db();
        let settings = QaSettings::of(batch);
        loop {
            let images = db
                .unchecked_batch_images(&batch.id, FEED_PAGE)
                .await
                .map_err(JobError::Store)?;
            if images.is_empty() {
                return Ok(());
            }
            let checked = qa::check(batch, &settings, &images);
            if !checked.review.is_empty() {
                db.enqueue_review(&checked.review)
                    .await
                    .map_err(JobError::Store)?;
            }
            db.set_batch_qa(&batch.id, &checked.lines)
                .await
                .map_err(JobError::Store)?;
        }
    }

    /// Ends a batch with no open item, with its files.
    async fn finish(&self, batch: &BatchRecord, expired: bool) -> Result<(), JobError> {
        let db = self.jobs.db();
        let status = match batch.status {
            BatchStatus::Cancelling => BatchStatus::Cancelled,
            _ if expired => BatchStatus::Expired,
            _ => BatchStatus::Completed,
        };
        if batch.status == BatchStatus::InProgress {
            // Another process may be finishing it too; the transition
            // decides which, and the loser stops here.
            if db
                .finalizing_batch(&batch.id)
                .await
                .map_err(JobError::Store)?
                .is_none()
            {
                return Ok(());
            }
        }
        // Fresh counts for the files.
        let Some(current) = db.batch(&batch.id).await.map_err(JobError::Store)? else {
            return Ok(());
        };
        let (output, errors) = match self.hooks.output_files(&current).await {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(batch = %batch.id, error = %e, "a batch's files could not be made; retrying");
                return Ok(());
            }
        };
        if let Some(done) = db
            .finish_batch(&batch.id, status, output.as_ref(), errors.as_ref())
            .await
            .map_err(JobError::Store)?
        {
            tracing::info!(
                batch = %done.id,
                status = done.status.as_str(),
                completed = done.completed,
                failed = done.failed,
                "batch finished"
            );
        }
        Ok(())
    }
}
