//! `easel batch status ID [--watch]`: a batch's summary, or a live
//! progress line until the batch ends (`completed`, `failed`, `expired`,
//! `cancelled`) or stops for the caller (`awaiting_approval`,
//! `paused_budget`, `paused`), then what to do next.
//!
//! The line is redrawn in place when stderr is a terminal (through
//! `crate::progress`); otherwise a plain line is printed each time the
//! status or a count changes, so a log shows the progress without a line
//! per poll. The exit status is 0 when the batch completed or waits for
//! the caller, non-zero when it failed, expired or was cancelled.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use serde_json::Value;

use super::Api;
use super::meter::{self, Eta, Progress, RateMeter};

/// Polls in a row that may fail to reach the server before `--watch`
/// gives up: a long watch outlives a restart or a network blip.
const MAX_UNREACHABLE_POLLS: u32 = 5;

/// Flags of `easel batch status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The batch's id (`batch_…`).
    id: String,
    /// Follow the batch with a live progress line (on stderr) until it
    /// ends or waits for approval or a higher cap.
    #[arg(long)]
    watch: bool,
    /// Seconds between polls with `--watch` (at least 0.05).
    #[arg(long, default_value = "2", value_name = "SECONDS", value_parser = parse_interval)]
    interval: f64,
}

/// How a batch's status reads for a watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Still running (or cancelling, validating, finalizing): poll again.
    Running,
    /// Finished as hoped, or waiting for the caller: exit 0.
    Fine,
    /// Failed, expired or cancelled: exit non-zero.
    Bad,
}

fn stop_of(status: &str) -> Stop {
    match status {
        "completed" | "awaiting_approval" | "paused_budget" | "paused" => Stop::Fine,
        "failed" | "expired" | "cancelled" => Stop::Bad,
        _ => Stop::Running,
    }
}

/// Runs `easel batch status`.
pub async fn run(api: &Api, args: StatusArgs) -> anyhow::Result<()> {
    let url = api.batch_url(&args.id, "");
    let mut batch = api.call(reqwest::Method::GET, None, &url).await?;
    if !args.watch {
        return api.print_batch(&batch);
    }
    let started = Instant::now();
    let mut rates = RateMeter::default();
    let line = crate::progress::line();
    let mut last_printed: Option<(String, u64, u64)> = None;
    let mut unreachable = 0;
    loop {
        let status = text(&batch["status"]).to_string();
        let progress = progress_of(&batch, &mut rates, started.elapsed().as_secs_f64());
        let drawn = format!("{status}: {}", meter::line(&progress));
        if line.is_hidden() {
            let key = (status.clone(), progress.completed, progress.failed);
            if last_printed.as_ref() != Some(&key) {
                eprintln!("{drawn}");
                last_printed = Some(key);
            }
        } else {
            line.set_message(drawn);
        }
        if stop_of(&status) != Stop::Running {
            break;
        }
        tokio::time::sleep(Duration::from_secs_f64(args.interval)).await;
        match api.call(reqwest::Method::GET, None, &url).await {
            Ok(b) => {
                batch = b;
                unreachable = 0;
            }
            // Only a server that cannot be reached is waited for; an
            // answer (a 404, a 401) is final.
            Err(e) if e.downcast_ref::<reqwest::Error>().is_some() => {
                unreachable += 1;
                if unreachable >= MAX_UNREACHABLE_POLLS {
                    return Err(e);
                }
                line.suspend(|| eprintln!("warning: {e:#} (retrying)"));
            }
            Err(e) => return Err(e),
        }
    }
    line.finish_and_clear();
    let status = text(&batch["status"]).to_string();
    let eta = eta_of(&batch, rates.rate());
    if api.json {
        println!("{}", serde_json::to_string_pretty(&batch)?);
        eprint!("{}", next_steps(&batch));
    } else {
        print!("{}{}", summary(&batch, Some(eta)), next_steps(&batch));
    }
    if stop_of(&status) == Stop::Bad {
        bail!("batch {} ended {status}", args.id);
    }
    Ok(())
}

