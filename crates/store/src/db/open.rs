//! Opening a [`Db`]: by URL ([`Db::connect`]) or by SQLite file path
//! ([`Db::open`]), with the options both backends read.

use std::path::Path;
use std::time::Duration;

use super::{Backend, Db};
use crate::error::Result;
use crate::postgres::PgDb;
use crate::sqlite::SqliteDb;
use crate::url::DatabaseUrl;

/// Tuning knobs for [`Db::connect_with`] and [`Db::open_with`];
/// [`Db::connect`] and [`Db::open`] use the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbOptions {
    /// SQLite: how long a statement waits for another process's lock before
    /// failing with a busy error; default 5 s.
    pub busy_timeout: Duration,
    /// SQLite: connections in the read pool (writes have one of their own);
    /// default 4.
    pub read_connections: u32,
    /// PostgreSQL: the most connections this process keeps to the server,
    /// reads and writes together; default 10.
    pub max_connections: u32,
    /// PostgreSQL: how long opening waits for the server to answer, and a
    /// query for a free pooled connection, before failing; default 5 s.
    pub connect_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            read_connections: 4,
            max_connections: 10,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl Db {
    /// Opens the database that `url` (`database.url`) names and brings its
    /// schema up to date:
    /// - `sqlite://<path>`: a SQLite file, created with its folder if
    ///   missing, as [`Db::open`] does (`sqlite:///abs/path.db` is
    ///   absolute, `sqlite://data/easel.db` relative);
    /// - `postgres://…` or `postgresql://…`: a PostgreSQL database, which
    ///   must exist.
    ///
    /// A URL of another form is [`StoreError::InvalidUrl`](crate::StoreError::InvalidUrl);
    /// a server that does not answer is
    /// [`StoreError::Unreachable`](crate::StoreError::Unreachable), naming its host.
    pub async fn connect(url: &str) -> Result<Db> {
        Self::connect_with(url, DbOptions::default()).await
    }

    /// [`Db::connect`] with explicit options.
    pub async fn connect_with(url: &str, options: DbOptions) -> Result<Db> {
        match DatabaseUrl::parse(url)? {
            DatabaseUrl::Sqlite(path) => Self::open_with(path, options).await,
            DatabaseUrl::Postgres(url) => Ok(Db::new(Backend::Postgres(
                PgDb::open(&url, &options).await?,
            ))),
        }
    }

    /// Opens (creating if needed, with its parent folder) the SQLite database
    /// at `path` and brings its schema up to date.
    pub async fn open(path: impl AsRef<Path>) -> Result<Db> {
        Self::open_with(path, DbOptions::default()).await
    }

    /// [`Db::open`] with explicit options.
    pub async fn open_with(path: impl AsRef<Path>, options: DbOptions) -> Result<Db> {
        Ok(Db::new(Backend::Sqlite(
            SqliteDb::open(path.as_ref(), &options).await?,
        )))
    }
}
