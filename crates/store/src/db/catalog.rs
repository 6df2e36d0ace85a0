//! The model catalog: each served model's description, written by the
//! worker that loaded it and read by processes that load none (the `api`
//! role), so they validate requests exactly as a worker would. The store
//! keeps the description as an opaque JSON document.

use super::{Db, dispatch};
use crate::error::Result;
use crate::records::catalog::CatalogEntry;

impl Db {
    /// Records (or replaces) the description of model `name`.
    pub async fn publish_model(&self, name: &str, info: &serde_json::Value) -> Result<()> {
        let now = self.now_ms();
        let info = crate::rows::to_json(info, "model_catalog.info")?;
        dispatch!(self, b => b.publish_model(name, &info, now).await)
    }

    /// Every model's latest description.
    pub async fn model_catalog(&self) -> Result<Vec<CatalogEntry>> {
        dispatch!(self, b => b.model_catalog().await)
    }
}
