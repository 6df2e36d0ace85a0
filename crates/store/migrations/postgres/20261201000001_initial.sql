-- Easel's schema on PostgreSQL: jobs, images and the audit log, as the
-- SQLite migrations (`../sqlite/`) leave them, in one step.
--
-- The two schemas hold the same values in the same shapes, so one decoder
-- (`crates/store/src/rows.rs`) reads both:
-- - Timestamps are BIGINT milliseconds since the Unix epoch (UTC), as on
--   SQLite: they come from the store's clock (tests move it by hand), sort
--   exactly, and make pagination cursors identical on both backends.
-- - Every integer is BIGINT (SQLite's INTEGER is 64-bit); `seed` holds the
--   u64 as its two's-complement i64.
-- - JSON is jsonb. Ids are text, collated "C" so that they order by bytes,
--   as on SQLite, whatever the database's default collation.

CREATE TABLE jobs (
    id                TEXT COLLATE "C" PRIMARY KEY,
    status            TEXT NOT NULL CHECK (status IN
                        ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'rejected')),
    tier              TEXT NOT NULL CHECK (tier IN ('realtime', 'batch')),
    -- 0 = realtime, 1 = batch: what the claim query orders by.
    priority          BIGINT NOT NULL,
    user_id           TEXT,
    model             TEXT NOT NULL,
    params            JSONB NOT NULL,         -- easel_core::GenerationParams
    options           JSONB NOT NULL,         -- easel_core::OutputOptions
    idempotency_key   TEXT,
    attempts          BIGINT NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    cancel_requested  BOOLEAN NOT NULL DEFAULT FALSE,
    error_code        TEXT,
    error_message     TEXT,
    policy            JSONB,                  -- prompt policy decision, when recorded
    -- The job's image ids, in index order, set when it succeeds: a copy of
    -- what `images` holds, so a job (or a page of jobs) reads in one query.
    image_ids         JSONB NOT NULL DEFAULT '[]',
    -- The `x-request-id` and W3C `traceparent` of the creating request.
    request_id        TEXT,
    trace_parent      TEXT,
    created_at        BIGINT NOT NULL,
    started_at        BIGINT,
    finished_at       BIGINT,
    -- When the job stops being worth running (`X-Easel-Timeout`); NULL: never.
    deadline_at       BIGINT
);

-- One job per (user, key). Anonymous jobs share the '' user, so their keys
-- are deduplicated too. `INSERT … ON CONFLICT` names this index, so two API
-- processes inserting the same key at once create one job.
CREATE UNIQUE INDEX jobs_idempotency
    ON jobs (COALESCE(user_id, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The claim query: oldest queued job of the highest-priority tier.
CREATE INDEX jobs_claim_order ON jobs (status, priority, created_at, id);

-- Listing, newest first, optionally by status.
CREATE INDEX jobs_created ON jobs (created_at, id);
CREATE INDEX jobs_status_created ON jobs (status, created_at, id);

-- `Db::expire_overdue`: queued jobs whose deadline has passed.
CREATE INDEX jobs_queued_deadline ON jobs (deadline_at)
    WHERE status = 'queued' AND deadline_at IS NOT NULL;

CREATE TABLE images (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    job_id              TEXT COLLATE "C" NOT NULL REFERENCES jobs (id),
    index_in_job        BIGINT NOT NULL,
    prompt              TEXT NOT NULL,
    negative_prompt     TEXT NOT NULL,
    seed                BIGINT NOT NULL,
    params              JSONB NOT NULL,        -- easel_core::GenerationParams of the job
    model               TEXT NOT NULL,
    model_hash          TEXT NOT NULL,
    sampler             TEXT NOT NULL,
    schedule            TEXT NOT NULL,
    steps               BIGINT NOT NULL,
    guidance            DOUBLE PRECISION NOT NULL,
    width               BIGINT NOT NULL,
    height              BIGINT NOT NULL,
    format              TEXT NOT NULL,
    byte_size           BIGINT NOT NULL,
    sha256              TEXT NOT NULL,
    object_key          TEXT NOT NULL,
    timings             JSONB NOT NULL,        -- [{"stage": "...", "seconds": 0.1}, ...]
    warnings            JSONB NOT NULL,        -- ["...", ...]
    watermark_id        TEXT,
    perceptual_hash     TEXT,
    moderation          JSONB,                 -- scores and decision
    flags               JSONB NOT NULL DEFAULT '[]',
    -- The scorer's cosine in [-1, 1]; NULL when not scored.
    quality_score       DOUBLE PRECISION,
    request_id          TEXT,
    created_at          BIGINT NOT NULL,
    -- Named: the store recognises this constraint's violation as a
    -- duplicate image.
    CONSTRAINT images_job_index_unique UNIQUE (job_id, index_in_job)
);

-- Watermark read-back (`POST /v1/watermark/detect`, `easel verify`). Not
-- UNIQUE: a lookup that finds two rows answers with the newest.
CREATE INDEX images_watermark_id ON images (watermark_id, created_at)
    WHERE watermark_id IS NOT NULL;

CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    event_type  TEXT NOT NULL,
    actor       TEXT,
    subject     TEXT,
    detail      JSONB NOT NULL
);

CREATE INDEX audit_log_at ON audit_log (at, id);
CREATE INDEX audit_log_type_at ON audit_log (event_type, at, id);

-- The audit log is append-only: refuse edits, deletions and truncation in
-- the database itself, not only in the code that happens to use it today.
CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
