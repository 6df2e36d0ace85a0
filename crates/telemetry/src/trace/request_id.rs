//! Correlation ids: the `x-request-id` a client sends is kept when it is
//! safe to log and store, otherwise replaced by a fresh UUIDv7.

/// The header that carries the correlation id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest client-chosen id that is kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A new request id: a UUIDv7 in its simple (32 lowercase hex digits) form.
/// Time-ordered, so ids sort roughly by arrival, like job and image ids.
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Whether a client's id may be used as is: 1 to [`MAX_REQUEST_ID_LEN`]
/// characters of `[A-Za-z0-9._:-]`. Anything else (spaces, quotes, control
/// characters, non-ASCII) could forge log lines or break a JSON consumer
/// that does not escape, so it is replaced rather than cleaned.
pub fn is_valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The id to use for a request: the client's when valid, else a new one.
pub fn accept_request_id(client: Option<&str>) -> String {
    match client {
        Some(id) if is_valid_request_id(id) => id.to_string(),
        _ => new_request_id(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_id_is_32_hex_digits_and_valid() {
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(is_valid_request_id(&id));
    }

    #[test]
    fn a_client_id_is_kept_only_when_short_and_plain() {
        assert_eq!(accept_request_id(Some("abc-1.2_3:x")), "abc-1.2_3:x");
        let long = "a".repeat(MAX_REQUEST_ID_LEN);
        assert_eq!(accept_request_id(Some(&long)), long);
        for bad in ["", "a b", "a\"b", "é", "a\nb", &"a".repeat(129)] {
            let got = accept_request_id(Some(bad));
            assert_ne!(got, bad);
            assert_eq!(got.len(), 32, "{bad:?} replaced by a new id");
        }
        assert_eq!(accept_request_id(None).len(), 32);
    }
}
