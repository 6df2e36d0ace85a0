//! Shared fixtures: a fresh database per test, on the backend that
//! `EASEL_TEST_DATABASE_URL` names.
//!
//! - Unset (or empty): SQLite, in a temporary folder of the test's own.
//! - `postgres://…` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`):
//!   a server on which this user may create databases. Each test creates
//!   its own `easel_test_<unix seconds>_<random>` and drops it when its
//!   [`TestDb`] is dropped. A test that panics half-way still drops it; one
//!   killed outright leaves it behind, and the first test of a later run
//!   drops every such database more than an hour old (the name says when
//!   it was made).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use easel_core::{
    GenerationParams, ImageId, JobId, ManualClock, OutputFormat, RawParams, Size, Tier,
};
use easel_store::{Db, NewImage, NewJob, StageTiming};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, SqliteConnection};
use tempfile::TempDir;

/// The variable that selects the backend of the store tests.
pub const DATABASE_URL_VAR: &str = "EASEL_TEST_DATABASE_URL";

/// The prefix of every test database's name on a PostgreSQL server.
const TEST_DATABASE_PREFIX: &str = "easel_test_";

/// Test databases older than this are someone's leftovers.
const STALE_AFTER_SECS: u64 = 3600;

/// A fresh database, and what it takes to reach it again.
pub struct TestDb {
    // Declared first, so dropped first: the store's pools go before the
    // database under them.
    pub db: Db,
    /// The database's clock: it stands still until a test advances it.
    pub clock: ManualClock,
    /// `sqlite:///…/data/easel.db` or `postgres://…/easel_test_…`.
    pub url: String,
    place: Place,
}

/// Where a test database lives, and so how it is cleaned up.
enum Place {
    /// A file in a temporary folder, removed with the folder.
    Sqlite { dir: TempDir },
    /// A database on a server, dropped with this (held only for its Drop).
    Postgres { _database: TempDatabase },
}

/// A database created on a PostgreSQL server for one test, dropped (through
/// the server's admin URL) when this is.
struct TempDatabase {
    admin_url: String,
    name: String,
}

/// A raw connection to a test database, beside the store's own pools.
pub enum Raw {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl Raw {
    /// Runs one statement; the database's error as text when it fails.
    pub async fn execute(&mut self, sql: &str) -> Result<u64, String> {
        // Tests' own statements, not user input.
        let sql = AssertSqlSafe(sql.to_string());
        let done = match self {
            Raw::Sqlite(conn) => sqlx::query(sql)
                .execute(conn)
                .await
                .map(|d| d.rows_affected()),
            Raw::Postgres(conn) => sqlx::query(sql)
                .execute(conn)
                .await
                .map(|d| d.rows_affected()),
        };
        done.map_err(|e| e.to_string())
    }
}

impl TestDb {
    /// Whether this test runs on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.place, Place::Postgres { .. })
    }

    /// Another handle on the same database, with its own pools, as a second
    /// process would open it (SQLite by path, PostgreSQL by URL), on the
    /// same clock.
    pub async fn connect_again(&self) -> Db {
        let db = match &self.place {
            Place::Sqlite { dir } => Db::open(dir.path().join("data/easel.db")).await,
            Place::Postgres { .. } => Db::connect(&self.url).await,
        };
        db.unwrap().with_clock(self.clock.shared())
    }

