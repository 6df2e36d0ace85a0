//! Admission control: how many jobs each tier may hold queued, and how long
//! a refused client should wait before trying again.
//!
//! Pure state, no runtime: [`AdmissionConfig`] holds the limits and turns a
//! full tier and a drain rate measured by a [`DrainEstimator`] (fed with
//! completions, kept on the [`crate::Bus`]) into a `Retry-After` in whole
//! seconds. The limit itself is enforced by the store
//! ([`easel_store::Db::insert_job_bounded`] counts and inserts in one write
//! transaction), so a burst of concurrent submissions never overshoots it;
//! this module only decides the numbers.
//!
//! # Retry-After
//! A slot in a tier frees when a job of that tier is claimed. Realtime runs
//! strictly before batch, so a full batch tier frees a slot only after every
//! queued realtime job (`ahead`) and the jobs over the limit in front of the
//! client have been claimed:
//!
//! ```text
//! to_drain    = ahead + (queued - limit + 1)
//! retry_after = ceil(to_drain / drain_rate), clamped to [1, 300] s
//! ```
//!
//! The drain rate is measured over the completions of the last
//! [`DRAIN_WINDOW`]; with fewer than two completions in it (a fresh server,
//! or one idle for a while) it is `1 / assumed_job_seconds`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use easel_core::Tier;

/// How far back completions count towards the drain rate. Long enough to
/// span several batches of a slow model (the bundled one takes ~4 s per
/// image on a laptop CPU), short enough that the estimate follows a change
/// of load within a minute. Older completions are forgotten, so a rate
/// measured before an idle hour is not trusted afterwards.
pub const DRAIN_WINDOW: Duration = Duration::from_secs(60);

/// At most this many completion events are kept; enough for a precise
/// rate, and bounded memory whatever the throughput.
pub const MAX_EVENTS: usize = 64;

/// The shortest `Retry-After`: HTTP's unit is a whole second, and 0 would
/// invite an immediate retry storm.
pub const MIN_RETRY_AFTER_S: u64 = 1;

/// The longest `Retry-After`: beyond five minutes the estimate is a guess,
/// and a client told to wait longer may as well give up.
pub const MAX_RETRY_AFTER_S: u64 = 300;

/// Admission settings (the server's `[queue]` section).
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionConfig {
    /// Most realtime (synchronous) jobs queued at once. Default 64.
    pub max_queued_realtime: u64,
    /// Most batch (asynchronous) jobs queued at once. Default 10,000.
    pub max_queued_batch: u64,
    /// Seconds one job is assumed to take while no drain rate has been
    /// measured. Default 4 (the bundled model on one CPU thread).
    pub assumed_job_seconds: f64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_queued_realtime: 64,
            max_queued_batch: 10_000,
            assumed_job_seconds: 4.0,
        }
    }
}

impl AdmissionConfig {
    /// The queue limit of a tier.
    pub fn limit(&self, tier: Tier) -> u64 {
        match tier {
            Tier::Realtime => self.max_queued_realtime,
            Tier::Batch => self.max_queued_batch,
        }
    }

    /// Jobs per second: `measured`, or `1 / assumed_job_seconds` without one.
    pub fn drain_rate(&self, measured: Option<f64>) -> f64 {
        measured.unwrap_or_else(|| 1.0 / self.assumed_job_seconds.max(0.001))
    }

    /// Whole seconds until a full tier has a free slot, in [1, 300], at the
    /// `measured` drain rate ([`DrainEstimator::rate`]).
    pub fn retry_after(&self, backlog: Backlog, measured: Option<f64>) -> u64 {
        retry_after_seconds(backlog.to_drain(), self.drain_rate(measured))
    }
}

/// Jobs finished per second over a recent window: a sliding window of
/// completion events (each one a time and how many jobs finished then, so a
/// batch of eight is one event of 8).
///
/// The rate is the jobs finished *after* the oldest kept event divided by
/// the time from that event to the newest: it measures throughput between
/// completions and does not fall while the queue is merely waiting for the
/// next one.
#[derive(Debug, Clone, Default)]
pub struct DrainEstimator {
    events: VecDeque<(Instant, u64)>,
}

