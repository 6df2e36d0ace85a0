//! Calling a running deployment's admin API from the command line
//! (`easel workers`, `easel models register`, `easel rollout`): one JSON
//! call with an optional bearer key, its error answer turned into a
//! one-line message with the server's code.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

/// An HTTP client with a timeout long enough for a candidate model to load
/// (`easel rollout start` waits for it).
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("building the HTTP client")
}

/// Sends `method url` (with `body` as JSON, if any) and returns the JSON
/// answer; an error answer becomes an error naming the status, message
/// and code.
pub async fn call(
    client: &reqwest::Client,
    api_key: Option<&str>,
    method: reqwest::Method,
    body: Option<&Value>,
    url: &str,
) -> anyhow::Result<Value> {
    let mut req = client.request(method, url);
    if let Some(key) = api_key {
        req = req.bearer_auth(key);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    let r = req.send().await.with_context(|| format!("calling {url}"))?;
    let status = r.status();
    let body: Value = r
        .json()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    if !status.is_success() {
        let error = &body["error"];
        bail!(
            "{url} answered {status}: {} ({})",
            error["message"].as_str().unwrap_or("no message"),
            error["code"].as_str().unwrap_or("no code"),
        );
    }
    Ok(body)
}

/// Percent-encodes what an id or name could hold that a path cannot.
pub fn urlencode(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_escaped_for_the_path() {
        assert_eq!(urlencode("node-a-7-beef"), "node-a-7-beef");
        assert_eq!(urlencode("a/b c"), "a%2Fb%20c");
    }
}
