-- Batches (issue 19, docs/batches.md): the OpenAI Batch API's files and
-- batches, and one row per request line of a batch.

-- A file a caller uploaded (`purpose` = `batch`: a batch's JSONL input,
-- kept at `object_key` in the blob store) or one a batch made (`batch_output`,
-- `batch_error`: rendered from the batch's items when read, so `object_key`
-- is NULL and `batch_id` names the batch).
CREATE TABLE files (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    project_id  TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    filename    TEXT NOT NULL,
    bytes       BIGINT NOT NULL,
    object_key  TEXT,
    batch_id    TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT
);
CREATE INDEX files_by_project ON files (project_id, created_at, id);

CREATE TABLE batches (
    id                 TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    project_id         TEXT NOT NULL,
    user_id            TEXT,
    endpoint           TEXT NOT NULL,
    input_file_id      TEXT NOT NULL,
    completion_window  TEXT NOT NULL,
    -- The caller's metadata: a JSON object of up to 16 string pairs.
    metadata           TEXT,
    -- validating | in_progress | finalizing | completed | failed | expired
    -- | cancelling | cancelled, as OpenAI names them; and Easel's
    -- awaiting_approval (a dry run's sample is done) and paused_budget
    -- (the cost cap is reached).
    status             TEXT NOT NULL,
    -- The share of lines (percent) run first as a dry run, when asked;
    -- the rest waits for approval (`approved_at`).
    dry_run_percent    DOUBLE PRECISION,
    approved_at        BIGINT,
    -- The most the batch may cost, in the configured currency.
    cost_cap           DOUBLE PRECISION,
    -- The estimate made at creation (JSON: images, device_seconds, cost,
    -- eta_seconds, basis).
    estimate           TEXT,
    total              BIGINT NOT NULL,
    completed          BIGINT NOT NULL DEFAULT 0,
    failed             BIGINT NOT NULL DEFAULT 0,
    output_file_id     TEXT,
    error_file_id      TEXT,
    created_at         BIGINT NOT NULL,
    in_progress_at     BIGINT,
    finalizing_at      BIGINT,
    completed_at       BIGINT,
    cancelling_at      BIGINT,
    cancelled_at       BIGINT,
    expires_at         BIGINT NOT NULL,
    expired_at         BIGINT
);
CREATE INDEX batches_by_project ON batches (project_id, created_at, id);
CREATE INDEX batches_open ON batches (status, created_at)
    WHERE status IN ('in_progress', 'finalizing', 'cancelling');

-- One request line: its validated request (the job's parameters and
-- output options, as JSON), and what became of it. `status`: pending (not
-- yet a job) | submitted (`job_id` is its job) | succeeded | failed |
-- cancelled | expired.
CREATE TABLE batch_items (
    batch_id       TEXT COLLATE "C" NOT NULL,
    line           BIGINT NOT NULL,
    custom_id      TEXT NOT NULL,
    request        TEXT NOT NULL,
    status         TEXT NOT NULL,
    job_id         TEXT,
    error_code     TEXT,
    error_message  TEXT,
    finished_at    BIGINT,
    -- Whether the line is in the dry run's sample (1) or not (0).
    sample         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, line)
);
CREATE INDEX batch_items_open ON batch_items (batch_id, status, line)
    WHERE status IN ('pending', 'submitted');
