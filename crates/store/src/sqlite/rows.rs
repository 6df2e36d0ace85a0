//! How a SQLite row answers [`Columns`]: JSON is text, flags are integers.

use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::error::{Result, StoreError};
use crate::rows::Columns;

impl Columns for SqliteRow {
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
        Ok(self.try_get::<i64, _>(column)? != 0)
    }

    fn opt_json<T: DeserializeOwned>(&self, column: &'static str) -> Result<Option<T>> {
        let text: Option<String> = self.try_get(column)?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::corrupt(column, e)))
            .transpose()
    }
}
