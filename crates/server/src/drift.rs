//! Prompt drift (docs/drift.md): every API process sums the embeddings of
//! the prompts it checks (the prompt policy's MiniLM) per hour, keeps a
//! reservoir sample of each hour's prompts, writes both to the database
//! every `drift.evaluate_every_seconds`, and sets
//! `easel_prompt_drift_score{window}` from every process's figures: the
//! last hours' and the last day's prompts against the 7 days before
//! (`easel_policy::prompt::drift`). `easel drift` prints the same report
//! with the prompts that moved it most.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use easel_policy::prompt::drift::Moments;
use easel_store::{Db, PromptSample, StoredMoments};
use easel_telemetry::metrics::Metrics;
use serde::Serialize;
use tokio::task::JoinHandle;

/// An hour, in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
/// How many prompts of each hour each process keeps as a sample.
pub const SAMPLES_PER_HOUR: usize = 50;
/// The baseline: the 7 days before the last day.
pub const BASELINE_DAYS: i64 = 7;

struct Hour {
    start: i64,
    moments: Moments,
    seen: u64,
    reservoir: Vec<PromptSample>,
    /// Counted into since its last write.
    dirty: bool,
}

struct State {
    hours: Vec<Hour>,
    /// The reservoir's random state (a fixed-increment generator; which
    /// prompts are kept matters only for display).
    rng: u64,
}

struct Inner {
    db: Db,
    metrics: Metrics,
    process: String,
    keep_text: bool,
    state: Mutex<State>,
}

/// The drift recorder of one process. Cheap to clone.
#[derive(Clone)]
pub struct Drift {
    inner: Arc<Inner>,
}

/// One window's figure.
#[derive(Debug, Clone, Serialize)]
pub struct WindowScore {
    /// `1h` (the current and the previous hour) or `1d` (the last 24 h).
    pub window: &'static str,
    /// Prompts in it.
    pub prompts: u64,
    /// The drift score against the baseline; `None` with too few prompts.
    pub score: Option<f64>,
}

/// A prompt that moved the last day's distribution.
#[derive(Debug, Clone, Serialize)]
pub struct Mover {
    /// Its text where `provenance.include_prompt` allows, else `None`.
    pub prompt: Option<String>,
    /// The first 16 hex digits of its BLAKE3 hash.
    pub prompt_hash: String,
    /// How far it lies along the shift of the mean.
    pub along: f64,
}

/// The drift report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Prompts in the baseline window.
    pub baseline_prompts: u64,
    /// The windows' scores.
    pub windows: Vec<WindowScore>,
    /// The last day's sampled prompts that moved it most, first the most.
    pub movers: Vec<Mover>,
}

/// A sampled prompt's text (where kept) and hash.
type Label = (Option<String>, String);

fn sum(rows: &[StoredMoments], from: i64, until: i64) -> Moments {
    let mut m = Moments::default();
    for r in rows
        .iter()
        .filter(|r| r.window_start >= from && r.window_start < until)
    {
        m.merge(&Moments {
            count: r.count,
            sum: r.sum.clone(),
            sum_sq: r.sum_sq,
        });
    }
    m
}

/// The drift report at `now_ms` from what every process wrote.
pub async fn report(db: &Db, now_ms: i64, movers: usize) -> easel_store::Result<Report> {
    let hour = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let day_start = now_ms - 24 * HOUR_MS;
    let baseline_start = day_start - BASELINE_DAYS * 24 * HOUR_MS;
    let rows = db
        .prompt_moments(baseline_start - HOUR_MS, hour + HOUR_MS)
        .await?;
    let baseline = sum(&rows, baseline_start, day_start);
    let last_hours = sum(&rows, hour - HOUR_MS, hour + HOUR_MS);
    let last_day = sum(&rows, day_start, hour + HOUR_MS);
    // The samples only for a report that names movers (the periodic
    // evaluation sets the gauges and names none).
    let movers = if movers > 0 && last_day.drift_from(&baseline).is_some() {
        let samples = db.prompt_samples(day_start, hour + HOUR_MS, 5000).await?;
        let labelled: Vec<(Label, Vec<f32>)> = samples
            .into_iter()
            .map(|s| ((s.prompt, s.prompt_hash), s.embedding))
            .collect();
        last_day
            .movers(&baseline, &labelled)
            .into_iter()
            .take(movers)
            .map(|((prompt, hash), along)| Mover {
                prompt: prompt.clone(),
                prompt_hash: hash.chars().take(16).collect(),
                along,
            })
            .collect::<Vec<_>>()
    } else {
        Vec::new()
    };
    Ok(Report {
        baseline_prompts: baseline.count,
        windows: vec![
            WindowScore {
                window: "1h",
                prompts: last_hours.count,
                score: last_hours.drift_from(&baseline),
            },
            WindowScore {
                window: "1d",
                prompts: last_day.count,
                score: last_day.drift_from(&baseline),
            },
        ],
        movers,
    })
}

