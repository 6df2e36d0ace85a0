-- Easel's initial schema: jobs, images and the audit log (SQLite).
--
-- Timestamps are INTEGER milliseconds since the Unix epoch (UTC): they sort
-- exactly, compare cheaply, and map to BIGINT on PostgreSQL.
-- Ids are the prefixed text form of UUID v7 (`job_…`, `img_…`), which is
-- time-ordered, so the primary-key indexes grow at the end.

CREATE TABLE jobs (
    id                TEXT PRIMARY KEY NOT NULL,
    status            TEXT NOT NULL CHECK (status IN
                        ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'rejected')),
    tier              TEXT NOT NULL CHECK (tier IN ('realtime', 'batch')),
    -- 0 = realtime, 1 = batch: what the claim query orders by.
    priority          INTEGER NOT NULL,
    user_id           TEXT,
    model             TEXT NOT NULL,
    params            TEXT NOT NULL,          -- JSON: easel_core::GenerationParams
    options           TEXT NOT NULL,          -- JSON: easel_core::OutputOptions
    idempotency_key   TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    error_code        TEXT,
    error_message     TEXT,
    policy            TEXT,                   -- JSON: prompt policy decision, when recorded
    -- JSON list of the job's image ids, in index order, set when it succeeds.
    -- A copy of what `images` holds, so a job (or a page of jobs) reads in
    -- one query.
    image_ids         TEXT NOT NULL DEFAULT '[]',
    correlation_id    TEXT,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER
);

-- One job per (user, key). Anonymous jobs share the '' user, so their keys
-- are deduplicated too.
CREATE UNIQUE INDEX jobs_idempotency
    ON jobs (COALESCE(user_id, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The claim query: oldest queued job of the highest-priority tier.
CREATE INDEX jobs_claim_order ON jobs (status, priority, created_at, id);

-- Listing, newest first, optionally by status.
CREATE INDEX jobs_created ON jobs (created_at, id);
CREATE INDEX jobs_status_created ON jobs (status, created_at, id);

CREATE TABLE images (
    id                  TEXT PRIMARY KEY NOT NULL,
    job_id              TEXT NOT NULL REFERENCES jobs (id),
    index_in_job        INTEGER NOT NULL,
    prompt              TEXT NOT NULL,
    negative_prompt     TEXT NOT NULL,
    seed                INTEGER NOT NULL,      -- u64 stored as its two's-complement i64
    params              TEXT NOT NULL,         -- JSON: easel_core::GenerationParams of the job
    model               TEXT NOT NULL,
    model_hash          TEXT NOT NULL,
    sampler             TEXT NOT NULL,
    schedule            TEXT NOT NULL,
    steps               INTEGER NOT NULL,
    guidance            REAL NOT NULL,
    width               INTEGER NOT NULL,
    height              INTEGER NOT NULL,
    format              TEXT NOT NULL,
    byte_size           INTEGER NOT NULL,
    sha256              TEXT NOT NULL,
    object_key          TEXT NOT NULL,
    timings             TEXT NOT NULL,         -- JSON: [{"stage": "...", "seconds": 0.1}, ...]
    warnings            TEXT NOT NULL,         -- JSON: ["...", ...]
    -- Provenance filled by post-processing when those stages exist.
    watermark_id        TEXT,
    perceptual_hash     TEXT,
    moderation          TEXT,                  -- JSON: scores and decision
    flags               TEXT NOT NULL DEFAULT '[]', -- JSON: ["nsfw_flagged", ...]
    created_at          INTEGER NOT NULL,
    UNIQUE (job_id, index_in_job)
);

CREATE INDEX images_job ON images (job_id, index_in_job);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    event_type  TEXT NOT NULL,
    actor       TEXT,
    subject     TEXT,
    detail      TEXT NOT NULL                  -- JSON
);

CREATE INDEX audit_log_at ON audit_log (at, id);
CREATE INDEX audit_log_type_at ON audit_log (event_type, at, id);

-- The audit log is append-only: refuse edits and deletions in the database
-- itself, not only in the code that happens to use it today.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
