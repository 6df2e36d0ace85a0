//! A batch's completion webhook, signed as the Standard Webhooks
//! specification has it (docs/batches.md, "Completion webhook"):
//! - `webhook-id`: `msg_{batch id}`, the same on every retry, so a
//!   receiver can drop a second delivery;
//! - `webhook-timestamp`: Unix seconds of this try;
//! - `webhook-signature`: `v1,` and the base64 HMAC-SHA256, keyed with the
//!   bytes the batch's secret (`whsec_` + base64) encodes, of
//!   `{id}.{timestamp}.{body}`.
//!
//! The body is `{"type": "batch.completed" | "batch.cancelled" |
//! "batch.expired" | "batch.failed", "timestamp", "data": <the batch>}`.
//! A try succeeds on a 2xx answer within `batches.webhook_timeout_seconds`;
//! redirects are not followed. Unless `batches.webhook_allow_private` is
//! on, URLs naming loopback, private or link-local addresses are refused
//! when the batch is created.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use easel_store::BatchRecord;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ApiError;
use crate::state::AppState;

/// The longest URL taken.
const MAX_URL: usize = 2048;

/// A new random secret, `whsec_` and 32 bytes in base64.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// Checks a webhook URL: http or https, with a host, and (unless
/// `allow_private`) not a loopback, private or link-local address.
pub fn check_url(url: &str, allow_private: bool) -> Result<(), ApiError> {
    let bad = |why: String| ApiError::invalid("invalid_webhook_url", "webhook_url", why);
    if url.len() > MAX_URL {
        return Err(bad(format!(
            "webhook_url has {} bytes; at most {MAX_URL}",
            url.len()
        )));
    }
    let parsed =
        reqwest::Url::parse(url).map_err(|e| bad(format!("webhook_url is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(format!(
            "webhook_url has scheme `{}`; use http or https",
            parsed.scheme()
        )));
    }
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
        return Err(bad("webhook_url has no host".into()));
    };
    if allow_private {
        return Ok(());
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let private = match bare.parse::<IpAddr>() {
        Ok(ip) => is_private(ip),
        Err(_) => {
            let d = bare.to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost") || d.ends_with(".local")
        }
    };
    if private {
        return Err(bad(format!(
            "webhook_url names a loopback or private host (`{host}`); the server's \
             `batches.webhook_allow_private` is off"
        )));
    }
    Ok(())
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                // fc00::/7 (unique local) and fe80::/10 (link-local).
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// The `webhook-signature` value of `body` sent as message `id` at
/// `timestamp`, with `secret` (`whsec_…`); `None` for a malformed secret.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Sends `batch`'s completion webhook once.
pub async fn send(
    state: &AppState,
    client: &reqwest::Client,
    batch: &BatchRecord,
) -> Result<(), String> {
    let Some(hook) = &batch.webhook else {
        return Ok(());
    };
    let object = crate::routes::batches::batch_object(state, batch)
        .await
        .map_err(|e| format!("rendering the batch: {}", e.message()))?;
    let now = state.jobs.db().now();
    let body = serde_json::to_vec(&serde_json::json!({
        "type": format!("batch.{}", batch.status.as_str()),
        "timestamp": now.to_rfc3339(),
        "data": object,
    }))
    .map_err(|e| format!("encoding the body: {e}"))?;
    let id = format!("msg_{}", batch.id);
    let timestamp = now.timestamp();
    let signature = sign(&hook.secret, &id, timestamp, &body)
        .ok_or_else(|| "the batch's webhook secret is malformed".to_string())?;
    let answer = client
        .post(&hook.url)
        .header("content-type", "application/json")
        .header("user-agent", concat!("easel/", env!("CARGO_PKG_VERSION")))
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("sending: {e}"))?;
    if answer.status().is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", answer.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The Standard Webhooks specification's test vector.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn private_and_odd_urls_are_refused() {
        for url in [
            "http://127.0.0.1:9/hook",
            "http://localhost/hook",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "ftp://example.com/",
            "not a url",
        ] {
            let e = check_url(url, false).unwrap_err();
            assert_eq!(e.code(), "invalid_webhook_url", "{url}");
        }
        check_url("https://hooks.example.com/easel", false).unwrap();
        check_url("http://127.0.0.1:9/hook", true).unwrap();
    }
}
