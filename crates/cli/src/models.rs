//! `easel models list`: the configured models (or one `--model`), read from
//! their configs and safetensors headers alone, so listing SDXL takes
//! milliseconds and needs no memory for the network.
//!
//! Columns: NAME, ARCHITECTURE (from the configs), SIZE (the weight files
//! on disk), HASH and STATE, then the folder. The content hash is shown
//! when the engine's hash cache (`.easel-content-hash.json` in the model
//! folder, written by every load) is fresh for every weight file;
//! otherwise it reads `not computed`, and `--hash` computes it (reading
//! every weight byte once, then caching it like a load does). STATE is
//! `ok`, `damaged` (a weight file shorter than its header says, or an
//! unreadable header: the load would fail) or `error` (a config the engine
//! rejects, a missing file). Any state but `ok` makes the command exit 1.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use easel_config::{Config, Overrides};
use easel_engine::{FolderSummary, HashCache, WeightsCheck};
use serde_json::json;

/// Flags of `easel models list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// List this model folder, or only the configured model of this name
    /// (default: every configured model).
    #[arg(long, value_name = "FOLDER|NAME")]
    model: Option<PathBuf>,
    /// Compute the content hash of models whose hash is not cached (reads
    /// every weight file once; the result is cached for the next list).
    #[arg(long)]
    hash: bool,
    /// Print one JSON array instead of the table.
    #[arg(long)]
    json: bool,
}

/// One listed model.
struct Row {
    name: String,
    path: PathBuf,
    outcome: Result<(FolderSummary, Option<String>), String>,
}

/// Runs `easel models list`.
pub fn list(config_file: Option<PathBuf>, args: ListArgs) -> anyhow::Result<()> {
    let entries = entries(config_file, args.model)?;
    let rows: Vec<Row> = entries
        .into_iter()
        .map(|(name, path)| {
            let outcome = describe(&path, args.hash);
            Row {
                name,
                path,
                outcome,
            }
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&rows))?);
    } else {
        print!("{}", table(&rows));
    }
    let bad = rows.iter().filter(|r| state(r).0 != "ok").count();
    if bad > 0 {
        bail!("{bad} model(s) would not load");
    }
    Ok(())
}

/// `(name, folder)` of each model to list.
fn entries(
    config_file: Option<PathBuf>,
    model: Option<PathBuf>,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    if let Some(path) = &model
        && path.is_dir()
    {
        return Ok(vec![crate::commands::model_folder(None, model)?]);
    }
    let config = Config::load(&Overrides {
        config_file,
        ..Default::default()
    })?;
    let all = config
        .models
        .iter()
        .map(|m| (m.name.clone(), m.path.clone()));
    match model {
        None => Ok(all.collect()),
        Some(wanted) => {
            let found: Vec<_> = all
                .filter(|(n, _)| wanted.as_os_str() == n.as_str())
                .collect();
            if found.is_empty() {
                bail!(
                    "--model {}: neither a folder nor a configured model name",
                    wanted.display()
                );
            }
            Ok(found)
        }
    }
}

/// The folder's summary and, with `hash`, its freshly computed hash.
fn describe(path: &std::path::Path, hash: bool) -> Result<(FolderSummary, Option<String>), String> {
    let summary = easel_engine::inspect(path, &HashCache::Sidecar)
        .map_err(|e| format!("{}: {e}", e.code()))?;
    let computed = if hash && summary.cached_hash.is_none() {
        let h = easel_engine::loader::hash::content_hash(
            path,
            &summary.weight_files,
            &HashCache::Sidecar,
        )
        .map_err(|e| format!("{}: {e}", e.code()))?;
        Some(h)
    } else {
        None
    };
    Ok((summary, computed))
}

/// `(state, detail)` of a row.
fn state(row: &Row) -> (&'static str, Option<String>) {
    match &row.outcome {
        Err(e) => ("error", Some(e.clone())),
        Ok((s, _)) => match &s.weights {
            WeightsCheck::Complete => ("ok", None),
            WeightsCheck::Damaged { path, detail } => {
                ("damaged", Some(format!("{}: {detail}", path.display())))
            }
        },
    }
}

fn architecture(s: &FolderSummary) -> String {
    serde_json::to_value(s.architecture)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn hash(row: &Row) -> Option<String> {
    match &row.outcome {
        Ok((s, computed)) => s.cached_hash.clone().or(computed.clone()),
        Err(_) => None,
    }
}

/// The text table, one line per model, a header first.
fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<20} {:<12} {:>10} {:<24} {:<8} PATH\n",
        "NAME", "ARCHITECTURE", "SIZE", "HASH", "STATE"
    );
    for row in rows {
        let (arch, size) = match &row.outcome {
            Ok((s, _)) => (architecture(s), human_bytes(s.disk_bytes)),
            Err(_) => ("-".into(), "-".into()),
        };
        let shown: String = match (&row.outcome, hash(row)) {
            (_, Some(h)) => h.chars().take(23).collect(),
            (Ok(_), None) => "not computed".into(),
            (Err(_), None) => "-".into(),
        };
        let (state, detail) = state(row);
        out.push_str(&format!(
            "{:<20} {arch:<12} {size:>10} {shown:<24} {state:<8} {}",
            row.name,
            row.path.display()
        ));
        if let Some(detail) = detail {
            out.push_str(&format!(" ({detail})"));
        }
        out.push('\n');
    }
    out
}

fn to_json(rows: &[Row]) -> serde_json::Value {
    rows.iter()
        .map(|row| {
            let (state, detail) = state(row);
            let summary = row.outcome.as_ref().ok().map(|(s, _)| s);
            json!({
                "name": row.name,
                "path": row.path,
                "architecture": summary.map(architecture),
                "disk_bytes": summary.map(|s| s.disk_bytes),
                "content_hash": hash(row),
                "state": state,
                "detail": detail,
            })
        })
        .collect()
}

/// Bytes in binary units with one decimal: `8.8 MiB`, `6.5 GiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(9_202_758), "8.8 MiB");
        assert_eq!(human_bytes(6_938_078_334), "6.5 GiB");
    }
}
