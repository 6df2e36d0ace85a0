//! Connecting to the server, and migrations.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::PgDb;
use crate::DbOptions;
use crate::error::{Result, StoreError};
use crate::url::redact;

/// How long the server lets one of our sessions sit idle inside a
/// transaction before ending it (milliseconds).
const IDLE_IN_TRANSACTION_MS: &str = "5000";
/// How long one of our statements waits for a lock (milliseconds).
const LOCK_TIMEOUT_MS: &str = "15000";

impl PgDb {
    /// Connects to the database `url` names (which must exist) and brings
    /// its schema up to date. Replicas starting together are safe: sqlx
    /// holds an advisory lock while it migrates.
    pub(crate) async fn open(url: &str, options: &DbOptions) -> Result<PgDb> {
        let shown = redact(url);
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl {
                url: shown.clone(),
                reason: e.to_string(),
            })?
            .application_name("easel")
            // A process frozen inside a transaction (SIGSTOP, a paused VM,
            // a long stall) must not hold its row and advisory locks for
            // ever: every other worker's claim, renewal or fair-share
            // charge would wait behind it. The server ends such a session
            // after 5 s idle in a transaction (ours take milliseconds),
            // which releases its locks; the frozen process finds its
            // connection gone when it wakes, and its claim fenced off. A
            // statement that still waits on a lock gives up after 15 s
            // rather than hanging its worker.
            .options([
                (
                    "idle_in_transaction_session_timeout",
                    IDLE_IN_TRANSACTION_MS,
                ),
                ("lock_timeout", LOCK_TIMEOUT_MS),
            ]);
        let host = match connect.get_socket() {
            Some(folder) => folder.display().to_string(),
            None => format!("{}:{}", connect.get_host(), connect.get_port()),
        };
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.connect_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| open_error(e, host, shown.clone()))?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        tracing::debug!(url = %shown, "database open");
        Ok(PgDb { pool })
    }

    /// Checks that the server answers a trivial query.
    pub(crate) async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

/// A failed first connection: [`StoreError::Unreachable`] when nothing
/// answered, [`StoreError::Open`] when the server answered with an error
/// (no such database, authentication failed).
fn open_error(e: sqlx::Error, host: String, url: String) -> StoreError {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => {
            StoreError::Unreachable {
                host,
                source: Box::new(e),
            }
        }
        other => StoreError::Open {
            path: url,
            source: Box::new(other),
        },
    }
}
