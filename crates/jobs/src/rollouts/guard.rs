//! A rollout's guards and their sequential test (pure; no runtime).
//!
//! Each guard compares the candidate version with the baseline over the
//! same window (the jobs of the alias since the rollout started) and asks
//! one question: *is the candidate worse than the baseline by more than
//! the allowed margin?* The guards read:
//!
//! | guard | harm `Δ` | margin `θ₀` |
//! |---|---|---|
//! | quality | baseline mean score − candidate mean score | `max_quality_drop` |
//! | errors | candidate error rate − baseline error rate | `max_error_rate` |
//! | moderation | candidate block rate − baseline block rate | `max_block_rate` |
//! | latency | share of candidate runs slower than `max_latency_p95_ratio` × the baseline's P95, − 5 % | 0 |
//!
//! # The test: a mixture sequential probability ratio test
//! The guards are evaluated after every finished job, for as long as the
//! rollout runs, so a fixed-sample test (a t-test peeked at repeatedly)
//! would raise false alarms far above its nominal level. Each guard is a
//! one-sided mixture SPRT on the normal approximation of `Δ̂` (Robbins
//! 1970; the "always-valid p-values" of Johari, Pekelis & Walsh 2017):
//! with `V` the estimated variance of `Δ̂` and a normal mixture of
//! alternatives of scale `τ` around `θ₀`,
//!
//! ```text
//! Λ(τ) = sqrt(V / (V + τ²)) · exp( τ² (Δ̂ − θ₀)² / (2 V (V + τ²)) )   when Δ̂ > θ₀, else 0
//! Λ    = mean of Λ(τ) over τ ∈ {0.01, 0.03, 0.1, 0.3, 1}
//! ```
//!
//! and the guard **fails** as soon as `Λ ≥ 1/α`. Under the null (harm at
//! most `θ₀`) `Λ` is a non-negative supermartingale with mean at most 1, so
//! by Ville's inequality the chance it *ever* crosses `1/α` is at most `α`,
//! however often it is looked at; the average over five mixing scales
//! keeps that property and stays powerful for both small effects seen
//! over many jobs and large effects seen over few. Rates use the smoothed
//! `(k + 1) / (n + 2)` in their variance, so ten successes in ten jobs do
//! not claim zero variance.
//!
//! Nothing is decided before both versions have [`BURN_IN`] finished jobs
//! (the plug-in variance is too rough before). A guard **passes** once the
//! candidate has `min_requests` jobs, the test has not rejected and the
//! estimate `Δ̂` is within the margin; when every guard passes the
//! candidate may be promoted (automatically with `auto_promote`). A guard
//! with no data (a model without a quality scorer has no scores) passes
//! with a note.

use serde::{Deserialize, Serialize};

/// Neither version is judged before it has this many finished jobs.
pub const BURN_IN: u64 = 10;

/// The latency guard's quantile: 5 % of the baseline's runs are slower
/// than its P95, so more than that of the candidate's (beyond the allowed
/// ratio) is harm.
pub const LATENCY_QUANTILE: f64 = 0.95;

/// The mixture's scales (see the module docs).
pub const MIXING_SCALES: [f64; 5] = [0.01, 0.03, 0.1, 0.3, 1.0];

/// The largest `min_requests`.
pub const MAX_MIN_REQUESTS: u64 = 1_000_000;

/// What a rollout checks, as `POST /v1/admin/rollouts` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guards {
    /// Candidate jobs needed before it may be promoted (required; at least
    /// [`BURN_IN`]).
    pub min_requests: Option<u64>,
    /// Largest allowed drop of the mean quality score (cosine, 0 to 2).
    /// Default 0.02.
    #[serde(default = "defaults::quality")]
    pub max_quality_drop: f64,
    /// Largest allowed ratio of the candidate's P95 run time to the
    /// baseline's (at least 1). Default 1.5.
    #[serde(default = "defaults::latency")]
    pub max_latency_p95_ratio: f64,
    /// Largest allowed rise of the error rate over the baseline's (0 to
    /// 1). Default 0.02.
    #[serde(default = "defaults::rate")]
    pub max_error_rate: f64,
    /// Largest allowed rise of the moderation block rate over the
    /// baseline's (0 to 1). Default 0.02.
    #[serde(default = "defaults::rate")]
    pub max_block_rate: f64,
    /// The test's false-alarm bound per guard, over the whole rollout
    /// (0.001 to 0.2). Default 0.05.
    #[serde(default = "defaults::alpha")]
    pub alpha: f64,
}

