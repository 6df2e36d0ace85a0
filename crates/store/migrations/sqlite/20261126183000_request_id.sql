-- Correlation (docs/observability.md, "Traces and logs"): the `x-request-id`
-- of the request that created a job, on the job and on each of its images,
-- so a log line, a trace and a record can be matched. The old
-- `correlation_id` column (never written) becomes `request_id`.
ALTER TABLE jobs RENAME COLUMN correlation_id TO request_id;

-- The W3C `traceparent` of the request's span, set only when a trace was
-- being recorded: the worker's `job.run` span continues that trace later,
-- whichever process runs it.
ALTER TABLE jobs ADD COLUMN trace_parent TEXT;

ALTER TABLE images ADD COLUMN request_id TEXT;
