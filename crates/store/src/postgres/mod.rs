//! The PostgreSQL backend of [`Db`](crate::Db): one database shared by any
//! number of API and worker processes.
//!
//! The SQL mirrors `crate::sqlite` statement for statement; where SQLite
//! relies on its single writer, PostgreSQL needs its own mechanism:
//! - **Claims** choose their rows `FOR UPDATE SKIP LOCKED`, so concurrent
//!   workers in any process take different jobs and never wait on each
//!   other's rows.
//! - **Bounded inserts** take a transaction-scoped advisory lock per tier
//!   before counting, so admission checks of one tier run one at a time
//!   across replicas (`jobs.rs`).
//! - **Fair-share charges** take another per-tier advisory lock, so the
//!   read, arithmetic and write of one tier's counters never interleave
//!   across workers (`fair_share.rs`).
//! - **Idempotency** is the unique index's: the insert is `ON CONFLICT DO
//!   NOTHING` on it, and the loser of a race reads the winner's job.
//! - Every other transition is one conditional `UPDATE`, which PostgreSQL
//!   re-checks against the latest committed row when it had to wait for a
//!   concurrent writer, so it applies at most once.
//!
//! Times are arguments (milliseconds from the `Db`'s clock), never `now()`,
//! so both backends follow the same clock and tests can move it.
//! Transactions run at PostgreSQL's default, READ COMMITTED.

mod audit;
mod fair_share;
mod images;
mod jobs;
mod open;
mod queue;
mod rows;

use sqlx::PgPool;

/// A PostgreSQL database: one pool for reads and writes.
#[derive(Debug, Clone)]
pub(crate) struct PgDb {
    pool: PgPool,
}
