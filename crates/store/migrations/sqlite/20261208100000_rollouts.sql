-- Model versions, aliases and rollouts (issue 17).
--
-- A served model name is an alias that points at a version: the content
-- hash of a model folder. `model_versions` holds every version known for a
-- name (the configured folder's, once loaded, and each registered one);
-- `model_aliases` the version a name serves when a registered version has
-- been promoted (without a row, the configured folder's version).
CREATE TABLE model_versions (
    name            TEXT NOT NULL,
    version         TEXT NOT NULL,
    path            TEXT NOT NULL,
    architecture    TEXT,
    registered_by   TEXT,
    registered_at   INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE model_aliases (
    name        TEXT PRIMARY KEY NOT NULL,
    version     TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- A rollout of a candidate version for one alias. `guards` is an opaque
-- JSON document to the store (the job system defines it); `decision` the
-- guard evaluation that ended it.
CREATE TABLE rollouts (
    id            TEXT PRIMARY KEY NOT NULL,
    model         TEXT NOT NULL,
    baseline      TEXT NOT NULL,
    candidate     TEXT NOT NULL,
    mode          TEXT NOT NULL CHECK (mode IN ('canary', 'shadow')),
    percent       REAL NOT NULL,
    guards        TEXT NOT NULL,
    auto_promote  INTEGER NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('running', 'promoted', 'rolled_back', 'aborted')),
    reason        TEXT,
    decision      TEXT,
    created_by    TEXT,
    created_at    INTEGER NOT NULL,
    ended_at      INTEGER
);

-- At most one running rollout per alias.
CREATE UNIQUE INDEX rollouts_one_running ON rollouts (model) WHERE state = 'running';
CREATE INDEX rollouts_created ON rollouts (created_at, id);

-- The version a job was routed to (and that made its images), the version
-- to fall back to when a canary candidate fails it, and, once that
-- happened, the candidate it left and why.
ALTER TABLE jobs ADD COLUMN model_version TEXT;
ALTER TABLE jobs ADD COLUMN fallback_version TEXT;
ALTER TABLE jobs ADD COLUMN rerouted_from TEXT;
ALTER TABLE jobs ADD COLUMN reroute_code TEXT;
CREATE INDEX jobs_model_version ON jobs (model, created_at) WHERE model_version IS NOT NULL;
