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
//! - **Leases** are timed by the server's clock (`easel_now_ms()`), one
//!   clock for every worker machine; other times are arguments
//!   (milliseconds from the `Db`'s clock), and a test's own clock replaces
//!   the server's for leases too, so tests can move it.
//! - **Signals** between processes (a job queued, a cancel requested) are
//!   `NOTIFY`s sent by a trigger on `jobs` (`notify.rs`, and the migration
//!   `queue_signals`).
//!
//! Transactions run at PostgreSQL's default, READ COMMITTED.

mod audit;
mod catalog;
mod fair_share;
mod images;
mod jobs;
pub(crate) mod notify;
mod open;
mod queue;
mod retention;
mod rows;
mod tenancy;
mod usage;
mod workers;

use sqlx::PgPool;

/// A PostgreSQL database: one pool for reads and writes.
#[derive(Debug, Clone)]
pub(crate) struct PgDb {
    pool: PgPool,
}

impl PgDb {
    /// The pool (SQL shared by both backends).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}
