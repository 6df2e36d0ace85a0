-- What the workers serve, for the processes that load no model (the `api`
-- role): each model's description as its last successful load measured it
-- (an opaque JSON document to the store), by configured name.
CREATE TABLE model_catalog (
    name        TEXT COLLATE "C" PRIMARY KEY,
    info        JSONB NOT NULL,
    updated_at  BIGINT NOT NULL
);
