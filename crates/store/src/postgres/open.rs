//! Connecting to the server, and migrations.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::PgDb;
use crate::DbOptions;
use crate::error::{Result, StoreError};
use crate::url::redact;

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
            .application_name("easel");
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
