-- The human review queue (issue 17): a sampled share of stored images and
-- every flagged one, leased to one reviewer at a time, with the verdict.
CREATE TABLE review_items (
    image_id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    job_id            TEXT NOT NULL,
    project_id        TEXT NOT NULL,
    model             TEXT NOT NULL,
    model_version     TEXT,
    quality_score     DOUBLE PRECISION,
    -- `sampled` or `flagged`.
    reason            TEXT NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    -- `good` or `bad`; NULL while pending.
    verdict           TEXT,
    labels            TEXT,
    reviewer          TEXT,
    reviewed_at       BIGINT,
    created_at        BIGINT NOT NULL
);

CREATE INDEX review_pending ON review_items (created_at, image_id) WHERE verdict IS NULL;
CREATE INDEX review_done ON review_items (model, model_version) WHERE verdict IS NOT NULL;
