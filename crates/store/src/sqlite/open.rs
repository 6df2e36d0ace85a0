//! Opening the database: file creation, pragmas, pools and migrations.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::SqliteDb;
use crate::DbOptions;
use crate::error::{Result, StoreError};

impl SqliteDb {
    /// Opens (creating if needed, with its parent folder) the database at
    /// `path` and brings its schema up to date.
    pub(crate) async fn open(path: &Path, options: &DbOptions) -> Result<SqliteDb> {
        let open_err = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| open_err(Box::new(e)))?;
        }

        let base = connect_options(path, options);
        // The writer first: it creates the file and switches it to WAL, which
        // the readers then find in place.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(base.clone().create_if_missing(true))
            .await
            .map_err(|e| open_err(Box::new(e)))?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;

        let reader = SqlitePoolOptions::new()
            .max_connections(options.read_connections.max(1))
            .connect_with(base.pragma("query_only", "ON"))
            .await
            .map_err(|e| open_err(Box::new(e)))?;

        tracing::debug!(path = %path.display(), "database open");
        Ok(SqliteDb { writer, reader })
    }

    /// Checks that the database answers a trivial query.
    pub(crate) async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// Closes both pools, waiting for connections in use to be returned.
    pub(crate) async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

fn connect_options(path: &Path, options: &DbOptions) -> SqliteConnectOptions {
    // `filename` takes the path as is (a URL would misread `?` or `#`).
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        // In WAL mode NORMAL is durable against process crashes and keeps
        // commits fast; only a power loss can undo the last transactions.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(options.busy_timeout)
        .foreign_keys(true)
}