mod defaults {
    pub fn quality() -> f64 {
        0.02
    }
    pub fn latency() -> f64 {
        1.5
    }
    pub fn rate() -> f64 {
        0.02
    }
    pub fn alpha() -> f64 {
        0.05
    }
}

/// A guard setting out of range: the field (under `guards.`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardError {
    /// `guards.min_requests`, …
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl Guards {
    /// Checks every setting; the first one out of range.
    pub fn validate(&self) -> Result<(), GuardError> {
        let bad = |field: &'static str, message: String| Err(GuardError { field, message });
        match self.min_requests {
            None => {
                return bad(
                    "guards.min_requests",
                    "guards.min_requests is required: the candidate jobs to see before promoting"
                        .into(),
                );
            }
            Some(n) if !(BURN_IN..=MAX_MIN_REQUESTS).contains(&n) => {
                return bad(
                    "guards.min_requests",
                    format!(
                        "guards.min_requests must be between {BURN_IN} and {MAX_MIN_REQUESTS}, got {n}"
                    ),
                );
            }
            Some(_) => {}
        }
        let ranges: [(&'static str, f64, f64, f64); 5] = [
            ("guards.max_quality_drop", self.max_quality_drop, 0.0, 2.0),
            (
                "guards.max_latency_p95_ratio",
                self.max_latency_p95_ratio,
                1.0,
                100.0,
            ),
            ("guards.max_error_rate", self.max_error_rate, 0.0, 1.0),
            ("guards.max_block_rate", self.max_block_rate, 0.0, 1.0),
            ("guards.alpha", self.alpha, 0.001, 0.2),
        ];
        for (field, value, lo, hi) in ranges {
            if !(value.is_finite() && (lo..=hi).contains(&value)) {
                return bad(
                    field,
                    format!("{field} must be between {lo} and {hi}, got {value}"),
                );
            }
        }
        Ok(())
    }

    /// `min_requests` (validated guards always have it).
    pub fn min_requests(&self) -> u64 {
        self.min_requests.unwrap_or(MAX_MIN_REQUESTS)
    }
}

/// One finished job as the guards see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// It failed (on a worker, or on the candidate before a reroute).
    pub error: bool,
    /// Image moderation blocked it.
    pub blocked: bool,
    /// Run time in milliseconds (succeeded jobs).
    pub run_ms: Option<f64>,
    /// Mean quality score of its images, where scored.
    pub quality: Option<f64>,
}

/// One version's figures over the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Finished jobs.
    pub jobs: u64,
    /// Of which failed.
    pub errors: u64,
    /// Of which moderation blocked.
    pub blocked: u64,
    /// Jobs with a quality score.
    pub scored: u64,
    /// Mean quality score (`None` without scores).
    pub mean_quality: Option<f64>,
    /// Sample variance of the quality scores.
    #[serde(skip)]
    pub var_quality: f64,
    /// P95 run time in seconds.
    pub p95_seconds: Option<f64>,
    /// Run times in milliseconds, sorted.
    #[serde(skip)]
    pub run_ms: Vec<f64>,
}

