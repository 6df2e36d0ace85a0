//! A batch's manifest: one entry per image made (and one per line that
//! made none), in line order, as JSONL or CSV. Columns: `custom_id`,
//! `line`, `status`, `prompt`, `seed`, `image_id`, `file` (its name in
//! the zip export), `url` (signed, expiring), `quality_score`, `flags`,
//! `needs_review`, `cost`, `attempts`, `error_code`, `error_message`; the
//! JSONL adds `retries`, each retried attempt with its reason.
//!
//! It is read straight from the items joined to their images, a page of
//! lines per query, so a 10,000-line manifest costs a few dozen queries
//! and no image read.

use axum::http::HeaderMap;
use easel_store::{BatchRecord, ManifestRow};
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

/// Lines read per query.
pub const PAGE_LINES: u32 = 500;

/// The CSV columns, in order.
pub const COLUMNS: [&str; 15] = [
    "custom_id",
    "line",
    "status",
    "prompt",
    "seed",
    "image_id",
    "file",
    "url",
    "quality_score",
    "flags",
    "needs_review",
    "cost",
    "attempts",
    "error_code",
    "error_message",
];

/// Which format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// RFC 4180, with a header line.
    Csv,
}

impl Format {
    /// Its media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/jsonl",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// One manifest entry.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The caller's id for the line.
    pub custom_id: String,
    /// The line, from 0.
    pub line: u32,
    /// `succeeded`, `failed`, `cancelled`, `expired`, `pending` or
    /// `submitted`.
    pub status: String,
    /// The prompt (the template's filled in).
    pub prompt: String,
    /// The image's seed (the request's for a line with no image).
    pub seed: Option<u64>,
    /// The image.
    pub image_id: Option<String>,
    /// The image's name in the zip export.
    pub file: Option<String>,
    /// A signed, expiring link to the image.
    pub url: Option<String>,
    /// Its quality score.
    pub quality_score: Option<f64>,
    /// Its flags (`nsfw_flagged`, `near_copy`, …).
    pub flags: Vec<String>,
    /// Whether QA asks a person to look at it.
    pub needs_review: bool,
    /// What the image cost.
    pub cost: Option<f64>,
    /// Jobs made for the line.
    pub attempts: u32,
    /// JSONL only: the failed attempts that were retried, with their
    /// reasons (`[{"attempt", "job_id", "code", "message"}]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<serde_json::Value>,
    /// Why the line failed.
    pub error_code: Option<String>,
    /// Why it failed, for people.
    pub error_message: Option<String>,
}

/// The name of an image in the zip export: `images/`, the line (zero
/// padded), the custom id made safe for file systems, the image's place in
/// its job, and its format.
pub fn file_name(line: u32, custom_id: &str, index: u32, format: &str) -> String {
    let safe: String = custom_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let ext = match format {
        "jpeg" => "jpg",
        other => other,
    };
    format!("images/{line:06}_{}_{index}.{ext}", safe.trim_matches('.'))
}

/// The entry of a manifest row, with a signed link to its image.
pub async fn entry(
    state: &AppState,
    headers: &HeaderMap,
    row: &ManifestRow,
) -> Result<Entry, ApiError> {
    let params = &row.request["params"];
    let (prompt, seed, image_id, file, url, score, flags, cost) = match &row.image {
        Some(image) => {
            let id = image
                .id
                .parse()
                .map_err(|e| ApiError::internal("reading a manifest", e))?;
            let url = state
                .image_link(id, &image.project, &image.object_key, headers)
                .await?;
            (
                image.prompt.clone(),
                Some(image.seed),
                Some(image.id.clone()),
                Some(file_name(
                    row.line,
                    &row.custom_id,
                    image.index,
                    &image.format,
                )),
                Some(url),
                image.quality_score,
                image.flags.clone(),
                Some(image.cost),
            )
        }
        None => (
            params["prompt"].as_str().unwrap_or_default().to_string(),
            params["seed"].as_u64(),
            None,
            None,
            None,
            None,
            Vec::new(),
            None,
        ),
    };
    Ok(Entry {
        custom_id: row.custom_id.clone(),
        line: row.line,
        status: row.status.as_str().to_string(),
        prompt,
        seed,
        image_id,
        file,
        url,
        quality_score: score,
        flags,
        needs_review: row.needs_review,
        cost,
        attempts: row.attempts,
        retries: row.retries.clone(),
        error_code: row.error_code.clone(),
        error_message: row.error_message.clone(),
    })
}

