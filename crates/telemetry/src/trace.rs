//! Logs and traces: the subscriber, correlation ids, OTLP export.