impl Figures {
    /// The figures of `samples`.
    pub fn of<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Self {
        let mut f = Figures::default();
        let mut scores = Vec::new();
        for s in samples {
            f.jobs += 1;
            f.errors += u64::from(s.error);
            f.blocked += u64::from(s.blocked);
            if let Some(q) = s.quality.filter(|q| q.is_finite()) {
                scores.push(q);
            }
            if let Some(ms) = s.run_ms.filter(|m| m.is_finite()) {
                f.run_ms.push(ms);
            }
        }
        f.scored = scores.len() as u64;
        if !scores.is_empty() {
            let n = scores.len() as f64;
            let mean = scores.iter().sum::<f64>() / n;
            f.mean_quality = Some(mean);
            f.var_quality = if scores.len() > 1 {
                scores.iter().map(|q| (q - mean).powi(2)).sum::<f64>() / (n - 1.0)
            } else {
                0.0
            };
        }
        f.run_ms.sort_by(f64::total_cmp);
        f.p95_seconds = quantile(&f.run_ms, LATENCY_QUANTILE).map(|ms| ms / 1000.0);
        f
    }
}

fn rate(k: u64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { k as f64 / n as f64 }
}

/// The smoothed rate `(k + 1) / (n + 2)`, for variances.
fn smoothed(k: u64, n: u64) -> f64 {
    (k as f64 + 1.0) / (n as f64 + 2.0)
}

/// The `q` quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The mixture likelihood ratio of harm `delta` above margin `theta0`
/// with estimated variance `v` (see the module docs).
pub fn msprt(delta: f64, theta0: f64, v: f64) -> f64 {
    if delta.is_nan() || delta <= theta0 || !delta.is_finite() {
        return 0.0;
    }
    let v = v.max(1e-12);
    let d2 = (delta - theta0).powi(2);
    let sum: f64 = MIXING_SCALES
        .iter()
        .map(|tau| {
            let t2 = tau * tau;
            let log = 0.5 * (v / (v + t2)).ln() + t2 * d2 / (2.0 * v * (v + t2));
            log.min(700.0).exp()
        })
        .sum();
    sum / MIXING_SCALES.len() as f64
}

/// A guard's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not enough jobs yet to decide either way.
    Pending,
    /// Within its margin at the minimum sample.
    Pass,
    /// The test rejected: the candidate is worse beyond the margin.
    Fail,
}

/// One guard's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardState {
    /// `quality`, `errors`, `moderation` or `latency`.
    pub guard: &'static str,
    /// The estimated harm `Δ̂` (see the module docs); `None` without data.
    pub estimate: Option<f64>,
    /// The margin `θ₀`.
    pub margin: f64,
    /// The mixture likelihood ratio `Λ`.
    pub likelihood_ratio: f64,
    /// `1/α`: `Λ` at or above it fails the guard.
    pub threshold: f64,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, when there is no estimate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What the evaluation asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Decision {
    /// Keep routing and watching.
    Continue,
    /// A guard failed: roll back now.
    RollBack {
        /// The first failing guard.
        guard: String,
    },
    /// Every guard passed at the minimum sample.
    Promote,
}

/// The full evaluation of a rollout at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// The baseline's figures.
    pub baseline: Figures,
    /// The candidate's figures.
    pub candidate: Figures,
    /// Each guard.
    pub guards: Vec<GuardState>,
    /// What to do.
    pub decision: Decision,
}