/// The CSV header line.
pub fn csv_header() -> String {
    let mut line = COLUMNS.join(",");
    line.push_str("\r\n");
    line
}

/// One CSV field: quoted when it holds a comma, quote or line break; a
/// text starting with `=`, `+`, `-` or `@` gets a leading `'` so a
/// spreadsheet shows it instead of running it as a formula.
fn csv_field(text: &str, free_text: bool) -> String {
    let guarded = if free_text && text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// An entry as a CSV line.
pub fn csv_line(e: &Entry) -> String {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let fields = [
        csv_field(&e.custom_id, true),
        e.line.to_string(),
        e.status.clone(),
        csv_field(&e.prompt, true),
        opt(e.seed.map(|s| s.to_string())),
        opt(e.image_id.clone()),
        opt(e.file.clone()),
        csv_field(&opt(e.url.clone()), false),
        opt(e.quality_score.map(|s| s.to_string())),
        csv_field(&e.flags.join(";"), false),
        e.needs_review.to_string(),
        opt(e.cost.map(|c| c.to_string())),
        e.attempts.to_string(),
        opt(e.error_code.clone()),
        csv_field(&opt(e.error_message.clone()), true),
    ];
    let mut line = fields.join(",");
    line.push_str("\r\n");
    line
}

/// An entry as a JSONL line.
pub fn jsonl_line(e: &Entry) -> Result<String, ApiError> {
    let mut line =
        serde_json::to_string(e).map_err(|err| ApiError::internal("writing a manifest", err))?;
    line.push('\n');
    Ok(line)
}

/// The manifest of lines `from..from + PAGE_LINES`, rendered; `None` past
/// the last line. Also gives the rows, for the zip export.
pub async fn page(
    state: &AppState,
    headers: &HeaderMap,
    batch: &BatchRecord,
    from: u32,
) -> Result<Option<Vec<(ManifestRow, Entry)>>, ApiError> {
    if u64::from(from) >= batch.total {
        return Ok(None);
    }
    let rows = state
        .jobs
        .db()
        .batch_manifest(&batch.id, from, from.saturating_add(PAGE_LINES))
        .await
        .map_err(|e| ApiError::store("reading a batch's manifest", e))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let e = entry(state, headers, &row).await?;
        out.push((row, e));
    }
    Ok(Some(out))
}

/// The whole manifest as a stream of byte chunks, a page at a time.
pub fn stream(
    state: AppState,
    headers: HeaderMap,
    batch: BatchRecord,
    format: Format,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send {
    futures::stream::try_unfold(Some(0u32), move |from: Option<u32>| {
        let (state, headers, batch) = (state.clone(), headers.clone(), batch.clone());
        async move {
            let Some(from) = from else {
                return Ok(None);
            };
            let io = |e: ApiError| std::io::Error::other(e.message().to_string());
            let Some(rows) = page(&state, &headers, &batch, from).await.map_err(io)? else {
                return Ok(None);
            };
            let mut chunk = if from == 0 && format == Format::Csv {
                csv_header()
            } else {
                String::new()
            };
            for (_, e) in &rows {
                match format {
                    Format::Csv => chunk.push_str(&csv_line(e)),
                    Format::Jsonl => chunk.push_str(&jsonl_line(e).map_err(io)?),
                }
            }
            Ok(Some((
                bytes::Bytes::from(chunk),
                Some(from.saturating_add(PAGE_LINES)),
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain", true), "plain");
        assert_eq!(csv_field("a, b", true), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\"", true), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)", true), "'=HYPERLINK(1)");
        assert_eq!(csv_field("line\nbreak", true), "\"line\nbreak\"");
        assert_eq!(csv_field("-x", false), "-x");
    }

    #[test]
    fn file_names_are_safe_and_ordered() {
        assert_eq!(
            file_name(7, "red/../car", 0, "png"),
            "images/000007_red_.._car_0.png"
        );
        assert_eq!(file_name(12, "a b", 1, "jpeg"), "images/000012_a_b_1.jpg");
        assert!(file_name(1, "..", 0, "png").starts_with("images/000001_"));
    }
}
