//! `easel rollout start|status|list|promote|abort` and `easel models
//! register`: model versions and guarded canary and shadow rollouts of a running
//! deployment, through its admin API (`/v1/admin/rollouts`,
//! `/v1/admin/models/{name}/versions`). Needs a key with the `admin`
//! scope when the server has keys. `docs/rollouts.md` explains the guards.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::admin_api::{block_on, call, client, urlencode};

/// Where the deployment is.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// An API (or `all`) process of the deployment.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key with the `admin` scope (sent as a bearer token).
    #[arg(long, global = true, env = "EASEL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Print the API's JSON instead of a summary.
    #[arg(long, global = true)]
    json: bool,
}

/// Flags of `easel rollout`.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: RolloutCommand,
}

/// What `easel rollout` does.
#[derive(Debug, Subcommand)]
enum RolloutCommand {
    /// Start a canary rollout of a registered version (waits for it to load).
    Start(StartArgs),
    /// A rollout's per-version figures and guard states, evaluated now.
    Status {
        /// The rollout's id (`ro_…`).
        id: String,
    },
    /// Rollouts, newest first.
    List {
        /// Only this model's.
        #[arg(long)]
        model: Option<String>,
    },
    /// Promote the candidate now: the model's name serves it.
    Promote {
        /// The rollout's id.
        id: String,
    },
    /// Stop the rollout: the candidate gets no more traffic.
    Abort {
        /// The rollout's id.
        id: String,
    },
}

/// Flags of `easel rollout start`.
#[derive(Debug, Args)]
struct StartArgs {
    /// The model (its configured name).
    #[arg(long)]
    model: String,
    /// The candidate version (its content hash, as `easel models
    /// register` printed it).
    #[arg(long)]
    candidate: String,
    /// `canary`: a share of the callers is served by the candidate;
    /// `shadow`: every caller gets the current version and a share of the
    /// requests also runs on the candidate, unseen.
    #[arg(long, default_value = "canary", value_parser = ["canary", "shadow"])]
    mode: String,
    /// The candidate's share, above 0 and at most 100: of the callers
    /// (canary) or of the requests (shadow).
    #[arg(long)]
    percent: f64,
    /// Candidate jobs to see before it may be promoted (at least 10).
    #[arg(long)]
    min_requests: u64,
    /// Largest allowed drop of the mean quality score (default 0.02).
    #[arg(long)]
    max_quality_drop: Option<f64>,
    /// Largest allowed ratio of P95 run times (default 1.5).
    #[arg(long)]
    max_latency_p95_ratio: Option<f64>,
    /// Largest allowed rise of the error rate (default 0.02).
    #[arg(long)]
    max_error_rate: Option<f64>,
    /// Largest allowed rise of the moderation block rate (default 0.02).
    #[arg(long)]
    max_block_rate: Option<f64>,
    /// The sequential test's false-alarm bound per guard (default 0.05).
    #[arg(long)]
    alpha: Option<f64>,
    /// Promote automatically when every guard passes at the minimum.
    #[arg(long)]
    auto_promote: bool,
}

/// Flags of `easel models register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The model's configured name.
    name: String,
    /// The folder holding the new version, as the workers see it.
    path: PathBuf,
}

/// Runs `easel rollout`.
pub fn run(args: RolloutArgs) -> anyhow::Result<()> {
    let api = &args.api;
    let base = base_url(api)?;
    block_on(async {
        // Starting waits for the candidate to load on the server.
        let client = client(Duration::from_secs(330))?;
        let key = api.api_key.as_deref();
        let (method, url, body) = match &args.command {
            RolloutCommand::Start(s) => {
                let mut guards = json!({"min_requests": s.min_requests});
                for (field, value) in [
                    ("max_quality_drop", s.max_quality_drop),
                    ("max_latency_p95_ratio", s.max_latency_p95_ratio),
                    ("max_error_rate", s.max_error_rate),
                    ("max_block_rate", s.max_block_rate),
                    ("alpha", s.alpha),
                ] {
                    if let Some(v) = value {
                        guards[field] = json!(v);
                    }
                }
                let body = json!({
                    "model": s.model, "candidate": s.candidate, "mode": s.mode,
                    "percent": s.percent, "guards": guards, "auto_promote": s.auto_promote,
                });
                (
                    reqwest::Method::POST,
                    format!("{base}/v1/admin/rollouts"),
                    Some(body),
                )
            }
            RolloutCommand::Status { id } => (
                reqwest::Method::GET,
                format!("{base}/v1/admin/rollouts/{}", urlencode(id)),
                None,
            ),
            RolloutCommand::List { model } => {
                let query = model
                    .as_ref()
                    .map(|m| format!("?model={}", urlencode(m)))
                    .unwrap_or_default();
                (
                    reqwest::Method::GET,
                    format!("{base}/v1/admin/rollouts{query}"),
                    None,
                )
            }
            RolloutCommand::Promote { id } => (
                reqwest::Method::POST,
                format!("{base}/v1/admin/rollouts/{}/promote", urlencode(id)),
                None,
            ),
            RolloutCommand::Abort { id } => (
                reqwest::Method::POST,
                format!("{base}/v1/admin/rollouts/{}/abort", urlencode(id)),
                None,
            ),
        };
        let answer = call(&client, key, method, body.as_ref(), &url).await?;
        if api.json {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        } else if let Some(list) = answer["data"].as_array() {
            if list.is_empty() {
                println!("no rollouts");
            }
            for r in list {
                print!("{}", summary(r));
            }
        } else {
            print!("{}", summary(&answer));
        }
        Ok(())
    })
}

