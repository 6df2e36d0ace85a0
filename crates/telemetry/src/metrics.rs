//! The metric catalogue (docs/observability.md) as prometheus-client families.
