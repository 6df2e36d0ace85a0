-- Batches (issue 19, docs/batches.md): the OpenAI Batch API's files and
-- batches, and one row per request line of a batch.

-- A file a caller uploaded (`purpose` = `batch`: a batch's JSONL input,
-- kept at `object_key` in the blob store) or one a batch made (`batch_output`,
-- `batch_error`: rendered from the batch's items when read, so `object_key`
-- is NULL and `batch_id` names the batch).
CREATE TABLE files (
    id          TEXT PRIMARY KEY NOT NULL,
    project_id  TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    filename    TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    object_key  TEXT,
    batch_id    TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER
);
CREATE INDEX files_by_project ON files (project_id, created_at, id);

CREATE TABLE batches (
    id                 TEXT PRIMARY KEY NOT NULL,
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
    dry_run_percent    REAL,
    approved_at        INTEGER,
    -- The most the batch may cost, in the configured currency.
    cost_cap           REAL,
    -- The estimate made at creation (JSON: images, device_seconds, cost,
    -- eta_seconds, basis).
    estimate           TEXT,
    total              INTEGER NOT NULL,
    completed          INTEGER NOT NULL DEFAULT 0,
    failed             INTEGER NOT NULL DEFAULT 0,
    output_file_id     TEXT,
    error_file_id      TEXT,
    created_at         INTEGER NOT NULL,
    in_progress_at     INTEGER,
    finalizing_at      INTEGER,
    completed_at       INTEGER,
    cancelling_at      INTEGER,
    cancelled_at       INTEGER,
    expires_at         INTEGER NOT NULL,
    expired_at         INTEGER
);
CREATE INDEX batches_by_project ON batches (project_id, created_at, id);
CREATE INDEX batches_open ON batches (status, created_at)
    WHERE status IN ('in_progress', 'finalizing', 'cancelling');

-- One request line: its validated request (the job's parameters and
-- output options, as JSON), and what became of it. `status`: pending (not
-- yet a job) | submitted (`job_id` is its job) | succeeded | failed |
-- cancelled | expired.
CREATE TABLE batch_items (
    batch_id       TEXT NOT NULL,
    line           INTEGER NOT NULL,
    custom_id      TEXT NOT NULL,
    request        TEXT NOT NULL,
    status         TEXT NOT NULL,
    job_id         TEXT,
    error_code     TEXT,
    error_message  TEXT,
    finished_at    INTEGER,
    -- Whether the line is in the dry run's sample (1) or not (0).
    sample         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, line)
);
CREATE INDEX batch_items_open ON batch_items (batch_id, status, line)
    WHERE status IN ('pending', 'submitted');
