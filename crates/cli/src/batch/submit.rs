//! `easel batch submit FILE`: a `.jsonl` file of OpenAI Batch API requests
//! is uploaded (`POST /v1/files`, `purpose=batch`) and the batch made from
//! its id; a `.toml` prompt template is sent as the batch's `template`
//! (converted to JSON as it is; the server names any key it does not
//! know). Prints the batch's id, status, size and estimate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Map, Value, json};

use super::meter;
use super::{Api, parse_positive};
use crate::admin_api::send;

/// The only endpoint a batch's lines may call.
const ENDPOINT: &str = "/v1/images/generations";

/// Flags of `easel batch submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The requests: a `.jsonl` file (one OpenAI Batch API request per
    /// line) or a `.toml` prompt template (`prompt`, `variables` or
    /// `rows`, `body`; see docs/batches.md).
    file: PathBuf,
    /// Run this share of the lines first (percent, above 0 and below 100)
    /// and stop for approval (`easel batch approve`).
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    dry_run: Option<f64>,
    /// The most the batch may cost (above 0, in the unit of
    /// `metrics.price_per_device_second`); it pauses when the next line
    /// would pass it.
    #[arg(long, value_name = "AMOUNT", value_parser = parse_positive)]
    cap: Option<f64>,
    /// How long the batch may take: `24h`, or a whole number of hours
    /// from `1h` to `168h`.
    #[arg(long, default_value = "24h", value_parser = parse_window)]
    window: String,
    /// A metadata pair kept with the batch (repeatable; up to 16).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_pair)]
    metadata: Vec<(String, String)>,
}

/// What a batch is made from.
#[derive(Debug, PartialEq)]
enum Source {
    /// A JSONL file to upload first.
    Jsonl,
    /// A TOML template, sent inline.
    Template,
}

/// Which source `file` is, from its extension.
fn source_of(file: &Path) -> anyhow::Result<Source> {
    match file.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("jsonl") => Ok(Source::Jsonl),
        Some(e) if e.eq_ignore_ascii_case("toml") => Ok(Source::Template),
        _ => bail!(
            "{}: a batch is made from a `.jsonl` file of requests or a `.toml` template; \
             no other extension is accepted",
            file.display()
        ),
    }
}

/// Runs `easel batch submit`.
pub async fn run(api: &Api, args: SubmitArgs) -> anyhow::Result<()> {
    let file = &args.file;
    let source = match source_of(file)? {
        Source::Jsonl => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let id = upload(api, file, bytes).await?;
            json!({ "input_file_id": id })
        }
        Source::Template => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let table: toml::Table = toml::from_str(&text)
                .with_context(|| format!("{} is not valid TOML", file.display()))?;
            let template = toml_to_json(toml::Value::Table(table))
                .with_context(|| format!("converting {} to JSON", file.display()))?;
            json!({ "template": template })
        }
    };
    let body = request(source, &args);
    let url = format!("{}/v1/batches", api.base);
    let batch = api.call(reqwest::Method::POST, Some(&body), &url).await?;
    if api.json {
        println!("{}", serde_json::to_string_pretty(&batch)?);
    } else {
        print!("{}", created(&batch));
    }
    Ok(())
}

