-- Tenancy (docs/tenancy.md): projects own keys, jobs, images and audit
-- entries. Every existing row belongs to the `default` project, which
-- always exists (config-file keys and unauthenticated use map to it unless
-- told otherwise).
CREATE TABLE projects (
    id          TEXT COLLATE "C" PRIMARY KEY,
    -- easel_core::tenancy::Limits (rates, caps); '{}' = none.
    limits      JSONB NOT NULL DEFAULT '{}',
    -- How long its images are kept, in seconds; NULL: forever.
    retention_seconds  BIGINT,
    -- Whether the project gets its own `project` label on metrics.
    billable    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL
);
INSERT INTO projects (id, created_at) VALUES ('default', easel_now_ms());

-- API keys kept in the database. Only a hash of the secret is stored
-- (`blake3:<hex>`); `prefix` is the first characters of the secret, shown
-- in listings so a person can tell keys apart.
CREATE TABLE api_keys (
    id            TEXT COLLATE "C" PRIMARY KEY,
    project_id    TEXT COLLATE "C" NOT NULL REFERENCES projects (id),
    name          TEXT NOT NULL,
    hash          TEXT COLLATE "C" NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    scopes        JSONB NOT NULL,
    limits        JSONB NOT NULL DEFAULT '{}',
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT,
    last_used_at  BIGINT
);
CREATE INDEX api_keys_project ON api_keys (project_id, created_at);

-- Rate limits (GCRA): one row per limited subject (`key:<id>:requests`,
-- `project:<id>:images`, ...), holding the bucket's theoretical arrival
-- time in microseconds since the epoch. Rows are locked in subject order
-- by the admission transaction, so replicas share one bucket.
CREATE TABLE rate_buckets (
    subject  TEXT COLLATE "C" PRIMARY KEY,
    tat_us   BIGINT NOT NULL
);

-- Why a queued job may not be claimed now (`budget_exhausted`); NULL: it
-- may. The claim queries skip held jobs.
ALTER TABLE jobs ADD COLUMN hold_reason TEXT;
ALTER TABLE jobs ADD COLUMN project_id TEXT COLLATE "C" NOT NULL DEFAULT 'default';
ALTER TABLE images ADD COLUMN project_id TEXT COLLATE "C" NOT NULL DEFAULT 'default';
-- What each image cost (docs/tenancy.md, "Cost"): its share of the
-- engine call's device time, and that times the device price plus its
-- bytes times the storage price of one GB-month. Older images: 0.
ALTER TABLE images ADD COLUMN device_seconds DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE images ADD COLUMN cost DOUBLE PRECISION NOT NULL DEFAULT 0;
-- A held image is never deleted, by request or by retention.
ALTER TABLE images ADD COLUMN legal_hold BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE audit_log ADD COLUMN project_id TEXT COLLATE "C";

-- Idempotency keys are unique per project and user: two projects whose
-- keys share a name never see each other's jobs through a retry.
DROP INDEX jobs_idempotency;
CREATE UNIQUE INDEX jobs_idempotency
    ON jobs (project_id, (COALESCE(user_id, '')), idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- A project's listing, newest first; its active jobs (concurrency limits).
CREATE INDEX jobs_project_created ON jobs (project_id, created_at, id);
CREATE INDEX jobs_project_active ON jobs (project_id, user_id)
    WHERE status IN ('queued', 'running');
CREATE INDEX audit_log_project_at ON audit_log (project_id, at, id);
CREATE INDEX images_project_created ON images (project_id, created_at);

-- Objects of deleted images whose removal from the object store has not
-- been confirmed yet: written in the transaction that deletes the row,
-- removed once the object is gone; the retention sweeper retries them.
CREATE TABLE pending_deletions (
    object_key  TEXT COLLATE "C" PRIMARY KEY,
    since       BIGINT NOT NULL
);
