//! Per-caller options of the AUTOMATIC1111-compatible API
//! (`POST /sdapi/v1/options`): a JSON object per caller, replaced whole.
//! The store does not know which options exist; the server validates them.

use super::{Db, on_pool};
use crate::error::{Result, StoreError};

const GET: &str = "SELECT options FROM client_options WHERE caller = $1";
const UPSERT: &str = "INSERT INTO client_options (caller, options, updated_at) VALUES ($1, $2, $3) \
     ON CONFLICT (caller) DO UPDATE SET options = excluded.options, updated_at = excluded.updated_at";

impl Db {
    /// The options `caller` set, or an empty object.
    pub async fn client_options(&self, caller: &str) -> Result<serde_json::Value> {
        let text: Option<String> = on_pool!(self, read, p => {
            sqlx::query_scalar(GET).bind(caller).fetch_optional(p).await?
        });
        match text {
            None => Ok(serde_json::Value::Object(Default::default())),
            Some(t) => serde_json::from_str(&t)
                .map_err(|e| StoreError::corrupt("client_options.options", e)),
        }
    }

    /// Replaces `caller`'s options with `options` (a JSON object).
    pub async fn set_client_options(
        &self,
        caller: &str,
        options: &serde_json::Value,
    ) -> Result<()> {
        let text = options.to_string();
        let now = self.now_ms();
        on_pool!(self, write, p => {
            sqlx::query(UPSERT).bind(caller).bind(text).bind(now).execute(p).await?;
        });
        Ok(())
    }
}
