//! Prompt drift through the API: a day of prompts like the week before
//! keeps the drift score low; a day of prompts on another subject raises
//! it over the alert's threshold (deploy/prometheus/rules.yml,
//! `EaselPromptDrift`), and `easel drift`'s report names those prompts.

use std::time::Duration;

use easel_core::ManualClock;

use crate::helpers::{TestApp, small_request, spawn_app_with_clock};

/// The alert's threshold.
const THRESHOLD: f64 = 0.25;

/// The bundled model's eval prompts (emoji names).
fn emoji_prompts() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/easel-emoji/eval/prompts.txt");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && !l.contains('='))
        .map(str::to_string)
        .take(60)
        .collect()
}

/// Prompts about something else entirely.
fn other_prompts() -> Vec<String> {
    let subjects = [
        "a quarterly revenue spreadsheet",
        "a container port at dawn",
        "a steel bridge under construction",
        "an office floor plan",
        "a legal contract on a desk",
        "a server rack in a data centre",
    ];
    let styles = [
        "aerial photograph",
        "technical drawing",
        "stock photo",
        "annual report chart",
        "architectural render",
        "blueprint",
        "corporate brochure",
        "documentary photo",
        "isometric diagram",
        "satellite image",
    ];
    subjects
        .iter()
        .flat_map(|s| styles.iter().map(move |t| format!("{s}, {t}")))
        .collect()
}

async fn submit(app: &TestApp, prompts: &[String]) {
    for p in prompts {
        let r = app.create_job(&small_request(p), None).await;
        assert_eq!(r.status(), 202, "{p}");
    }
    // Two evaluation periods: this process's figures are written.
    tokio::time::sleep(Duration::from_millis(400)).await;
}

fn drift_score(metrics: &str, window: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("easel_prompt_drift_score{{window=\"{window}\"}}")))
        .unwrap_or_else(|| panic!("no drift score for {window}:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

async fn score_after(recent: &[String]) -> (f64, easel_server::drift::Report) {
    // 2026-11-02 00:00 UTC.
    let clock = ManualClock::at(1_793_577_600_000);
    let app = spawn_app_with_clock(
        |c| {
            c.worker.enabled = false;
            c.drift.evaluate_every_seconds = 0.1;
        },
        clock.shared(),
    )
    .await;
    submit(&app, &emoji_prompts()).await;
    clock.advance(Duration::from_secs(3 * 86_400));
    submit(&app, recent).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let now = app.jobs.db().now().timestamp_millis();
    let report = easel_server::drift::report(app.jobs.db(), now, 5)
        .await
        .unwrap();
    (drift_score(&metrics, "1d"), report)
}

#[tokio::test]
async fn a_shifted_prompt_set_raises_the_drift_score_and_the_same_prompts_do_not() {
    let (same, same_report) = score_after(&emoji_prompts()).await;
    let (shifted, report) = score_after(&other_prompts()).await;
    println!("drift score (1d): same prompts {same:.4}, another subject {shifted:.4}");
    assert_eq!(same_report.baseline_prompts, 60);
    assert_eq!(report.windows[1].prompts, 60);
    assert!(same < THRESHOLD, "{same}");
    assert!(shifted > THRESHOLD, "{shifted}");
    // The prompts that moved it are the new subject's.
    let others = other_prompts();
    assert!(!report.movers.is_empty());
    for m in &report.movers {
        let text = m.prompt.as_deref().unwrap();
        assert!(others.iter().any(|o| o == text), "{text}");
    }
}
