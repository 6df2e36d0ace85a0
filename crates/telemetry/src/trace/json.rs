//! JSON log lines with the fields of every enclosing span flattened in.
//!
//! tracing-subscriber's own JSON format nests span fields (`"span": {…}`,
//! `"spans": [...]`) and shows only one span's fields at the top; a log
//! search wants `request_id` and `job_id` as top-level keys on every line
//! made inside a request or a job, however deep. So the fmt layer stores
//! each span's fields pre-encoded ([`JsonFields`]) and [`JsonFormat`]
//! merges them, outermost span first, inner spans and then the event's own
//! fields winning on a clash.
//!
//! One line per event:
//! `{"timestamp":…,"level":"INFO","target":…,"span":"job.run",<span and
//! event fields>,"message":…}`.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Separates a key from its encoded value inside a span's stored fields.
const KEY_END: char = '\u{1f}';
/// Ends one stored field. Neither separator can occur in an encoded value
/// (control characters are escaped) or in a field name.
const FIELD_END: char = '\u{1e}';

/// Stores span fields as `key␟json-value␞…`, for [`JsonFormat`] to merge.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = Collect::default();
        fields.record(&mut visitor);
        for (key, value) in visitor.fields {
            write!(writer, "{key}{KEY_END}{value}{FIELD_END}")?;
        }
        Ok(())
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        // Appending is enough: a later value of the same key wins when the
        // line is assembled.
        self.format_fields(current.as_writer(), fields)
    }
}

/// One JSON object per event; see the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct JsonFormat;

impl<S> FormatEvent<S, JsonFields> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut merged: Vec<(String, String)> = Vec::new();
        let mut leaf = None;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                leaf = Some(span.name());
                let extensions = span.extensions();
                if let Some(stored) = extensions.get::<FormattedFields<JsonFields>>() {
                    for entry in stored.fields.split(FIELD_END).filter(|e| !e.is_empty()) {
                        if let Some((key, value)) = entry.split_once(KEY_END) {
                            set(&mut merged, key, value.to_string());
                        }
                    }
                }
            }
        }
        let mut own = Collect::default();
        event.record(&mut own);
        let mut message = None;
        for (key, value) in own.fields {
            if key == "message" {
                message = Some(value);
            } else {
                set(&mut merged, key, value);
            }
        }

        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        let mut line = String::with_capacity(256);
        line.push_str("{\"timestamp\":");
        push_str(&mut line, &time);
        line.push_str(",\"level\":");
        push_str(&mut line, meta.level().as_str());
        line.push_str(",\"target\":");
        push_str(&mut line, meta.target());
        if let Some(name) = leaf {
            line.push_str(",\"span\":");
            push_str(&mut line, name);
        }
        for (key, value) in &merged {
            if matches!(key.as_str(), "timestamp" | "level" | "target" | "span") {
                continue;
            }
            line.push(',');
            push_str(&mut line, key);
            line.push(':');
            line.push_str(value);
        }
        line.push_str(",\"message\":");
        line.push_str(message.as_deref().unwrap_or("\"\""));
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// Sets `key` in `fields`, replacing an earlier value in place.
fn set(fields: &mut Vec<(String, String)>, key: &str, value: String) {
    match fields.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => fields.push((key.to_string(), value)),
    }
}

/// Collects fields as (name, encoded JSON value), in recording order.
/// `otel.*` fields only steer the OpenTelemetry span and are left out.
#[derive(Default)]
struct Collect {
    fields: Vec<(&'static str, String)>,
}

impl Collect {
    fn put(&mut self, field: &Field, value: String) {
        if !field.name().starts_with("otel.") {
            self.fields.push((field.name(), value));
        }
    }
}

impl Visit for Collect {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, quoted(&format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, quoted(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.to_string());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinities.
        let encoded = if value.is_finite() {
            value.to_string()
        } else {
            quoted(&value.to_string())
        };
        self.put(field, encoded);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.to_string());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, quoted(&value.to_string()));
    }
}

fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_str(&mut out, text);
    out
}

/// Appends `text` as a JSON string literal (RFC 8259 escaping).
fn push_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_for_json() {
        assert_eq!(quoted("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn a_later_value_replaces_an_earlier_one_in_place() {
        let mut fields = Vec::new();
        set(&mut fields, "a", "1".into());
        set(&mut fields, "b", "2".into());
        set(&mut fields, "a", "3".into());
        assert_eq!(
            fields,
            [("a".to_string(), "3".to_string()), ("b".into(), "2".into())]
        );
    }
}