/// The progress line's figures at `now` (seconds since the watch began),
/// after recording the settled count in `rates`.
fn progress_of(batch: &Value, rates: &mut RateMeter, now: f64) -> Progress {
    let (completed, failed, total) = counts(batch);
    rates.observe(now, completed + failed);
    Progress {
        completed,
        failed,
        total,
        rate: rates.rate(),
        eta: eta_of(batch, rates.rate()),
        cost: batch["spend"]["cost"].as_f64().unwrap_or(0.0),
        cap: batch["cost_cap"].as_f64(),
    }
}

fn counts(batch: &Value) -> (u64, u64, u64) {
    let c = &batch["request_counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    (n("completed"), n("failed"), n("total"))
}

/// The time left: at `rate` when measured, else from the estimate.
fn eta_of(batch: &Value, rate: Option<f64>) -> Eta {
    let (completed, failed, total) = counts(batch);
    let remaining = total.saturating_sub(completed + failed);
    meter::eta(
        remaining,
        total,
        rate,
        batch["estimate"]["eta_seconds"].as_f64(),
    )
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

/// A batch in a few lines: id and status, counts, cost against the cap,
/// the ETA while it runs (`eta`, else from the estimate), the dry run's
/// figures, and the result files.
pub fn summary(batch: &Value, eta: Option<Eta>) -> String {
    let (completed, failed, total) = counts(batch);
    let status = text(&batch["status"]);
    let mut out = format!(
        "{} {status}: {completed}/{total} done, {failed} failed\n",
        text(&batch["id"]),
    );
    let cost = batch["spend"]["cost"].as_f64().unwrap_or(0.0);
    out.push_str(&match batch["cost_cap"].as_f64() {
        Some(cap) => format!(
            "  cost: {} of the cap {}\n",
            meter::amount(cost),
            meter::amount(cap)
        ),
        None => format!("  cost: {} (no cap)\n", meter::amount(cost)),
    });
    if stop_of(status) == Stop::Running && status != "cancelling" {
        let eta = eta.unwrap_or_else(|| eta_of(batch, None));
        out.push_str(&match eta {
            Eta::Measured(s) => format!("  ETA: {}\n", meter::duration(s)),
            Eta::Estimated(s) => format!("  ETA: about {} (estimate)\n", meter::duration(s)),
            Eta::Unknown => "  ETA: unknown\n".to_string(),
        });
    }
    let dry = &batch["dry_run"];
    if dry.is_object() {
        out.push_str(&format!(
            "  dry run: {} of {} lines completed, {} failed, {} images, cost {}, mean quality {}, {} flagged, {} refused\n",
            dry["completed"].as_u64().unwrap_or(0),
            dry["requests"].as_u64().unwrap_or(0),
            dry["failed"].as_u64().unwrap_or(0),
            dry["images"].as_u64().unwrap_or(0),
            meter::amount(dry["cost"].as_f64().unwrap_or(0.0)),
            dry["mean_quality_score"].as_f64().map_or("-".into(), |q| format!("{q:.3}")),
            dry["flagged_images"].as_u64().unwrap_or(0),
            dry["moderation_refused"].as_u64().unwrap_or(0),
        ));
    }
    for (label, key) in [
        ("output file", "output_file_id"),
        ("error file", "error_file_id"),
    ] {
        if let Some(file) = batch[key].as_str() {
            out.push_str(&format!("  {label}: {file}\n"));
        }
    }
    out
}

/// What to do about a batch that waits for its caller; empty otherwise.
fn next_steps(batch: &Value) -> String {
    let id = text(&batch["id"]);
    match text(&batch["status"]) {
        "awaiting_approval" => format!(
            "The dry run is done. Run the rest: `easel batch approve {id}` \
             (POST /v1/batches/{id}/approve), or `easel batch cancel {id}`.\n"
        ),
        "paused_budget" => format!(
            "Paused at the cost cap. Raise it to go on: `easel batch cap {id} AMOUNT` \
             (PATCH /v1/batches/{id} {{\"cost_cap\": AMOUNT}}), or `easel batch cancel {id}`.\n"
        ),
        "paused" => format!(
            "Paused. Go on with `easel batch resume {id}` (POST /v1/batches/{id}/resume), or \
             `easel batch cancel {id}`.\n"
        ),
        _ => String::new(),
    }
}

fn parse_interval(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.05 => Ok(x),
        Ok(_) => Err("must be at least 0.05 seconds".into()),
        Err(_) => Err(format!("`{text}` is not a number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn batch(status: &str) -> Value {
        json!({
            "id": "batch_1", "status": status, "cost_cap": 25.0,
            "request_counts": {"total": 100, "completed": 40, "failed": 2},
            "estimate": {"images": 100, "device_seconds": 50.0, "cost": 1.0, "eta_seconds": 200.0, "basis": "m"},
            "spend": {"requests": 42, "completed": 40, "failed": 2, "images": 40, "cost": 0.42,
                      "mean_quality_score": 0.3, "flagged_images": 0, "moderation_refused": 0},
            "dry_run": null,
        })
    }

    #[test]
    fn statuses_that_end_a_watch_and_their_exit() {
        assert_eq!(stop_of("in_progress"), Stop::Running);
        assert_eq!(stop_of("cancelling"), Stop::Running);
        assert_eq!(stop_of("completed"), Stop::Fine);
        assert_eq!(stop_of("awaiting_approval"), Stop::Fine);
        assert_eq!(stop_of("paused_budget"), Stop::Fine);
        assert_eq!(stop_of("paused"), Stop::Fine);
        assert_eq!(stop_of("expired"), Stop::Bad);
        assert_eq!(stop_of("cancelled"), Stop::Bad);
        assert_eq!(stop_of("failed"), Stop::Bad);
    }

    #[test]
    fn the_summary_shows_counts_cost_against_the_cap_and_the_estimated_eta() {
        let text = summary(&batch("in_progress"), None);
        assert!(
            text.starts_with("batch_1 in_progress: 40/100 done, 2 failed\n"),
            "{text}"
        );
        assert!(text.contains("cost: 0.42 of the cap 25.00"), "{text}");
        // 58 of 100 lines left of an estimated 200 s.
        assert!(text.contains("ETA: about 1m56s (estimate)"), "{text}");
        let done = summary(&batch("completed"), None);
        assert!(!done.contains("ETA"), "{done}");
    }

    #[test]
    fn the_progress_uses_the_measured_rate_once_there_is_one() {
        let mut rates = RateMeter::default();
        let mut b = batch("in_progress");
        let p = progress_of(&b, &mut rates, 0.0);
        assert_eq!(p.eta, Eta::Estimated(116.0));
        b["request_counts"]["completed"] = json!(50);
        let p = progress_of(&b, &mut rates, 10.0);
        assert_eq!(p.rate, Some(1.0));
        assert_eq!(p.eta, Eta::Measured(48.0));
        assert_eq!((p.cost, p.cap), (0.42, Some(25.0)));
    }

    #[test]
    fn a_paused_or_waiting_batch_says_what_to_do_next() {
        let waiting = next_steps(&batch("awaiting_approval"));
        assert!(
            waiting.contains("POST /v1/batches/batch_1/approve"),
            "{waiting}"
        );
        let paused = next_steps(&batch("paused_budget"));
        assert!(
            paused.contains("PATCH /v1/batches/batch_1 {\"cost_cap\": AMOUNT}"),
            "{paused}"
        );
        assert!(
            paused.contains("easel batch cap batch_1 AMOUNT"),
            "{paused}"
        );
        assert_eq!(next_steps(&batch("completed")), "");
    }

    #[test]
    fn the_interval_is_a_positive_number_of_seconds() {
        assert_eq!(parse_interval("0.2"), Ok(0.2));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("soon").is_err());
    }
}
