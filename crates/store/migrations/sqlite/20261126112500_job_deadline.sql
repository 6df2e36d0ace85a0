-- Per-request deadlines (`X-Easel-Timeout`): when a job stops being worth
-- running. NULL: no deadline. INTEGER milliseconds since the epoch, like
-- every other timestamp.
ALTER TABLE jobs ADD COLUMN deadline_at INTEGER;

-- `Db::expire_overdue`: queued jobs whose deadline has passed. Partial, so
-- jobs without a deadline (most of them) cost nothing here.
CREATE INDEX jobs_queued_deadline ON jobs (deadline_at)
    WHERE status = 'queued' AND deadline_at IS NOT NULL;