impl DrainEstimator {
    /// An estimator with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `n` jobs finished at `at`. Events must come in time
    /// order (a late one is taken as happening at the newest event's time).
    pub fn record(&mut self, n: u64, at: Instant) {
        if n == 0 {
            return;
        }
        let at = match self.events.back() {
            Some(&(last, _)) if at < last => last,
            _ => at,
        };
        self.events.push_back((at, n));
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    /// Jobs per second as of `now`, or `None` with fewer than two
    /// completion events inside [`DRAIN_WINDOW`] (or all at one instant).
    pub fn rate(&self, now: Instant) -> Option<f64> {
        let cutoff = now.checked_sub(DRAIN_WINDOW);
        let mut recent = self
            .events
            .iter()
            .filter(|(at, _)| cutoff.is_none_or(|c| *at >= c));
        let &(first, _) = recent.next()?;
        let (mut last, mut after_first) = (first, 0u64);
        for &(at, n) in recent {
            last = at;
            after_first += n;
        }
        let span = last.duration_since(first).as_secs_f64();
        (after_first > 0 && span > 0.0).then(|| after_first as f64 / span)
    }
}

/// How full a tier is, as the store saw it when it refused a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Jobs queued in the full tier.
    pub queued: u64,
    /// Jobs queued in more urgent tiers, claimed first.
    pub ahead: u64,
    /// The full tier's limit.
    pub limit: u64,
}

impl Backlog {
    /// Jobs that must be claimed before this tier has a free slot.
    pub fn to_drain(&self) -> u64 {
        self.ahead + (self.queued + 1).saturating_sub(self.limit).max(1)
    }
}