    /// A raw connection to the database, for what the store's API refuses.
    pub async fn raw(&self) -> Raw {
        match &self.place {
            Place::Sqlite { .. } => {
                Raw::Sqlite(SqliteConnection::connect(&self.url).await.unwrap())
            }
            Place::Postgres { .. } => {
                Raw::Postgres(PgConnection::connect(&self.url).await.unwrap())
            }
        }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which must not block on its
        // own futures: drop the database from a thread with a runtime of its
        // own, and wait for it. `WITH (FORCE)` ends the connections the
        // store's pool still has open.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(drop_database(&admin_url, &name))
                .map_err(|e| e.to_string())
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// Opens a fresh database on the backend `EASEL_TEST_DATABASE_URL` names,
/// on a stopped [`ManualClock`]. On SQLite the file is in a subfolder that
/// does not exist yet, so opening must create it.
pub async fn fresh_db() -> TestDb {
    let clock = ManualClock::starting_now();
    match test_database_url() {
        None => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("data/easel.db").display());
            let db = Db::connect(&url).await.unwrap().with_clock(clock.shared());
            TestDb {
                db,
                clock,
                url,
                place: Place::Sqlite { dir },
            }
        }
        Some(admin_url) => {
            drop_stale_databases_once(&admin_url).await;
            let name = new_database_name();
            let mut admin = PgConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|e| panic!("{DATABASE_URL_VAR}={admin_url}: {e}"));
            // Names are made here, from a fixed prefix, digits and hex.
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut admin)
                .await
                .unwrap();
            admin.close().await.unwrap();
            let url = with_database(&admin_url, &name);
            // Made before connecting, so that a failure below still drops it.
            let database = TempDatabase { admin_url, name };
            let db = Db::connect(&url).await.unwrap().with_clock(clock.shared());
            TestDb {
                db,
                clock,
                url,
                place: Place::Postgres {
                    _database: database,
                },
            }
        }
    }
}

/// The PostgreSQL server URL the tests should use, if any.
fn test_database_url() -> Option<String> {
    let url = std::env::var(DATABASE_URL_VAR)
        .ok()
        .filter(|u| !u.is_empty())?;
    assert!(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "{DATABASE_URL_VAR} must be a postgres:// URL (or unset for SQLite), got {url}"
    );
    Some(url)
}

/// `easel_test_<unix seconds>_<32 random hex digits>`.
fn new_database_name() -> String {
    let random = JobId::new().to_string();
    let random = random.rsplit('_').next().unwrap_or(&random);
    format!("{TEST_DATABASE_PREFIX}{}_{random}", unix_secs())
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `url` with its database (the path) replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    format!("{scheme}://{authority}/{name}{query}")
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = PgConnection::connect(admin_url).await?;
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await
}

/// Once per test process: drops the test databases that runs killed before
/// their cleanup left behind, judged by the time in their names.
async fn drop_stale_databases_once(admin_url: &str) {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(mut admin) = PgConnection::connect(admin_url).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(format!("{TEST_DATABASE_PREFIX}%"))
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
    let cutoff = unix_secs().saturating_sub(STALE_AFTER_SECS);
    for name in names {
        let made = name
            .strip_prefix(TEST_DATABASE_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if made.is_some_and(|made| made < cutoff) {
            // Only names of the form `new_database_name` makes reach here.
            let _ = sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await;
        }
    }
    let _ = admin.close().await;
}

pub fn params(prompt: &str, n: u32) -> GenerationParams {
    GenerationParams::validate(
        RawParams {
            model: "easel-tiny".into(),
            prompt: prompt.into(),
            n: Some(n.into()),
            ..Default::default()
        },
        Size::new(64, 64).unwrap(),
        20,
        7.5,
        || 1234,
    )
    .unwrap()
}

pub fn new_job(tier: Tier, prompt: &str) -> NewJob {
    NewJob::new(tier, params(prompt, 1))
}

pub fn new_image(params: &GenerationParams, index: u32) -> NewImage {
    let id = ImageId::new();
    NewImage {
        id,
        index_in_job: index,
        prompt: params.prompt.clone(),
        negative_prompt: params.negative_prompt.clone(),
        seed: params.image_seed(index),
        params: params.clone(),
        model: params.model.clone(),
        model_hash: "b3:0123456789abcdef".into(),
        sampler: "euler".into(),
        schedule: "default".into(),
        steps: params.steps,
        guidance: params.guidance_scale,
        width: params.size.width,
        height: params.size.height,
        format: OutputFormat::Png,
        byte_size: 1234,
        sha256: "ab".repeat(32),
        object_key: format!("images/2026/11/26/{id}.png"),
        timings: vec![
            StageTiming {
                stage: "denoise".into(),
                seconds: 0.5,
            },
            StageTiming {
                stage: "encode".into(),
                seconds: 0.01,
            },
        ],
        warnings: vec![],
        watermark_id: None,
        perceptual_hash: None,
        quality_score: None,
        device_seconds: 0.5,
        cost: 0.25,
        request_id: None,
        moderation: None,
        flags: vec![],
    }
}
