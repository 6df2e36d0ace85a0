//! The SQLite implementation of [`Db`].
//!
//! SQLite allows one writer at a time. Rather than let several pooled
//! connections race for the write lock (and fail with `SQLITE_BUSY` under
//! load), every write goes through a pool of exactly **one** connection,
//! which queues writers inside the process; reads go through a separate
//! pool and, in WAL mode, never wait for the writer. Write transactions
//! start with `BEGIN IMMEDIATE` so that a second process on the same file
//! waits for the lock (up to the busy timeout) at the start of a transaction
//! instead of failing half-way through it.
//!
//! All SQL is written for SQLite and checked at run time (no `query!`
//! macros), so a PostgreSQL backend can be a sibling module with its own SQL.

mod audit;
mod images;
mod jobs;
mod open;
mod queue;
mod rows;

pub use audit::MAX_AUDIT_PAGE;
pub use jobs::MAX_PAGE as MAX_JOB_PAGE;
pub use open::DbOptions;

use easel_core::{SharedClock, SystemClock};
use sqlx::SqlitePool;

/// A handle to the database: cheap to clone, safe to share across tasks.
///
/// Open it with [`Db::open`]; every repository function is a method on it.
#[derive(Debug, Clone)]
pub struct Db {
    /// Exactly one connection: SQLite is single-writer.
    writer: SqlitePool,
    /// Read-only (`query_only`) connections.
    reader: SqlitePool,
    /// Every timestamp the database writes or compares against (creation,
    /// leases, expiry) comes from here; the system clock unless
    /// [`Db::with_clock`] set another.
    clock: SharedClock,
}

impl Db {
    /// This handle with `clock` as its source of time (tests pass a
    /// [`easel_core::ManualClock`] to move past a lease without sleeping).
    /// Clones made afterwards share it.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Db {
        self.clock = clock;
        self
    }

    /// The clock this database stamps and compares times with; the rest of
    /// the application reads the time here too, so one clock rules them all.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The current time by [`Db::clock`].
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_default()
    }

    /// The current time in milliseconds since the epoch, as stored.
    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// The default clock of a newly opened database.
fn system_clock() -> SharedClock {
    SystemClock::shared()
}
