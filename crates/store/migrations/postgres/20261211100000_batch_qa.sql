-- Batches, part two (issue 19, docs/batches.md): bounded retries per
-- line, automatic QA, and the completion webhook.

-- Jobs made for the line so far (a retry makes another), and the reasons
-- of the attempts that failed and were retried (JSON: [{"attempt",
-- "job_id", "code", "message"}]).
ALTER TABLE batch_items ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE batch_items ADD COLUMN retries TEXT;
-- QA: whether a person should look at the line's images (a score below
-- the batch's threshold or a moderation or near-copy flag), and when the
-- checks ran (NULL: not yet).
ALTER TABLE batch_items ADD COLUMN needs_review BIGINT NOT NULL DEFAULT 0;
ALTER TABLE batch_items ADD COLUMN qa_at BIGINT;
UPDATE batch_items SET attempts = 1 WHERE job_id IS NOT NULL;

-- The batch's QA settings (JSON: {"min_quality_score", "review_sample_percent"}).
ALTER TABLE batches ADD COLUMN qa TEXT;
-- The completion webhook: where to POST, the HMAC secret, and its
-- delivery: NULL (no webhook, or not finished) | pending | delivered |
-- failed (out of attempts), with the attempts made, when the next is due
-- and the last failure.
ALTER TABLE batches ADD COLUMN webhook_url TEXT;
ALTER TABLE batches ADD COLUMN webhook_secret TEXT;
ALTER TABLE batches ADD COLUMN webhook_status TEXT;
ALTER TABLE batches ADD COLUMN webhook_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN webhook_next_at BIGINT;
ALTER TABLE batches ADD COLUMN webhook_delivered_at BIGINT;
ALTER TABLE batches ADD COLUMN webhook_last_error TEXT;
CREATE INDEX batches_webhooks_due ON batches (webhook_next_at)
    WHERE webhook_status = 'pending';
