//! The HTTP middleware settings (`[http]`): the request timeout and CORS.
//! The stack they configure is built in `easel_server::app::middleware`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The request timeout and cross-origin access (`[http]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// How long a request may take to produce its response head, in
    /// seconds, before it is answered 504 `request_timeout`; 0 turns the
    /// timeout off. Default: 60. It does not apply to the routes that wait
    /// on a job by design and have their own deadline (the synchronous
    /// `POST /v1/images/generations` and `POST /v1/images/edits`, bounded by
    /// `worker.sync_timeout_seconds` or `X-Easel-Timeout`), nor to the SSE
    /// stream `GET /v1/jobs/{id}/events`; and it never cuts a body already
    /// streaming. Env: `EASEL_HTTP__REQUEST_TIMEOUT_SECONDS`.
    pub request_timeout_seconds: u64,
    /// Origins a browser may call the API from, e.g.
    /// `["https://app.example.com"]`, each `scheme://host[:port]` exactly as
    /// the browser sends it in `Origin`; `["*"]` allows any origin. Default:
    /// empty, which sends no CORS headers at all (browsers then refuse
    /// cross-origin calls). Env: `EASEL_HTTP__CORS_ALLOWED_ORIGINS` (a TOML
    /// array).
    pub cors_allowed_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_timeout_seconds: 60,
            cors_allowed_origins: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// The request timeout, or `None` when it is turned off.
    pub fn request_timeout(&self) -> Option<Duration> {
        (self.request_timeout_seconds > 0)
            .then(|| Duration::from_secs(self.request_timeout_seconds))
    }

    /// What is wrong with the settings, for a startup error; `None` if
    /// nothing is.
    pub fn problem(&self) -> Option<String> {
        let origins = &self.cors_allowed_origins;
        if origins.iter().any(|o| o == "*") && origins.len() > 1 {
            return Some(format!(
                "http.cors_allowed_origins: \"*\" allows every origin and cannot be listed with \
                 others (got {origins:?})"
            ));
        }
        origins
            .iter()
            .filter(|o| *o != "*")
            .find(|o| !is_origin(o))
            .map(|o| {
                format!(
                    "http.cors_allowed_origins: {o:?} is not an origin; write it as the browser \
                     sends it, scheme://host[:port] with no path or trailing slash, e.g. \
                     \"https://app.example.com\""
                )
            })
    }

    /// Whether any origin is allowed (`"*"` in the list).
    pub fn any_origin(&self) -> bool {
        self.cors_allowed_origins.iter().any(|o| o == "*")
    }
}

/// `scheme://host[:port]`, nothing after: the form of an `Origin` header.
fn is_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' '])
        && is_header_value(s)
}

/// An absolute `http://` or `https://` URL with a host and no query or
/// fragment: what the web UI may put in a link's `href` (never
/// `javascript:`).
pub(crate) fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    let Some(rest) = rest else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or_default();
    !host.is_empty()
        && !s.contains(['?', '#', ' ', '"', '<', '>', '\\'])
        && s.bytes().all(|b| (b'!'..=b'~').contains(&b))
}

/// What an HTTP header value may hold (visible ASCII, spaces and tabs): an
/// origin outside it could never match a browser's `Origin` header.
fn is_header_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_origins(origins: &[&str]) -> HttpConfig {
        HttpConfig {
            cors_allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..HttpConfig::default()
        }
    }

    #[test]
    fn defaults_time_out_after_a_minute_and_send_no_cors_headers() {
        let c = HttpConfig::default();
        assert_eq!(c.request_timeout(), Some(Duration::from_secs(60)));
        assert!(c.cors_allowed_origins.is_empty() && !c.any_origin());
        assert_eq!(c.problem(), None);
    }

    #[test]
    fn a_zero_timeout_turns_the_timeout_off() {
        let c = HttpConfig {
            request_timeout_seconds: 0,
            ..HttpConfig::default()
        };
        assert_eq!(c.request_timeout(), None);
    }

    #[test]
    fn link_urls_are_http_with_a_host() {
        for good in [
            "https://grafana.example.com",
            "http://127.0.0.1:3000/",
            "https://ops.example.com/grafana",
        ] {
            assert!(is_http_url(good), "{good}");
        }
        for bad in [
            "grafana.example.com",
            "javascript:alert(1)",
            "https://",
            "https:///d",
            "ftp://grafana.example.com",
            "https://grafana.example.com/?orgId=1",
            "https://a b",
            "https://caf\u{e9}.example",
        ] {
            assert!(!is_http_url(bad), "{bad}");
        }
    }

    #[test]
    fn origins_are_checked_at_startup() {
        assert_eq!(
            with_origins(&["https://app.example.com:8443"]).problem(),
            None
        );
        assert_eq!(with_origins(&["*"]).problem(), None);
        assert!(with_origins(&["*"]).any_origin());
        assert!(!with_origins(&["https://a.example"]).any_origin());
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://",
            "http://a b",
            "https://caf\u{e9}.example",
        ] {
            let problem = with_origins(&[bad]).problem().expect(bad);
            assert!(problem.contains("is not an origin"), "{problem}");
        }
        let problem = with_origins(&["*", "https://a.example"]).problem().unwrap();
        assert!(
            problem.contains("cannot be listed with others"),
            "{problem}"
        );
    }
}
