//! A parser for the Prometheus text exposition format (version 0.0.4) and
//! for OpenMetrics text (what the server's prometheus-client writes), as much
//! of either as `easel top` reads: `# TYPE` lines and samples with labels;
//! `# HELP`, `# UNIT`, other comments, timestamps and exemplars
//! (` # {labels} value`) are skipped, and `# EOF` ends the exposition.
//!
//! The two formats name counters differently: 0.0.4 writes
//! `# TYPE x_total counter`, OpenMetrics `# TYPE x counter` with samples
//! still named `x_total`. `easel top` reads samples by their full name
//! (`easel_http_requests_total`), so it reads both alike.
//!
//! References: <https://prometheus.io/docs/instrumenting/exposition_formats/#text-format-details>,
//! <https://github.com/prometheus/OpenMetrics/blob/v1.0.0/specification/OpenMetrics.md>.

use std::collections::BTreeMap;

/// Labels of one sample, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name as written (`easel_x_bucket`, `easel_x_sum`, ...).
    pub name: String,
    /// Its labels.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
}

/// A whole scrape.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Samples in the order they appeared.
    pub samples: Vec<Sample>,
    /// `# TYPE` of each metric family (`counter`, `gauge`, `histogram`,
    /// `info`, ...), keyed by the name on the TYPE line.
    pub types: BTreeMap<String, String>,
}

/// A line that is not valid exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

