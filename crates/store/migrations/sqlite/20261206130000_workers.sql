-- The worker registry: one row per worker process, written by the worker
-- itself (registration, then a heartbeat every `heartbeat_every_ms`), read
-- by `GET /v1/admin/workers` and `easel workers`. An operator sets
-- `drain_requested` to make a worker stop claiming; a worker that stops
-- sets `stopped_at`. Times are milliseconds since the epoch, by the
-- database's clock.
CREATE TABLE workers (
    id                  TEXT PRIMARY KEY,
    host                TEXT NOT NULL,
    pid                 INTEGER NOT NULL,
    version             TEXT NOT NULL,
    models              TEXT NOT NULL DEFAULT '[]',
    open_circuits       TEXT NOT NULL DEFAULT '[]',
    heartbeat_every_ms  INTEGER NOT NULL,
    started_at          INTEGER NOT NULL,
    heartbeat_at        INTEGER NOT NULL,
    drain_requested     INTEGER NOT NULL DEFAULT 0,
    draining            INTEGER NOT NULL DEFAULT 0,
    stopped_at          INTEGER
);
CREATE INDEX workers_by_heartbeat ON workers (heartbeat_at);
