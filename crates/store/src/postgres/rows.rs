//! How a PostgreSQL row answers [`Columns`]: JSON is jsonb, flags are
//! booleans, every integer is BIGINT.

use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::types::Json;

use crate::error::{Result, StoreError};
use crate::rows::Columns;

impl Columns for PgRow {
    fn text(&self, column: &'static str) -> Result<String> {
        Ok(self.try_get(column)?)
    }

    fn opt_text(&self, column: &'static str) -> Result<Option<String>> {
        Ok(self.try_get(column)?)
    }

    fn int(&self, column: &'static str) -> Result<i64> {
        Ok(self.try_get(column)?)
    }

    fn opt_int(&self, column: &'static str) -> Result<Option<i64>> {
        Ok(self.try_get(column)?)
    }

    fn opt_float(&self, column: &'static str) -> Result<Option<f64>> {
        Ok(self.try_get(column)?)
    }

    fn flag(&self, column: &'static str) -> Result<bool> {
        Ok(self.try_get(column)?)
    }

    fn opt_json<T: DeserializeOwned>(&self, column: &'static str) -> Result<Option<T>> {
        // The database guarantees well-formed JSON; the value's shape is
        // checked here, so a mismatch is `Corrupt` as on SQLite.
        let value: Option<Json<serde_json::Value>> = self.try_get(column)?;
        value
            .map(|Json(v)| serde_json::from_value(v).map_err(|e| StoreError::corrupt(column, e)))
            .transpose()
    }
}
