//! `easel batch`: batches of a running server through its Batch API
//! (`/v1/files`, `/v1/batches`; `docs/batches.md`). Needs a key with the
//! `generate` scope (`read` for `status`) when the server has keys.
//!
//! Layout:
//! - [`submit`]: `submit FILE`, a `.jsonl` upload or a `.toml` template,
//!   and the estimate it printed.
//! - [`watch`]: `status ID [--watch]`, the live progress line and what to
//!   do when a batch stops for approval or at its cost cap.
//! - [`meter`]: the pure parts of the progress line: rate and ETA
//!   smoothing, the bar, durations and amounts as text.
//! - [`download`]: `download ID -o DIR`, the export zip streamed to DIR
//!   and extracted.
//!
//! `approve`, `pause`, `resume`, `cancel` and `cap` are one call each,
//! here.

mod download;
mod meter;
mod submit;
mod watch;

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::admin_api::{base_url, block_on, call, client, urlencode};

/// How long one call may take: uploads of up to 100 MiB included.
const CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Flags of `easel batch`.
#[derive(Debug, Args)]
pub struct BatchArgs {
    /// An API (or `all`) process of the deployment.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key with the `generate` scope (sent as a bearer token).
    #[arg(long, global = true, env = "EASEL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Print the API's JSON (the batch object) instead of a summary.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: BatchCommand,
}

/// What `easel batch` does.
#[derive(Debug, Subcommand)]
enum BatchCommand {
    /// Create a batch from a `.jsonl` file of requests (uploaded first) or
    /// a `.toml` prompt template; prints its id and estimate.
    Submit(submit::SubmitArgs),
    /// A batch's progress, cost and ETA; `--watch` follows it until it
    /// ends or stops for approval or at its cost cap.
    Status(watch::StatusArgs),
    /// Download a batch's images and manifests (the export zip) into a
    /// folder.
    Download(download::DownloadArgs),
    /// Run the rest of a dry run (`awaiting_approval`).
    Approve {
        /// The batch's id (`batch_…`).
        id: String,
    },
    /// Pause a batch: no more of its lines are submitted until it is
    /// resumed (those queued or running finish).
    Pause {
        /// The batch's id (`batch_…`).
        id: String,
    },
    /// Resume a paused batch.
    Resume {
        /// The batch's id (`batch_…`).
        id: String,
    },
    /// Cancel a batch: lines not yet run are closed, running ones stopped.
    Cancel {
        /// The batch's id (`batch_…`).
        id: String,
    },
    /// Change a batch's cost cap; a batch in `paused_budget` resumes when
    /// the cap is raised above what it has spent.
    Cap {
        /// The batch's id (`batch_…`).
        id: String,
        /// The new cap (above 0, in the unit of
        /// `metrics.price_per_device_second`), or `none` for no cap.
        #[arg(value_parser = parse_cap_or_none)]
        amount: CapChange,
    },
}

/// The new cost cap of `easel batch cap`.
#[derive(Debug, Clone, Copy)]
enum CapChange {
    /// At most this much.
    Amount(f64),
    /// No cap.
    None,
}

/// Where the batch API is and how to answer: what every subcommand gets.
struct Api {
    /// `--url` without trailing slashes.
    base: String,
    /// `--api-key`.
    key: Option<String>,
    /// `--json`.
    json: bool,
    /// The HTTP client (timeout [`CALL_TIMEOUT`]).
    client: reqwest::Client,
}

impl Api {
    /// `{base}/v1/batches/{id}{tail}`.
    fn batch_url(&self, id: &str, tail: &str) -> String {
        format!("{}/v1/batches/{}{tail}", self.base, urlencode(id))
    }

    /// One JSON call with the key.
    async fn call(
        &self,
        method: reqwest::Method,
        body: Option<&Value>,
        url: &str,
    ) -> anyhow::Result<Value> {
        call(&self.client, self.key.as_deref(), method, body, url).await
    }

    /// Prints a batch: its JSON with `--json`, else its summary.
    fn print_batch(&self, batch: &Value) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(batch)?);
        } else {
            print!("{}", watch::summary(batch, None));
        }
        Ok(())
    }
}

/// Runs `easel batch`.
pub fn run(args: BatchArgs) -> anyhow::Result<()> {
    let api = Api {
        base: base_url(&args.url)?,
        key: args.api_key,
        json: args.json,
        client: client(CALL_TIMEOUT)?,
    };
    match args.command {
        BatchCommand::Submit(s) => block_on(submit::run(&api, s)),
        BatchCommand::Status(s) => block_on(watch::run(&api, s)),
        BatchCommand::Download(d) => download::run(&api, d),
        BatchCommand::Approve { id } => block_on(async {
            let url = api.batch_url(&id, "/approve");
            let batch = api.call(reqwest::Method::POST, None, &url).await?;
            api.print_batch(&batch)
        }),
        BatchCommand::Pause { id } => block_on(async {
            let url = api.batch_url(&id, "/pause");
            let batch = api.call(reqwest::Method::POST, None, &url).await?;
            api.print_batch(&batch)
        }),
        BatchCommand::Resume { id } => block_on(async {
            let url = api.batch_url(&id, "/resume");
            let batch = api.call(reqwest::Method::POST, None, &url).await?;
            api.print_batch(&batch)
        }),
        BatchCommand::Cancel { id } => block_on(async {
            let url = api.batch_url(&id, "/cancel");
            let batch = api.call(reqwest::Method::POST, None, &url).await?;
            api.print_batch(&batch)
        }),
        BatchCommand::Cap { id, amount } => block_on(async {
            let cap = match amount {
                CapChange::Amount(a) => json!(a),
                CapChange::None => Value::Null,
            };
            let body = json!({ "cost_cap": cap });
            let url = api.batch_url(&id, "");
            let batch = api.call(reqwest::Method::PATCH, Some(&body), &url).await?;
            api.print_batch(&batch)
        }),
    }
}

/// A finite number above 0 (`--cap`, `easel batch cap`).
fn parse_positive(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(_) => Err("must be a number above 0".into()),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

fn parse_cap_or_none(text: &str) -> Result<CapChange, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(CapChange::None);
    }
    parse_positive(text)
        .map(CapChange::Amount)
        .map_err(|e| format!("{e}, or `none` for no cap"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_is_a_positive_number_or_none() {
        assert!(matches!(parse_cap_or_none("25"), Ok(CapChange::Amount(a)) if a == 25.0));
        assert!(matches!(parse_cap_or_none("None"), Ok(CapChange::None)));
        assert!(parse_cap_or_none("0").unwrap_err().contains("above 0"));
        assert!(parse_cap_or_none("-3").is_err());
        assert!(parse_cap_or_none("inf").is_err());
        assert!(
            parse_cap_or_none("lots")
                .unwrap_err()
                .contains("not a number")
        );
    }
}
