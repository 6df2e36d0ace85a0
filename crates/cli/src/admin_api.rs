//! Calling a running deployment's API from the command line (`easel
//! workers`, `easel models register`, `easel rollout`, `easel batch`): one
//! JSON call with an optional bearer key, its error answer turned into a
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
    if let Some(body) = body {
        req = req.json(body);
    }
    send(req, api_key, url).await
}

/// Sends a prepared request (a multipart upload, say) with the bearer key,
/// if any, and returns the JSON answer, as [`call`] does.
pub async fn send(
    mut req: reqwest::RequestBuilder,
    api_key: Option<&str>,
    url: &str,
) -> anyhow::Result<Value> {
    if let Some(key) = api_key {
        req = req.bearer_auth(key);
    }
    let r = req.send().await.with_context(|| format!("calling {url}"))?;
    checked(r, url)
        .await?
        .json()
        .await
        .with_context(|| format!("reading the answer of {url}"))
}

/// The response when it is a success; otherwise an error naming the
/// status and the server's message and code (`{"error": {"code",
/// "message"}}`), or the start of the body when it is not such JSON.
pub async fn checked(r: reqwest::Response, url: &str) -> anyhow::Result<reqwest::Response> {
    let status = r.status();
    if status.is_success() {
        return Ok(r);
    }
    let text = r.text().await.unwrap_or_default();
    match serde_json::from_str::<Value>(&text) {
        Ok(body) if body["error"].is_object() => {
            let error = &body["error"];
            bail!(
                "{url} answered {status}: {} ({})",
                error["message"].as_str().unwrap_or("no message"),
                error["code"].as_str().unwrap_or("no code"),
            )
        }
        _ => {
            let text = text.trim();
            let start: String = text.chars().take(200).collect();
            bail!(
                "{url} answered {status}: {}",
                if start.is_empty() {
                    "no message"
                } else {
                    &start
                }
            )
        }
    }
}

/// `--url` without its trailing slashes, checked to be a URL.
pub fn base_url(url: &str) -> anyhow::Result<String> {
    let base = url.trim_end_matches('/').to_string();
    reqwest::Url::parse(&base).with_context(|| format!("--url {url:?} is not a URL"))?;
    Ok(base)
}

/// Runs `f` to completion on a single-threaded runtime: these commands
/// make one call at a time.
pub fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
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
