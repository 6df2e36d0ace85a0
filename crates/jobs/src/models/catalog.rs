//! Following the model catalog: how a process that loads no model (the
//! `api` role) learns the descriptions of the models its workers loaded.
//!
//! Workers publish each model's description when its load finishes
//! ([`super::Models::attach_audit_log`]); a remote pool reads the catalog
//! once at startup and then every [`CATALOG_POLL`], so a model a worker
//! loaded for the first time is served by every API replica within that.

use std::time::Duration;

use easel_engine::ModelInfo;
use easel_store::Db;
use tokio::task::JoinHandle;

use super::Models;

/// How often a remote pool reads the catalog again.
pub const CATALOG_POLL: Duration = Duration::from_secs(5);

/// Reads the catalog once into `models`; returns how many configured
/// models it describes. An entry that does not parse (a newer worker's
/// format) is skipped with a warning.
pub async fn refresh(models: &Models, db: &Db) -> easel_store::Result<usize> {
    let mut known = 0;
    for entry in db.model_catalog().await? {
        match serde_json::from_value::<ModelInfo>(entry.info) {
            Ok(info) => {
                if models.learn(&entry.name, info) {
                    known += 1;
                }
            }
            Err(e) => {
                tracing::warn!(model = %entry.name, error = %e, "skipping an unreadable model description")
            }
        }
    }
    Ok(known)
}

/// Keeps `models` up to date with the catalog, every [`CATALOG_POLL`],
/// until the task is aborted.
pub fn follow(models: Models, db: Db) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CATALOG_POLL);
        loop {
            tick.tick().await;
            if let Err(e) = refresh(&models, &db).await {
                tracing::warn!(error = %e, "could not read the model catalog");
            }
        }
    })
}