/// `ceil(to_drain / rate)` seconds, clamped to
/// [[`MIN_RETRY_AFTER_S`], [`MAX_RETRY_AFTER_S`]]. A rate that is zero, negative
/// or not a number gives the maximum.
pub fn retry_after_seconds(to_drain: u64, rate: f64) -> u64 {
    if !(rate.is_finite() && rate > 0.0) {
        return MAX_RETRY_AFTER_S;
    }
    let seconds = (to_drain as f64 / rate).ceil();
    if seconds >= MAX_RETRY_AFTER_S as f64 {
        MAX_RETRY_AFTER_S
    } else {
        (seconds as u64).max(MIN_RETRY_AFTER_S)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn no_history_means_no_measured_rate() {
        let t0 = Instant::now();
        let mut d = DrainEstimator::new();
        assert_eq!(d.rate(t0), None);
        d.record(1, t0);
        assert_eq!(d.rate(t0 + secs(1.0)), None, "one event has no span");
    }

    #[test]
    fn the_rate_is_jobs_after_the_first_event_over_the_span() {
        let t0 = Instant::now();
        let mut d = DrainEstimator::new();
        // One job every half second: 2 jobs/s.
        for i in 0..5 {
            d.record(1, t0 + secs(0.5 * i as f64));
        }
        let rate = d.rate(t0 + secs(2.0)).unwrap();
        assert!((rate - 2.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn a_batch_counts_as_all_its_jobs() {
        let t0 = Instant::now();
        let mut d = DrainEstimator::new();
        // Batches of 8 every 4 s: 2 jobs/s.
        d.record(8, t0);
        d.record(8, t0 + secs(4.0));
        d.record(8, t0 + secs(8.0));
        let rate = d.rate(t0 + secs(8.0)).unwrap();
        assert!((rate - 2.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn waiting_for_the_next_completion_does_not_lower_the_rate() {
        let t0 = Instant::now();
        let mut d = DrainEstimator::new();
        d.record(1, t0);
        d.record(1, t0 + secs(1.0));
        assert_eq!(d.rate(t0 + secs(1.0)), d.rate(t0 + secs(30.0)));
    }

    #[test]
    fn completions_older_than_the_window_are_forgotten() {
        let t0 = Instant::now();
        let mut d = DrainEstimator::new();
        // Fast a long time ago, then one slow pair within the window.
        for i in 0..10 {
            d.record(1, t0 + secs(0.1 * i as f64));
        }
        d.record(1, t0 + secs(100.0));
        d.record(1, t0 + secs(110.0));
        let rate = d.rate(t0 + secs(110.0)).unwrap();
        assert!((rate - 0.1).abs() < 1e-9, "{rate}");
        // And with the window empty, no rate at all.
        assert_eq!(d.rate(t0 + secs(1000.0)), None);
    }

    #[test]
    fn only_the_newest_events_are_kept() {
        let t0 = Instant::now();
        let mut d = DrainEstimator::new();
        for i in 0..(MAX_EVENTS as u64 * 3) {
            d.record(1, t0 + secs(0.01 * i as f64));
        }
        assert_eq!(d.events.len(), MAX_EVENTS);
        let rate = d.rate(t0 + secs(2.0)).unwrap();
        assert!((rate - 100.0).abs() < 1e-6, "{rate}");
    }

    #[test]
    fn an_event_out_of_order_is_taken_as_the_newest_time() {
        let t0 = Instant::now();
        let mut d = DrainEstimator::new();
        d.record(1, t0 + secs(2.0));
        d.record(1, t0);
        assert_eq!(d.rate(t0 + secs(2.0)), None, "zero span");
        d.record(2, t0 + secs(4.0));
        let rate = d.rate(t0 + secs(4.0)).unwrap();
        assert!((rate - 1.5).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn retry_after_rounds_up_and_is_clamped() {
        assert_eq!(
            retry_after_seconds(1, 2.0),
            1,
            "half a second rounds up to 1"
        );
        assert_eq!(retry_after_seconds(3, 2.0), 2);
        assert_eq!(retry_after_seconds(10, 0.25), 40);
        assert_eq!(retry_after_seconds(1, 1000.0), MIN_RETRY_AFTER_S);
        assert_eq!(retry_after_seconds(0, 1.0), MIN_RETRY_AFTER_S);
        assert_eq!(retry_after_seconds(10_000, 1.0), MAX_RETRY_AFTER_S);
        assert_eq!(retry_after_seconds(1, 0.0), MAX_RETRY_AFTER_S);
        assert_eq!(retry_after_seconds(1, f64::NAN), MAX_RETRY_AFTER_S);
    }

    #[test]
    fn a_full_tier_needs_one_job_claimed_past_its_limit() {
        let b = Backlog {
            queued: 64,
            ahead: 0,
            limit: 64,
        };
        assert_eq!(b.to_drain(), 1);
        // A tier over its limit (the limit was lowered) needs more.
        let b = Backlog {
            queued: 70,
            ahead: 0,
            limit: 64,
        };
        assert_eq!(b.to_drain(), 7);
    }

    #[test]
    fn a_full_batch_tier_waits_for_the_realtime_jobs_ahead() {
        let b = Backlog {
            queued: 100,
            ahead: 9,
            limit: 100,
        };
        assert_eq!(b.to_drain(), 10);
    }

    #[test]
    fn without_history_retry_after_uses_the_assumed_job_time() {
        let a = AdmissionConfig {
            assumed_job_seconds: 4.0,
            ..AdmissionConfig::default()
        };
        let full = Backlog {
            queued: 64,
            ahead: 0,
            limit: 64,
        };
        assert_eq!(a.retry_after(full, None), 4);
        let behind = Backlog { ahead: 2, ..full };
        assert_eq!(a.retry_after(behind, None), 12);
    }

    #[test]
    fn with_history_retry_after_follows_the_measured_rate() {
        let t0 = Instant::now();
        let a = AdmissionConfig {
            assumed_job_seconds: 4.0,
            ..AdmissionConfig::default()
        };
        // 4 jobs/s measured.
        let mut d = DrainEstimator::new();
        for i in 0..9 {
            d.record(1, t0 + secs(0.25 * i as f64));
        }
        let now = t0 + secs(2.0);
        let backlog = Backlog {
            queued: 64,
            ahead: 10,
            limit: 64,
        };
        // 11 jobs at 4 jobs/s: 2.75 s, rounded up.
        assert_eq!(a.retry_after(backlog, d.rate(now)), 3);
        // A minute later the history is gone: back to 4 s per job.
        assert_eq!(a.retry_after(backlog, d.rate(now + secs(120.0))), 44);
    }

    #[test]
    fn limits_are_per_tier() {
        let c = AdmissionConfig {
            max_queued_realtime: 3,
            max_queued_batch: 5,
            assumed_job_seconds: 1.0,
        };
        assert_eq!(c.limit(Tier::Realtime), 3);
        assert_eq!(c.limit(Tier::Batch), 5);
    }
}
