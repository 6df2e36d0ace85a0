//! Which database and object store the API tests run on: SQLite in the
//! test's data folder and the folder itself by default; PostgreSQL and S3
//! when these are set (CI runs the suite both ways):
//!
//! - `EASEL_TEST_DATABASE_URL`: a PostgreSQL server URL
//!   (`postgres://postgres@127.0.0.1:5432/postgres`); each data folder gets
//!   its own fresh database `easel_api_<unix seconds>_<n>` on it, so a test
//!   that restarts a server on the same folder finds its jobs again;
//! - `EASEL_TEST_STORAGE_URL`: `s3://<bucket>` of an existing bucket (with
//!   the `AWS_*` variables); each data folder gets its own prefix in it.
//!
//! Test databases are dropped by the next run that finds them over an hour
//! old, so an interrupted run leaves nothing behind for long.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use easel_store::{Blobs, S3Options};

/// Where one data folder's records and objects live.
#[derive(Debug, Clone)]
pub struct Backend {
    /// `None`: SQLite in the data folder.
    pub database_url: Option<String>,
    /// `None`: the data folder.
    pub storage_url: Option<String>,
}

static BACKENDS: OnceLock<Mutex<HashMap<PathBuf, Backend>>> = OnceLock::new();

/// The backend of `data_dir`, created on first use.
pub fn for_data_dir(data_dir: &Path) -> Backend {
    let map = BACKENDS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().unwrap();
    let n = map.len();
    map.entry(data_dir.to_path_buf())
        .or_insert_with(|| Backend {
            database_url: env("EASEL_TEST_DATABASE_URL").map(|server| fresh_database(&server, n)),
            storage_url: env("EASEL_TEST_STORAGE_URL")
                .map(|bucket| format!("{}/api-{}-{n}", bucket.trim_end_matches('/'), stamp())),
        })
        .clone()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("{secs}_{}", std::process::id())
}

/// Creates `easel_api_<stamp>_<n>` on the server and returns its URL. Runs
/// on its own thread and runtime: callers may be inside a runtime already.
fn fresh_database(server: &str, n: usize) -> String {
    let name = format!("easel_api_{}_{n}", stamp());
    let (url, db) = (server.to_string(), name.clone());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                use sqlx::Connection as _;
                let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                drop_stale(&mut conn).await;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
            })
    })
    .join()
    .unwrap();
    let base = server.rsplit_once('/').map_or(server, |(b, _)| b);
    format!("{base}/{name}")
}

/// Drops API test databases over an hour old (from interrupted runs).
async fn drop_stale(conn: &mut sqlx::PgConnection) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'easel_api_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        let secs = name
            .strip_prefix("easel_api_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|s| s.parse::<u64>().ok());
        if secs.is_some_and(|s| s + 3600 < now) {
            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await;
        }
    }
}

/// One number from `sql` (a `COUNT(*)` or the like), read through a
/// separate connection to the data folder's database.
pub async fn scalar(data_dir: &Path, sql: &str) -> i64 {
    query_one(data_dir, sql).await
}

/// One text value from `sql`, as [`scalar`].
pub async fn text(data_dir: &Path, sql: &str) -> String {
    query_one(data_dir, sql).await
}

/// The single value `sql` returns, from whichever database the data folder
/// uses.
async fn query_one<T>(data_dir: &Path, sql: &str) -> T
where
    T: Send + Unpin,
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match for_data_dir(data_dir).database_url {
        Some(url) => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let value = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            value
        }
        None => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(data_dir.join("easel.db"))
                .read_only(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            let value = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            value
        }
    }
}

/// Objects in the data folder's object store (generated images and stored
/// edit inputs).
pub async fn object_count(data_dir: &Path) -> usize {
    let url = for_data_dir(data_dir)
        .storage_url
        .unwrap_or_else(|| data_dir.display().to_string());
    let blobs = Blobs::connect(&url, &S3Options::default()).unwrap();
    blobs.keys("images").await.unwrap().len() + blobs.keys("inputs").await.unwrap().len()
}
