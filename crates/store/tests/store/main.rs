//! Integration tests of the store: each test opens a fresh database (SQLite
//! in a temporary folder, or a database of its own on the PostgreSQL server
//! that `EASEL_TEST_DATABASE_URL` names; see `helpers`) and drives it
//! through the public API only.

mod admission;
mod audit;
mod blobs;
mod client_options;
mod connect;
mod fair_share;
mod fleet;
mod helpers;
mod images;
mod jobs;
mod postgres;
mod provenance;
mod queue;
mod replicas;
mod s3;
mod tenancy;
mod workers;
