//! Opaque pagination cursors.
//!
//! A cursor is the position of the last job on a page, `(created_at, id)`,
//! base64url-encoded so that clients treat it as opaque and cannot build
//! one from assumptions about the order. The `v1:` tag lets the format change
//! without misreading old cursors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Result, StoreError};

/// The position of a row in `(created_at, id)` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// The row's id, as stored.
    pub id: String,
}

/// Encodes a position as an opaque cursor.
pub(crate) fn encode(pos: &Position) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{}:{}", pos.created_at, pos.id))
}

/// Decodes a cursor made by [`encode`]; anything else is [`StoreError::InvalidCursor`].
pub(crate) fn decode(cursor: &str) -> Result<Position> {
    if cursor.len() > 256 {
        return Err(StoreError::InvalidCursor);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::InvalidCursor)?;
    let text = String::from_utf8(raw).map_err(|_| StoreError::InvalidCursor)?;
    let rest = text.strip_prefix("v1:").ok_or(StoreError::InvalidCursor)?;
    let (at, id) = rest.split_once(':').ok_or(StoreError::InvalidCursor)?;
    let created_at = at.parse().map_err(|_| StoreError::InvalidCursor)?;
    if id.is_empty() {
        return Err(StoreError::InvalidCursor);
    }
    Ok(Position {
        created_at,
        id: id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let pos = Position {
            created_at: 1_764_000_000_123,
            id: "job_0192".into(),
        };
        assert_eq!(decode(&encode(&pos)).unwrap(), pos);
    }

    #[test]
    fn foreign_cursors_are_rejected() {
        for bad in [
            "",
            "abc",
            "djE6",
            &URL_SAFE_NO_PAD.encode("v1:x:job"),
            &URL_SAFE_NO_PAD.encode("v2:1:job"),
        ] {
            assert!(
                matches!(decode(bad), Err(StoreError::InvalidCursor)),
                "{bad}"
            );
        }
    }
}
