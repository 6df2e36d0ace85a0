//! `easel workers`: the worker registry of a running deployment, through
//! its admin API (`GET /v1/admin/workers`), as a table or JSON; and
//! `easel workers drain ID` (`POST /v1/admin/workers/{id}/drain`). Needs a
//! key with the `admin` scope when the server has keys.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::admin_api::{call, urlencode};

/// Flags of `easel workers`.
#[derive(Debug, Args)]
pub struct WorkersArgs {
    /// An API (or `all`) process of the deployment.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key with the `admin` scope (sent as a bearer token).
    #[arg(long, global = true, env = "EASEL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<WorkersCommand>,
}

/// What `easel workers` does; listing when none is given.
#[derive(Debug, Subcommand)]
enum WorkersCommand {
    /// List the workers (the default).
    List,
    /// Ask a worker to stop claiming jobs and finish what it holds.
    Drain {
        /// The worker's id, as `easel workers` lists it.
        id: String,
    },
}

/// Runs `easel workers`.
pub fn run(args: WorkersArgs) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/').to_string();
    reqwest::Url::parse(&base).with_context(|| format!("--url {:?} is not a URL", args.url))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .context("building the HTTP client")?;
        match &args.command {
            None | Some(WorkersCommand::List) => {
                let list = call(&client, args.api_key.as_deref(), reqwest::Method::GET, None, &format!("{base}/v1/admin/workers")).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else {
                    print!("{}", table(list["data"].as_array().map(Vec::as_slice).unwrap_or_default()));
                }
            }
            Some(WorkersCommand::Drain { id }) => {
                let path = format!("{base}/v1/admin/workers/{}/drain", urlencode(id));
                let worker = call(&client, args.api_key.as_deref(), reqwest::Method::POST, None, &path).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&worker)?);
                } else {
                    println!(
                        "drain requested for {id} ({}): it stops claiming at its next heartbeat (within {} s) and finishes its {} current job(s)",
                        worker["state"].as_str().unwrap_or("?"),
                        worker["heartbeat_every_seconds"].as_f64().unwrap_or(0.0).ceil(),
                        worker["current_jobs"].as_array().map_or(0, Vec::len),
                    );
                }
            }
        }
        Ok(())
    })
}

/// The workers as an aligned text table.
fn table(workers: &[Value]) -> String {
    let header = [
        "ID",
        "HOST",
        "STATE",
        "MODELS",
        "CIRCUITS OPEN",
        "JOBS",
        "HEARTBEAT",
    ];
    let rows: Vec<[String; 7]> = workers
        .iter()
        .map(|w| {
            let list = |key: &str| {
                let items: Vec<&str> = w[key]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if items.is_empty() {
                    "-".to_string()
                } else {
                    items.join(",")
                }
            };
            [
                w["id"].as_str().unwrap_or("?").to_string(),
                w["host"].as_str().unwrap_or("?").to_string(),
                w["state"].as_str().unwrap_or("?").to_string(),
                list("models"),
                list("open_circuits"),
                w["current_jobs"].as_array().map_or(0, Vec::len).to_string(),
                format!(
                    "{:.0} s ago",
                    w["heartbeat_age_seconds"].as_f64().unwrap_or(0.0)
                ),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no worker has registered in the last day\n".into();
    }
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_columns_and_says_when_there_is_no_worker() {
        let w = serde_json::json!({
            "id": "node-a-7-0000beef", "host": "node-a", "state": "draining",
            "models": ["tiny", "sd15"], "open_circuits": [], "current_jobs": ["job_1"],
            "heartbeat_age_seconds": 3.2,
        });
        let text = table(&[w]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID"), "{text}");
        assert_eq!(lines[0].find("HOST"), lines[1].find("node-a "), "{text}");
        assert!(
            lines[1].contains("tiny,sd15") && lines[1].contains("3 s ago"),
            "{text}"
        );
        assert_eq!(table(&[]), "no worker has registered in the last day\n");
    }
}
