//! One served model's description in the model catalog.

use chrono::{DateTime, Utc};

/// One model's entry in the catalog ([`crate::Db::model_catalog`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    /// The model's configured name.
    pub name: String,
    /// Its description, as the worker that loaded it wrote it (opaque to
    /// the store).
    pub info: serde_json::Value,
    /// When a worker last wrote it.
    pub updated_at: DateTime<Utc>,
}