/// Runs `easel models register`.
pub fn register(args: RegisterArgs) -> anyhow::Result<()> {
    let base = base_url(&args.api)?;
    block_on(async {
        // Hashing a large folder on the server takes a while.
        let client = client(Duration::from_secs(600))?;
        let url = format!("{base}/v1/admin/models/{}/versions", urlencode(&args.name));
        let body = json!({"path": args.path.display().to_string()});
        let v = call(
            &client,
            args.api.api_key.as_deref(),
            reqwest::Method::POST,
            Some(&body),
            &url,
        )
        .await?;
        if args.api.json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!(
                "{}  {}  {}  {}",
                args.name,
                v["version"].as_str().unwrap_or("?"),
                v["architecture"].as_str().unwrap_or("?"),
                v["path"].as_str().unwrap_or("?"),
            );
        }
        Ok(())
    })
}

fn base_url(api: &ApiArgs) -> anyhow::Result<String> {
    crate::admin_api::base_url(&api.url)
}

/// A rollout in a few lines: state, versions, share, and each guard.
fn summary(r: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let mut out = format!(
        "{}  {}  model {}  {}% to {} (baseline {})\n",
        s(&r["id"]),
        s(&r["state"]),
        s(&r["model"]),
        r["percent"].as_f64().unwrap_or(0.0),
        s(&r["candidate"]),
        s(&r["baseline"]),
    );
    if let Some(reason) = r["reason"].as_str() {
        out.push_str(&format!("  reason: {reason}\n"));
    }
    let e = &r["evaluation"];
    for (label, f) in [("baseline", &e["baseline"]), ("candidate", &e["candidate"])] {
        if f.is_object() {
            out.push_str(&format!(
                "  {label:<9} jobs {:>5}  errors {:>4}  blocked {:>4}  mean quality {}  p95 {}\n",
                f["jobs"].as_u64().unwrap_or(0),
                f["errors"].as_u64().unwrap_or(0),
                f["blocked"].as_u64().unwrap_or(0),
                f["mean_quality"]
                    .as_f64()
                    .map_or("-".into(), |q| format!("{q:.4}")),
                f["p95_seconds"]
                    .as_f64()
                    .map_or("-".into(), |p| format!("{p:.2} s")),
            ));
        }
    }
    for g in e["guards"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  guard {:<10} {:<7} estimate {}  margin {}  likelihood ratio {:.3} / {}\n",
            s(&g["guard"]),
            s(&g["verdict"]),
            g["estimate"]
                .as_f64()
                .map_or("-".into(), |x| format!("{x:.4}")),
            g["margin"],
            g["likelihood_ratio"].as_f64().unwrap_or(0.0),
            g["threshold"],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_shows_state_versions_and_guards() {
        let r = json!({
            "id": "ro_1", "state": "rolled_back", "model": "m", "percent": 0.0,
            "candidate": "blake3:c", "baseline": "blake3:b",
            "reason": "guard `quality` failed after 12 candidate and 40 baseline jobs",
            "evaluation": {
                "baseline": {"jobs": 40, "errors": 0, "blocked": 0, "mean_quality": 0.3, "p95_seconds": 0.5},
                "candidate": {"jobs": 12, "errors": 0, "blocked": 0, "mean_quality": 0.1, "p95_seconds": 0.5},
                "guards": [{"guard": "quality", "verdict": "fail", "estimate": 0.2, "margin": 0.02,
                            "likelihood_ratio": 1e6, "threshold": 20.0}],
            },
        });
        let text = summary(&r);
        assert!(text.starts_with("ro_1  rolled_back  model m"), "{text}");
        assert!(text.contains("guard `quality` failed"), "{text}");
        assert!(text.contains("candidate jobs    12"), "{text}");
        assert!(text.contains("guard quality    fail"), "{text}");
    }
}