/// Uploads a JSONL file with `purpose=batch`; returns its id.
async fn upload(api: &Api, file: &Path, bytes: Vec<u8>) -> anyhow::Result<String> {
    let name = file
        .file_name()
        .map_or("input.jsonl".into(), |n| n.to_string_lossy().into_owned());
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(name)
        .mime_str("application/jsonl")
        .context("the upload's content type")?;
    let form = reqwest::multipart::Form::new()
        .text("purpose", "batch")
        .part("file", part);
    let url = format!("{}/v1/files", api.base);
    let req = api.client.post(&url).multipart(form);
    let uploaded = send(req, api.key.as_deref(), &url).await?;
    uploaded["id"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{url} answered without a file id: {uploaded}"))
}

/// The body of `POST /v1/batches`: `source` (`input_file_id` or
/// `template`) and the flags, those not given left out.
fn request(source: Value, args: &SubmitArgs) -> Value {
    let mut body = source;
    body["endpoint"] = json!(ENDPOINT);
    body["completion_window"] = json!(args.window);
    if let Some(pct) = args.dry_run {
        body["dry_run_percent"] = json!(pct);
    }
    if let Some(cap) = args.cap {
        body["cost_cap"] = json!(cap);
    }
    if !args.metadata.is_empty() {
        let pairs: BTreeMap<&str, &str> = args
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        body["metadata"] = json!(pairs);
    }
    body
}

/// A TOML value as JSON: tables and arrays as they are, a date or time as
/// its TOML text.
fn toml_to_json(value: toml::Value) -> anyhow::Result<Value> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => Value::from(
            serde_json::Number::from_f64(f)
                .with_context(|| format!("{f} has no JSON form: use a finite number"))?,
        ),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(toml_to_json)
                .collect::<anyhow::Result<_>>()?,
        ),
        toml::Value::Table(table) => Value::Object(
            table
                .into_iter()
                .map(|(k, v)| Ok((k, toml_to_json(v)?)))
                .collect::<anyhow::Result<Map<_, _>>>()?,
        ),
    })
}

/// The new batch in a few lines: id, status and size, the estimate (its
/// unknown figures said so), a dry run or cap, and how to follow it.
fn created(batch: &Value) -> String {
    let id = batch["id"].as_str().unwrap_or("?");
    let total = batch["request_counts"]["total"].as_u64().unwrap_or(0);
    let mut out = format!(
        "{id} {}: {total} requests\n",
        batch["status"].as_str().unwrap_or("?")
    );
    let e = &batch["estimate"];
    if e.is_object() {
        let figure = |key: &str, show: &dyn Fn(f64) -> String| {
            e[key].as_f64().map_or("unknown".to_string(), show)
        };
        out.push_str(&format!(
            "  estimate: {} images, {} device time, cost {}, ETA {}\n",
            e["images"]
                .as_u64()
                .map_or("unknown".to_string(), |n| n.to_string()),
            figure("device_seconds", &device_time),
            figure("cost", &meter::amount),
            figure("eta_seconds", &meter::duration),
        ));
        if let Some(basis) = e["basis"].as_str() {
            out.push_str(&format!("  basis: {basis}\n"));
        }
    }
    if let Some(pct) = batch["dry_run_percent"].as_f64() {
        out.push_str(&format!(
            "  dry run: {pct}% of the lines first, then it waits for `easel batch approve {id}`\n"
        ));
    }
    if let Some(cap) = batch["cost_cap"].as_f64() {
        out.push_str(&format!("  cost cap: {}\n", meter::amount(cap)));
    }
    out.push_str(&format!("Follow it: easel batch status {id} --watch\n"));
    out
}

/// Device time: seconds with a decimal under a minute (a small model's
/// images take fractions of one), else as a duration.
fn device_time(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1} s of")
    } else {
        format!("{} of", meter::duration(seconds))
    }
}

fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches('%').parse::<f64>() {
        Ok(x) if x > 0.0 && x < 100.0 => Ok(x),
        Ok(_) => Err("must be above 0 and below 100 (a percentage of the lines)".into()),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

fn parse_window(text: &str) -> Result<String, String> {
    let hours = text
        .strip_suffix('h')
        .and_then(|h| h.parse::<u32>().ok())
        .filter(|h| (1..=168).contains(h));
    match hours {
        Some(_) => Ok(text.to_string()),
        None => Err("must be a whole number of hours from 1h to 168h, e.g. 24h".into()),
    }
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err("must be KEY=VALUE with a non-empty KEY".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SubmitArgs {
        SubmitArgs {
            file: "t.toml".into(),
            dry_run: None,
            cap: None,
            window: "24h".into(),
            metadata: vec![],
        }
    }

    #[test]
    fn the_extension_picks_the_source_and_others_are_refused_by_name() {
        assert_eq!(source_of(Path::new("a/b.jsonl")).unwrap(), Source::Jsonl);
        assert_eq!(source_of(Path::new("b.TOML")).unwrap(), Source::Template);
        let e = source_of(Path::new("prompts.txt")).unwrap_err().to_string();
        assert!(
            e.contains("prompts.txt") && e.contains("`.jsonl`") && e.contains("`.toml`"),
            "{e}"
        );
        assert!(source_of(Path::new("noext")).is_err());
    }

    #[test]
    fn flags_not_given_are_left_out_of_the_request() {
        let body = request(json!({"input_file_id": "file_1"}), &args());
        assert_eq!(
            body,
            json!({"input_file_id": "file_1", "endpoint": ENDPOINT, "completion_window": "24h"})
        );
        let full = SubmitArgs {
            dry_run: Some(10.0),
            cap: Some(25.0),
            window: "48h".into(),
            metadata: vec![("team".into(), "art".into()), ("run".into(), "a=b".into())],
            ..args()
        };
        let body = request(json!({"template": {"prompt": "x"}}), &full);
        assert_eq!(body["dry_run_percent"], json!(10.0));
        assert_eq!(body["cost_cap"], json!(25.0));
        assert_eq!(body["completion_window"], "48h");
        assert_eq!(body["metadata"], json!({"team": "art", "run": "a=b"}));
        assert_eq!(body["template"]["prompt"], "x");
    }

    #[test]
    fn a_toml_template_becomes_the_same_json() {
        let text = r#"
            prompt = "a {color} {object}"
            [variables]
            color = ["red", "blue"]
            object = ["lamp", "cup"]
            [body]
            size = "16x16"
            steps = 2
            guidance_scale = 3.5
            [[rows]]
            when = 1979-05-27
        "#;
        let table: toml::Table = toml::from_str(text).unwrap();
        let v = toml_to_json(toml::Value::Table(table)).unwrap();
        assert_eq!(
            v,
            json!({
                "prompt": "a {color} {object}",
                "variables": {"color": ["red", "blue"], "object": ["lamp", "cup"]},
                "body": {"size": "16x16", "steps": 2, "guidance_scale": 3.5},
                "rows": [{"when": "1979-05-27"}],
            })
        );
        assert!(toml_to_json(toml::Value::Float(f64::NAN)).is_err());
    }

    #[test]
    fn flag_values_are_checked_with_the_reason() {
        assert_eq!(parse_percent("10"), Ok(10.0));
        assert_eq!(parse_percent("2.5%"), Ok(2.5));
        assert!(
            parse_percent("0")
                .unwrap_err()
                .contains("above 0 and below 100")
        );
        assert!(parse_percent("100").is_err());
        assert_eq!(parse_window("1h"), Ok("1h".into()));
        assert!(parse_window("169h").is_err());
        assert!(parse_window("1d").is_err());
        assert_eq!(parse_pair("k=v=w"), Ok(("k".into(), "v=w".into())));
        assert!(parse_pair("=v").is_err());
        assert!(parse_pair("kv").is_err());
    }

    #[test]
    fn the_creation_summary_says_what_is_unknown() {
        let b = json!({
            "id": "batch_1", "status": "in_progress", "request_counts": {"total": 4},
            "estimate": {"images": 4, "device_seconds": null, "cost": null, "eta_seconds": null,
                         "basis": "tiny: no image made yet to measure"},
            "dry_run_percent": 25.0, "cost_cap": 2.0,
        });
        let text = created(&b);
        assert!(
            text.starts_with("batch_1 in_progress: 4 requests\n"),
            "{text}"
        );
        assert!(
            text.contains("estimate: 4 images, unknown device time, cost unknown, ETA unknown"),
            "{text}"
        );
        assert!(text.contains("basis: tiny: no image"), "{text}");
        assert!(text.contains("25% of the lines first"), "{text}");
        assert!(text.contains("cost cap: 2.00"), "{text}");
        let measured = json!({
            "id": "batch_2", "status": "in_progress", "request_counts": {"total": 400},
            "estimate": {"images": 400, "device_seconds": 35.6, "cost": 0.0356, "eta_seconds": 5220.0,
                         "basis": "tiny: 400 images at the mean of its last 200"},
        });
        let text = created(&measured);
        assert!(
            text.contains("estimate: 400 images, 35.6 s of device time, cost 0.04, ETA 1h27m"),
            "{text}"
        );
        assert!(
            !text.contains("dry run") && !text.contains("cost cap"),
            "{text}"
        );
    }
}