/// Evaluates `guards` on the two versions' samples.
pub fn evaluate(guards: &Guards, baseline: &[Sample], candidate: &[Sample]) -> Evaluation {
    let b = Figures::of(baseline);
    let c = Figures::of(candidate);
    let threshold = 1.0 / guards.alpha;
    let burned_in = b.jobs >= BURN_IN && c.jobs >= BURN_IN;
    let enough = c.jobs >= guards.min_requests();
    let judge = |guard: &'static str, estimate: Option<(f64, f64)>, margin: f64, note: &str| {
        let Some((delta, v)) = estimate else {
            return GuardState {
                guard,
                estimate: None,
                margin,
                likelihood_ratio: 0.0,
                threshold,
                verdict: if enough {
                    Verdict::Pass
                } else {
                    Verdict::Pending
                },
                note: Some(note.to_string()),
            };
        };
        let lr = if burned_in {
            msprt(delta, margin, v)
        } else {
            0.0
        };
        let verdict = if lr >= threshold {
            Verdict::Fail
        } else if enough && burned_in && delta <= margin {
            Verdict::Pass
        } else {
            Verdict::Pending
        };
        GuardState {
            guard,
            estimate: Some(delta),
            margin,
            likelihood_ratio: lr,
            threshold,
            verdict,
            note: None,
        }
    };

    let quality = match (b.mean_quality, c.mean_quality) {
        (Some(mb), Some(mc)) if b.scored >= 2 && c.scored >= 2 => Some((
            mb - mc,
            b.var_quality / b.scored as f64 + c.var_quality / c.scored as f64,
        )),
        _ => None,
    };
    let rate_guard = |kb: u64, kc: u64| {
        (b.jobs > 0 && c.jobs > 0).then(|| {
            let (pb, pc) = (smoothed(kb, b.jobs), smoothed(kc, c.jobs));
            (
                rate(kc, c.jobs) - rate(kb, b.jobs),
                pb * (1.0 - pb) / b.jobs as f64 + pc * (1.0 - pc) / c.jobs as f64,
            )
        })
    };
    let latency = match quantile(&b.run_ms, LATENCY_QUANTILE) {
        Some(p95) if b.run_ms.len() >= 20 && !c.run_ms.is_empty() => {
            let limit = p95 * guards.max_latency_p95_ratio;
            let n = c.run_ms.len() as u64;
            let slow = c.run_ms.iter().filter(|&&ms| ms > limit).count() as u64;
            let p = smoothed(slow, n);
            Some((
                rate(slow, n) - (1.0 - LATENCY_QUANTILE),
                p * (1.0 - p) / n as f64,
            ))
        }
        _ => None,
    };
    let states = vec![
        judge(
            "quality",
            quality,
            guards.max_quality_drop,
            "no quality scores (the model has no scorer, or scoring is off)",
        ),
        judge(
            "errors",
            rate_guard(b.errors, c.errors),
            guards.max_error_rate,
            "no finished jobs",
        ),
        judge(
            "moderation",
            rate_guard(b.blocked, c.blocked),
            guards.max_block_rate,
            "no finished jobs",
        ),
        judge("latency", latency, 0.0, "fewer than 20 baseline run times"),
    ];
    let decision = if let Some(failed) = states.iter().find(|g| g.verdict == Verdict::Fail) {
        Decision::RollBack {
            guard: failed.guard.to_string(),
        }
    } else if states.iter().all(|g| g.verdict == Verdict::Pass) {
        Decision::Promote
    } else {
        Decision::Continue
    };
    Evaluation {
        baseline: b,
        candidate: c,
        guards: states,
        decision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guards(min: u64) -> Guards {
        serde_json::from_value(serde_json::json!({"min_requests": min})).unwrap()
    }

    fn ok(q: f64, ms: f64) -> Sample {
        Sample {
            error: false,
            blocked: false,
            run_ms: Some(ms),
            quality: Some(q),
        }
    }

    /// A deterministic spread around `mean` (no random generator).
    fn scores(n: usize, mean: f64, spread: f64) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let u = ((i * 7919) % 101) as f64 / 100.0 - 0.5;
                ok(mean + spread * u, 300.0 + (i % 13) as f64 * 10.0)
            })
            .collect()
    }

    #[test]
    fn defaults_and_the_required_minimum() {
        let g: Guards = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(g.validate().unwrap_err().field, "guards.min_requests");
        let g = guards(5);
        assert!(g.validate().unwrap_err().message.contains("between 10"));
        let g = guards(50);
        g.validate().unwrap();
        assert_eq!((g.max_quality_drop, g.alpha), (0.02, 0.05));
        let mut bad = guards(50);
        bad.alpha = 0.9;
        assert_eq!(bad.validate().unwrap_err().field, "guards.alpha");
        bad = guards(50);
        bad.max_latency_p95_ratio = 0.5;
        assert_eq!(
            bad.validate().unwrap_err().field,
            "guards.max_latency_p95_ratio"
        );
        assert!(
            serde_json::from_value::<Guards>(
                serde_json::json!({"min_requests": 10, "max_qualty": 1})
            )
            .is_err(),
            "unknown fields are refused"
        );
    }

    #[test]
    fn the_same_model_passes_at_the_minimum_and_not_before() {
        let g = guards(30);
        let b = scores(120, 0.30, 0.05);
        let c = scores(20, 0.30, 0.05);
        let e = evaluate(&g, &b, &c);
        assert_eq!(e.decision, Decision::Continue, "{:?}", e.guards);
        let c = scores(30, 0.30, 0.05);
        let e = evaluate(&g, &b, &c);
        assert_eq!(e.decision, Decision::Promote, "{:?}", e.guards);
    }

    #[test]
    fn a_large_quality_drop_fails_within_a_few_jobs() {
        let g = guards(50);
        let b = scores(60, 0.30, 0.05);
        let c = scores(10, 0.10, 0.05);
        let e = evaluate(&g, &b, &c);
        assert_eq!(
            e.decision,
            Decision::RollBack {
                guard: "quality".into()
            },
            "{:?}",
            e.guards
        );
    }

    #[test]
    fn nothing_is_judged_before_the_burn_in() {
        let g = guards(50);
        let b = scores(60, 0.30, 0.05);
        let c = scores(9, -0.5, 0.05);
        assert_eq!(evaluate(&g, &b, &c).decision, Decision::Continue);
    }

    #[test]
    fn a_failing_candidate_fails_the_error_guard() {
        let g = guards(50);
        let b = scores(40, 0.30, 0.05);
        let c: Vec<Sample> = (0..10)
            .map(|_| Sample {
                error: true,
                blocked: false,
                run_ms: None,
                quality: None,
            })
            .collect();
        let e = evaluate(&g, &b, &c);
        assert_eq!(
            e.decision,
            Decision::RollBack {
                guard: "errors".into()
            }
        );
    }

    #[test]
    fn a_slow_candidate_fails_the_latency_guard() {
        let g = guards(50);
        let b = scores(60, 0.30, 0.05);
        let c: Vec<Sample> = scores(30, 0.30, 0.05)
            .into_iter()
            .map(|s| Sample {
                run_ms: s.run_ms.map(|ms| ms * 3.0),
                ..s
            })
            .collect();
        let e = evaluate(&g, &b, &c);
        assert_eq!(
            e.decision,
            Decision::RollBack {
                guard: "latency".into()
            }
        );
    }

    #[test]
    fn a_drop_within_the_margin_does_not_fail() {
        let g = guards(30);
        let b = scores(200, 0.30, 0.05);
        let c = scores(200, 0.29, 0.05);
        let e = evaluate(&g, &b, &c);
        assert_eq!(e.decision, Decision::Promote, "{:?}", e.guards);
    }

    #[test]
    fn repeated_looks_at_equal_versions_rarely_fail() {
        // Equal versions, evaluated after every job of 300: the sequential
        // test must not fail (a fixed-sample test peeked at 290 times
        // would, regularly). Pseudo-random scores from a fixed LCG.
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut failures = 0;
        for _trial in 0..20 {
            let g = guards(1000);
            let mut b = Vec::new();
            let mut c = Vec::new();
            let mut failed = false;
            for i in 0..300 {
                let s = ok(0.3 + 0.1 * (next() - 0.5), 300.0 + 100.0 * next());
                if i % 5 == 0 {
                    c.push(s)
                } else {
                    b.push(s)
                }
                if matches!(evaluate(&g, &b, &c).decision, Decision::RollBack { .. }) {
                    failed = true;
                    break;
                }
            }
            failures += u32::from(failed);
        }
        assert!(failures <= 2, "{failures} of 20 equal pairs failed a guard");
    }

    #[test]
    fn msprt_grows_with_evidence_and_is_zero_below_the_margin() {
        assert_eq!(msprt(0.01, 0.02, 1e-4), 0.0);
        let weak = msprt(0.05, 0.02, 1e-3);
        let strong = msprt(0.05, 0.02, 1e-5);
        assert!(strong > weak && strong > 20.0, "{weak} {strong}");
    }
}
