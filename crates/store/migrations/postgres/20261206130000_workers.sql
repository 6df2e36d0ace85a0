-- The worker registry: one row per worker process, written by the worker
-- itself (registration, then a heartbeat every `heartbeat_every_ms`), read
-- by `GET /v1/admin/workers` and `easel workers`. An operator sets
-- `drain_requested` to make a worker stop claiming; a worker that stops
-- sets `stopped_at`. Times are milliseconds since the epoch, by the
-- database server's clock (`easel_now_ms()`).
CREATE TABLE workers (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    host                TEXT NOT NULL,
    pid                 BIGINT NOT NULL,
    version             TEXT NOT NULL,
    models              JSONB NOT NULL DEFAULT '[]',
    open_circuits       JSONB NOT NULL DEFAULT '[]',
    heartbeat_every_ms  BIGINT NOT NULL,
    started_at          BIGINT NOT NULL,
    heartbeat_at        BIGINT NOT NULL,
    drain_requested     BOOLEAN NOT NULL DEFAULT FALSE,
    draining            BOOLEAN NOT NULL DEFAULT FALSE,
    stopped_at          BIGINT
);
CREATE INDEX workers_by_heartbeat ON workers (heartbeat_at);