impl Drift {
    /// A recorder writing to `db` as a process of its own; prompt text is
    /// kept with the samples only when `keep_text`.
    pub fn new(db: Db, metrics: Metrics, keep_text: bool) -> Self {
        // The gauges exist from the start, NaN until there is a figure.
        for window in ["1h", "1d"] {
            metrics.prompt_drift(window, f64::NAN);
        }
        Self {
            inner: Arc::new(Inner {
                db,
                metrics,
                process: format!("p_{}", uuid::Uuid::new_v4().simple()),
                keep_text,
                state: Mutex::new(State {
                    hours: Vec::new(),
                    rng: 0x9e37_79b9_7f4a_7c15,
                }),
            }),
        }
    }

    /// Counts one checked prompt and its embedding.
    pub fn observe(&self, prompt: &str, embedding: &[f32]) {
        let now = self.inner.db.now().timestamp_millis();
        let start = now.div_euclid(HOUR_MS) * HOUR_MS;
        let mut state = self.inner.state.lock().expect("drift lock");
        state.rng = state
            .rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let draw = state.rng >> 11;
        if !state.hours.iter().any(|h| h.start == start) {
            state.hours.push(Hour {
                start,
                moments: Moments::default(),
                seen: 0,
                reservoir: Vec::new(),
                dirty: false,
            });
        }
        let hour = state
            .hours
            .iter_mut()
            .find(|h| h.start == start)
            .expect("just added");
        hour.moments.add(embedding);
        hour.seen += 1;
        hour.dirty = true;
        let sample = PromptSample {
            prompt: self.inner.keep_text.then(|| prompt.to_string()),
            prompt_hash: blake3::hash(prompt.as_bytes()).to_hex().to_string(),
            embedding: embedding.to_vec(),
        };
        // Reservoir sampling: every prompt of the hour is kept with the
        // same chance.
        if hour.reservoir.len() < SAMPLES_PER_HOUR {
            hour.reservoir.push(sample);
        } else {
            let slot = (draw % hour.seen) as usize;
            if slot < SAMPLES_PER_HOUR {
                hour.reservoir[slot] = sample;
            }
        }
    }

    /// Writes this process's figures of every hour counted into since its
    /// last write; hours before the current one are dropped once written.
    /// A failed write leaves the hour to be written at the next flush.
    pub async fn flush(&self) -> easel_store::Result<()> {
        let current = self.inner.db.now().timestamp_millis().div_euclid(HOUR_MS) * HOUR_MS;
        let hours: Vec<(i64, Moments, Vec<PromptSample>)> = {
            let mut state = self.inner.state.lock().expect("drift lock");
            state
                .hours
                .iter_mut()
                .filter(|h| h.dirty)
                .map(|h| {
                    h.dirty = false;
                    (h.start, h.moments.clone(), h.reservoir.clone())
                })
                .collect()
        };
        let written = self.write(&hours).await;
        let mut state = self.inner.state.lock().expect("drift lock");
        if written.is_err() {
            for h in state.hours.iter_mut() {
                if hours.iter().any(|(start, ..)| *start == h.start) {
                    h.dirty = true;
                }
            }
        }
        state.hours.retain(|h| h.start >= current || h.dirty);
        written
    }

    async fn write(&self, hours: &[(i64, Moments, Vec<PromptSample>)]) -> easel_store::Result<()> {
        for (start, moments, reservoir) in hours {
            self.inner
                .db
                .upsert_prompt_moments(
                    &self.inner.process,
                    &StoredMoments {
                        window_start: *start,
                        count: moments.count,
                        sum: moments.sum.clone(),
                        sum_sq: moments.sum_sq,
                    },
                )
                .await?;
            for (seq, sample) in reservoir.iter().enumerate() {
                self.inner
                    .db
                    .insert_prompt_sample(*start, &self.inner.process, seq as u32, sample)
                    .await?;
            }
        }
        Ok(())
    }

    /// Writes, then sets the drift gauges from every process's figures
    /// (NaN for a window without enough prompts).
    pub async fn evaluate(&self) -> easel_store::Result<Report> {
        self.flush().await?;
        let now = self.inner.db.now().timestamp_millis();
        let report = report(&self.inner.db, now, 0).await?;
        for w in &report.windows {
            self.inner
                .metrics
                .prompt_drift(w.window, w.score.unwrap_or(f64::NAN));
        }
        Ok(report)
    }

    /// Evaluates every `every` until aborted.
    pub fn spawn(&self, every: Duration) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = me.evaluate().await {
                    tracing::warn!(error = %e, "could not measure prompt drift");
                }
            }
        })
    }
}
