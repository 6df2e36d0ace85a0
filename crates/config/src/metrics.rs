//! `[metrics]`: the Prometheus metrics at `GET /metrics`. Every default is
//! listed in `docs/configuration.md`.

use serde::{Deserialize, Serialize};

/// The metrics endpoint and the cost of device time (`[metrics]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` (OpenMetrics text, no API key: scrape it on a
    /// private network or firewall it). Off answers 404 there; the series
    /// are still recorded. Default: `true`. Env: `EASEL_METRICS__ENABLED`.
    pub enabled: bool,
    /// What one second of device time (an engine call's wall time) costs,
    /// in any currency unit: `easel_cost_total` counts busy seconds times
    /// this. Finite and ≥ 0. Default: `0.0` (unset: the cost series stay
    /// at 0). Env: `EASEL_METRICS__PRICE_PER_DEVICE_SECOND`.
    pub price_per_device_second: f64,
    /// What storing one GB for a month costs, in the same unit: each
    /// image's recorded cost adds its bytes times this (one month of
    /// storage). Finite and ≥ 0. Default: `0.0`.
    /// Env: `EASEL_METRICS__STORAGE_PRICE_PER_GB_MONTH`.
    pub storage_price_per_gb_month: f64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            price_per_device_second: 0.0,
            storage_price_per_gb_month: 0.0,
        }
    }
}

impl MetricsConfig {
    /// Why the section is unusable, if it is.
    pub fn problem(&self) -> Option<String> {
        let price = self.price_per_device_second;
        let storage = self.storage_price_per_gb_month;
        if !(price.is_finite() && price >= 0.0) {
            return Some(format!(
                "metrics.price_per_device_second must be a finite number ≥ 0 (cost per second \
                 of device time; 0 leaves the cost unset), got {price}"
            ));
        }
        (!(storage.is_finite() && storage >= 0.0)).then(|| {
            format!("metrics.storage_price_per_gb_month must be a finite number ≥ 0, got {storage}")
        })
    }

    /// The prices each image's recorded cost comes from.
    pub fn pricing(&self) -> easel_jobs::Pricing {
        easel_jobs::Pricing {
            per_device_second: self.price_per_device_second,
            per_gb_month: self.storage_price_per_gb_month,
        }
    }

    /// The metrics of one application, with this section's price.
    pub fn build(&self) -> easel_telemetry::metrics::Metrics {
        easel_telemetry::metrics::Metrics::new(self.price_per_device_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_or_infinite_price_is_refused_and_zero_is_fine() {
        for bad in [-1.0, f64::INFINITY, f64::NAN] {
            let config = MetricsConfig {
                price_per_device_second: bad,
                ..Default::default()
            };
            let problem = config.problem().expect("refused");
            assert!(problem.contains("price_per_device_second"), "{problem}");
        }
        assert_eq!(MetricsConfig::default().problem(), None);
        let priced = MetricsConfig {
            price_per_device_second: 0.0004,
            ..Default::default()
        };
        assert_eq!(priced.problem(), None);
    }
}
