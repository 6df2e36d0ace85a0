//! The SQLite backend of [`Db`](crate::Db).
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
//! macros); `crate::postgres` is the sibling with PostgreSQL's SQL. Times
//! are arguments (milliseconds from the `Db`'s clock), never `now()`.

mod audit;
mod catalog;
mod fair_share;
mod images;
mod jobs;
mod open;
mod queue;
mod retention;
mod rows;
mod tenancy;
mod usage;
mod workers;

use sqlx::SqlitePool;

/// A SQLite database: one writer connection and a read pool.
#[derive(Debug, Clone)]
pub(crate) struct SqliteDb {
    /// Exactly one connection: SQLite is single-writer.
    writer: SqlitePool,
    /// Read-only (`query_only`) connections.
    reader: SqlitePool,
}

impl SqliteDb {
    /// The writer connection (SQL shared by both backends).
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The read pool (SQL shared by both backends).
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }
}
