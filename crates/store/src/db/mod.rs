//! [`Db`], the one public face of the database, over two backends.
//!
//! `Db` holds the clock and a [`Backend`]; every public method checks its
//! arguments, takes the time from the clock, and hands the call to the
//! backend, which runs its own SQL. What must not differ between backends
//! (page limits, cursors, the admission arithmetic, which error a refused
//! transition becomes) is decided here, once.

mod audit;
mod batch_qa;
mod batches;
mod catalog;
mod client_options;
mod drift;
mod fair_share;
mod images;
mod jobs;
mod notify;
mod open;
mod queue;
mod retention;
mod review;
mod rollouts;
pub(crate) mod tenancy;
mod usage;
mod workers;

pub use audit::MAX_AUDIT_PAGE;
pub use batches::MAX_BATCH_PAGE;
pub use drift::{PromptSample, StoredMoments};
pub(crate) use fair_share::{ShareWrites, VtimeWrite};
pub use images::MAX_IMAGE_PAGE;
pub use jobs::MAX_JOB_PAGE;
pub(crate) use jobs::queue_full;
pub use notify::{CHANNEL_CANCEL, CHANNEL_QUEUED, Listener};
pub use open::DbOptions;
pub use retention::MAX_SWEEP_BATCH;
pub use tenancy::{LAST_USED_PRECISION_MS, RateDecision};
pub use usage::{COST_SAMPLE, HOLD_BUDGET, periods};
pub use workers::WORKER_RETENTION_MS;

use easel_core::{JobId, JobStatus, SharedClock, SystemClock};

use crate::error::StoreError;
use crate::postgres::PgDb;
use crate::sqlite::SqliteDb;

/// A handle to the database: cheap to clone, safe to share across tasks.
///
/// Open it with [`Db::connect`] (by URL) or [`Db::open`] (a SQLite file);
/// every repository function is a method on it.
#[derive(Debug, Clone)]
pub struct Db {
    backend: Backend,
    /// Every timestamp the database writes or compares against (creation,
    /// leases, expiry) comes from here, on either backend; the system clock
    /// unless [`Db::with_clock`] set another.
    clock: SharedClock,
    /// Whether `clock` is the system clock, in which case leases are timed
    /// by the database server's clock instead ([`Db::lease_clock`]).
    system_clock: bool,
}

/// The database behind a [`Db`].
#[derive(Debug, Clone)]
enum Backend {
    /// One file, one writer connection and a read pool.
    Sqlite(SqliteDb),
    /// A PostgreSQL server, shared by any number of processes.
    Postgres(PgDb),
}

/// Runs the same expression against whichever backend `$db` holds.
macro_rules! dispatch {
    ($db:expr, $backend:ident => $call:expr) => {
        match &$db.backend {
            crate::db::Backend::Sqlite($backend) => $call,
            crate::db::Backend::Postgres($backend) => $call,
        }
    };
}
use dispatch;

/// Runs `$body` with `$p` bound to the pool for writes or reads: for SQL
/// text both backends share (`$N` placeholders, which SQLite accepts as
/// numbered parameters; plain types; JSON as text).
macro_rules! on_pool {
    ($db:expr, write, $p:ident => $body:expr) => {
        match &$db.backend {
            crate::db::Backend::Sqlite(b) => {
                let $p = b.writer();
                $body
            }
            crate::db::Backend::Postgres(b) => {
                let $p = b.pool();
                $body
            }
        }
    };
    ($db:expr, read, $p:ident => $body:expr) => {
        match &$db.backend {
            crate::db::Backend::Sqlite(b) => {
                let $p = b.reader();
                $body
            }
            crate::db::Backend::Postgres(b) => {
                let $p = b.pool();
                $body
            }
        }
    };
}
use on_pool;

impl Db {
    fn new(backend: Backend) -> Db {
        Db {
            backend,
            clock: SystemClock::shared(),
            system_clock: true,
        }
    }

    /// This handle with `clock` as its source of time (tests pass a
    /// [`easel_core::ManualClock`] to move past a lease without sleeping).
    /// Clones made afterwards share it.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Db {
        self.system_clock = clock.is_system();
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

    /// The time leases are stamped and checked with: `None` lets the
    /// database server use its own clock (one clock for every worker
    /// machine); a test clock set with [`Db::with_clock`] is passed down.
    fn lease_clock(&self) -> Option<i64> {
        (!self.system_clock).then(|| self.now_ms())
    }

    /// Checks that the database answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> crate::Result<()> {
        dispatch!(self, b => b.ping().await)
    }

    /// Closes the connection pools, waiting for connections in use to be
    /// returned.
    pub async fn close(&self) {
        dispatch!(self, b => b.close().await)
    }

    /// Why a conditional transition of job `id` to `to` touched no row.
    async fn transition_error(&self, id: JobId, to: JobStatus) -> StoreError {
        match self.get_job(id).await {
            Ok(job) => StoreError::InvalidTransition {
                job: id,
                from: job.status,
                to,
            },
            Err(e) => e,
        }
    }
}
