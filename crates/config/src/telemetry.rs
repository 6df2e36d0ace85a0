//! Logs and traces (`[telemetry]`): the log line format and OTLP export of
//! spans; see "Traces and logs" in `docs/observability.md`.

use easel_telemetry::trace::{LogFormat, TraceSettings, traces_url};
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// Logs and traces (`[telemetry]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `text` (human-readable) or `json` (one object per line, with the
    /// `request_id`, `job_id` and `trace_id` of the enclosing request or
    /// job). Default: `text`. Flag: `--log-format`.
    /// Env: `EASEL_TELEMETRY__LOG_FORMAT`.
    pub log_format: LogFormat,
    /// OTLP/HTTP (protobuf) collector base URL, e.g.
    /// `http://127.0.0.1:4318`; spans go to `<endpoint>/v1/traces`.
    /// Default: unset (no export), or `OTEL_EXPORTER_OTLP_ENDPOINT` when
    /// that is set. Env: `EASEL_TELEMETRY__OTLP_ENDPOINT` (wins over the
    /// OpenTelemetry variable).
    pub otlp_endpoint: Option<String>,
    /// Share of new traces recorded and exported, 0 to 1. A request whose
    /// `traceparent` is sampled is always recorded. Default: 1.0.
    /// Env: `EASEL_TELEMETRY__SAMPLE_RATIO`.
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            sample_ratio: 1.0,
        }
    }
}

impl TelemetryConfig {
    /// Refuses an endpoint that is not an http(s) URL and a ratio outside
    /// 0..=1, naming the key.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.otlp_endpoint {
            traces_url(endpoint).map_err(|reason| {
                ConfigError::Unusable(format!(
                    "telemetry.otlp_endpoint: {reason} (expected e.g. http://127.0.0.1:4318)"
                ))
            })?;
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError::Unusable(format!(
                "telemetry.sample_ratio must be between 0 and 1, got {}",
                self.sample_ratio
            )));
        }
        Ok(())
    }

    /// The subscriber settings, with `default_filter` for `EASEL_LOG`.
    pub fn settings(&self, default_filter: &str) -> TraceSettings {
        TraceSettings {
            log_format: self.log_format,
            default_filter: default_filter.to_string(),
            otlp_endpoint: self.otlp_endpoint.clone().filter(|e| !e.trim().is_empty()),
            sample_ratio: self.sample_ratio,
        }
    }
}

#[cfg(test)]
// figment's `Jail` closures return its large error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use crate::config::{Config, Overrides};

    #[test]
    fn defaults_are_text_logs_and_no_export() {
        let c = Config::default();
        assert_eq!(c.telemetry.log_format, LogFormat::Text);
        assert_eq!(c.telemetry.otlp_endpoint, None);
        assert!(c.check().is_ok());
    }

    #[test]
    fn an_unknown_log_format_is_refused_naming_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("easel.toml", "[telemetry]\nlog_format = \"xml\"\n")?;
            let err = Config::load(&Overrides::default()).unwrap_err().to_string();
            assert!(err.contains("log_format"), "{err}");
            assert!(err.contains("xml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn an_endpoint_that_is_not_an_http_url_is_refused_naming_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("EASEL_TELEMETRY__OTLP_ENDPOINT", "collector:4318");
            let err = Config::load(&Overrides::default()).unwrap_err().to_string();
            assert!(err.contains("telemetry.otlp_endpoint"), "{err}");
            Ok(())
        });
        let mut c = Config::default();
        c.telemetry.sample_ratio = 1.5;
        let err = c.check().unwrap_err().to_string();
        assert!(err.contains("telemetry.sample_ratio"), "{err}");
    }

    #[test]
    fn the_opentelemetry_variable_is_the_default_and_easel_s_own_wins() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318");
            let c = Config::load(&Overrides::default()).unwrap();
            assert_eq!(
                c.telemetry.otlp_endpoint.as_deref(),
                Some("http://otel:4318")
            );
            jail.set_env("EASEL_TELEMETRY__OTLP_ENDPOINT", "http://easel:4318");
            let c = Config::load(&Overrides::default()).unwrap();
            assert_eq!(
                c.telemetry.otlp_endpoint.as_deref(),
                Some("http://easel:4318")
            );
            Ok(())
        });
    }

    #[test]
    fn the_flag_sets_the_log_format() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("EASEL_TELEMETRY__LOG_FORMAT", "text");
            let c = Config::load(&Overrides {
                log_format: Some(LogFormat::Json),
                ..Default::default()
            })
            .unwrap();
            assert_eq!(c.telemetry.log_format, LogFormat::Json);
            let settings = c.telemetry.settings("info");
            assert_eq!(settings.log_format, LogFormat::Json);
            assert_eq!(settings.default_filter, "info");
            Ok(())
        });
    }
}