impl Exposition {
    /// Parses a scrape.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut out = Exposition::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let err = |message: String| ParseError {
                line: i + 1,
                message,
            };
            if line.is_empty() {
                continue;
            }
            if line == "# EOF" {
                break;
            }
            if let Some(rest) = line.strip_prefix('#') {
                let mut parts = rest.split_whitespace();
                if parts.next() == Some("TYPE") {
                    let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                        return Err(err("a TYPE line needs a name and a type".into()));
                    };
                    out.types.insert(name.to_string(), kind.to_string());
                }
                continue;
            }
            out.samples.push(parse_sample(line).map_err(err)?);
        }
        Ok(out)
    }

    /// Samples named `name` whose labels include every pair of `filter`.
    pub fn select<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && filter
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Distinct values of label `label` on samples named `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .select(name, &[])
            .filter_map(|s| s.labels.get(label).cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Cumulative buckets `(le, count)` of histogram `name` summed over the
    /// series matching `filter`, sorted by `le` (`+Inf` last).
    pub fn buckets(&self, name: &str, filter: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for s in self.select(&bucket, filter) {
            let Some(le) = s.labels.get("le").and_then(|v| parse_value(v).ok()) else {
                continue;
            };
            // Order floats by their bit pattern, valid for non-negative and
            // for negative ones separately: map to a total order first.
            let key = total_order_key(le);
            by_le.entry(key).or_insert((le, 0.0)).1 += s.value;
        }
        by_le.into_values().collect()
    }
}

fn total_order_key(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or_else(|| format!("no value after {line:?}"))?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("a sample needs a value")?;
    let value = parse_value(value)?;
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Labels up to the closing `}`; returns them and the text after it.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = s.find('=').ok_or("a label needs `=`")?;
        let key = s[..eq].trim().to_string();
        if key.is_empty() {
            return Err("empty label name".into());
        }
        s = s[eq + 1..].trim_start();
        let body = s.strip_prefix('"').ok_or("a label value must be quoted")?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated escape".into()),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        labels.insert(key, value);
        s = body[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        }
    }
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|_| format!("bad value {v:?}")),
    }
}

/// The `q` quantile of cumulative buckets, interpolated linearly inside the
/// bucket it falls in, as PromQL's `histogram_quantile` does: below the
/// first bucket's bound it interpolates from 0 (or returns the bound when
/// that is not positive); in the `+Inf` bucket it returns the highest
/// finite bound. None when there are no observations.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 || !buckets.last()?.0.is_infinite() {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0_f64, 0.0_f64);
    for (i, &(le, count)) in buckets.iter().enumerate() {
        if count >= rank {
            if le.is_infinite() {
                return Some(buckets.get(i.wrapping_sub(1)).map_or(0.0, |b| b.0));
            }
            if i == 0 && le <= 0.0 {
                return Some(le);
            }
            let lower = if i == 0 { 0.0 } else { prev.0 };
            let in_bucket = count - prev.1;
            if in_bucket <= 0.0 {
                return Some(le);
            }
            return Some(lower + (le - lower) * (rank - prev.1) / in_bucket);
        }
        prev = (le, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_escapes_and_special_values() {
        let text = "# HELP x_total Things.\n# TYPE x_total counter\n\
                    x_total{route=\"/v1/jobs/{id}\",msg=\"a \\\"quoted\\\" \\\\ b\\n\"} 3 1700000000\n\
                    y +Inf\nz{} NaN\n";
        let e = Exposition::parse(text).unwrap();
        assert_eq!(e.types["x_total"], "counter");
        assert_eq!(e.samples[0].labels["route"], "/v1/jobs/{id}");
        assert_eq!(e.samples[0].labels["msg"], "a \"quoted\" \\ b\n");
        assert_eq!(e.samples[0].value, 3.0);
        assert!(e.samples[1].value.is_infinite());
        assert!(e.samples[2].value.is_nan());
    }

    /// What the server's prometheus-client writes: OpenMetrics text (the
    /// `# UNIT` line and the exemplar are ones it may write, not the
    /// server's today).
    const OPENMETRICS: &str = include_str!("../../tests/fixtures/top/openmetrics.txt");

    #[test]
    fn parses_openmetrics_as_prometheus_client_writes_it() {
        let e = Exposition::parse(OPENMETRICS).unwrap();
        // Counter families are typed without `_total`, sampled with it.
        assert_eq!(e.types["easel_http_requests"], "counter");
        assert_eq!(e.types["easel_build_info"], "gauge");
        assert_eq!(e.types["easel_generation_duration_seconds"], "histogram");
        assert!(!e.types.contains_key("easel_http_requests_total"));
        let requests: f64 = e
            .select("easel_http_requests_total", &[])
            .map(|s| s.value)
            .sum();
        assert_eq!(requests, 9.0);
        // `le` first, written `1.0`; the exemplar after `#` is not the value.
        let b = e.buckets("easel_generation_duration_seconds", &[("tier", "realtime")]);
        assert_eq!(
            b,
            vec![
                (0.1, 0.0),
                (0.25, 2.0),
                (0.5, 4.0),
                (1.0, 6.0),
                (f64::INFINITY, 6.0)
            ]
        );
        assert_eq!(
            e.select("easel_build_info", &[]).next().unwrap().labels["version"],
            "0.1.0"
        );
        assert_eq!(
            e.select("easel_models_loaded", &[]).next().unwrap().value,
            1.0
        );
    }

    #[test]
    fn nothing_after_eof_is_read() {
        let e = Exposition::parse("a_total 1\n# EOF\nb_total 2\nnot a sample\n").unwrap();
        assert_eq!(e.samples.len(), 1);
        assert_eq!(e.samples[0].name, "a_total");
    }

    #[test]
    fn rejects_broken_lines_naming_the_line() {
        for bad in ["x{a=\"1\" 2", "x{a=1} 2", "x", "x abc", "x{a=\"1} 2"] {
            let err = Exposition::parse(&format!("# ok\n{bad}\n")).unwrap_err();
            assert_eq!(err.line, 2, "{bad}: {err}");
        }
    }

    #[test]
    fn quantiles_interpolate_like_histogram_quantile() {
        // 10 observations in (1, 10], 10 in (10, 15].
        let b = [
            (1.0, 0.0),
            (10.0, 10.0),
            (15.0, 20.0),
            (f64::INFINITY, 20.0),
        ];
        assert_eq!(quantile(0.5, &b), Some(10.0));
        assert_eq!(quantile(0.95, &b), Some(14.5));
        assert_eq!(quantile(0.25, &b), Some(5.5));
        // Everything above the last finite bound: that bound.
        let over = [(1.0, 0.0), (f64::INFINITY, 4.0)];
        assert_eq!(quantile(0.5, &over), Some(1.0));
        assert_eq!(quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
        // Negative bounds (the quality score's) sort before positive ones.
        let e = Exposition::parse(
            "s_bucket{le=\"0.1\"} 3\ns_bucket{le=\"-0.1\"} 1\ns_bucket{le=\"+Inf\"} 4\ns_bucket{le=\"0\"} 2\n",
        )
        .unwrap();
        let les: Vec<f64> = e.buckets("s", &[]).iter().map(|b| b.0).collect();
        assert_eq!(les, vec![-0.1, 0.0, 0.1, f64::INFINITY]);
    }
}
