//! The per-model circuit breaker of one worker (pure state).
//!
//! A worker whose engine fails on a model again and again (out of memory,
//! a corrupt file, a broken device) should stop taking that model's jobs
//! for a while and leave them to other workers, instead of failing every
//! job it claims. After [`TRIP_AFTER`] failures in a row the model's
//! circuit *opens*: the worker claims none of its jobs for the back-off
//! period, which starts at [`FIRST_BACKOFF`] and doubles every time the
//! circuit opens again, up to [`MAX_BACKOFF`]. When the period ends the
//! circuit is *half open*: the next batch is a trial; success closes it
//! (and resets the back-off), one more failure opens it again at once.
//! Only failures of the worker's side count (engine errors that are not the
//! request's fault, panics, failed loads); a bad request or a cancel never
//! trips it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Failures in a row that open a model's circuit.
pub const TRIP_AFTER: u32 = 3;
/// The first back-off period.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(60);
/// The longest back-off period.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Default)]
struct ModelCircuit {
    /// Failures since the last success.
    failures: u32,
    /// While set and in the future, the circuit is open.
    open_until: Option<Instant>,
    /// The next period to open for.
    backoff: Option<Duration>,
}

/// Every model's circuit on one worker.
#[derive(Debug, Clone, Default)]
pub struct Circuits {
    models: HashMap<String, ModelCircuit>,
}

/// What a failure did to a model's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tripped {
    /// Still closed (or already open).
    No,
    /// It opened now, for this long.
    Opened(Duration),
}

impl Circuits {
    /// No circuit open.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `model`'s jobs must be left alone at `now`.
    pub fn is_open(&self, model: &str, now: Instant) -> bool {
        self.models
            .get(model)
            .and_then(|c| c.open_until)
            .is_some_and(|until| now < until)
    }

    /// The models whose circuit is open at `now`, by name, with when each
    /// closes.
    pub fn open(&self, now: Instant) -> Vec<(String, Instant)> {
        let mut open: Vec<(String, Instant)> = self
            .models
            .iter()
            .filter_map(|(name, c)| {
                c.open_until
                    .filter(|until| now < *until)
                    .map(|until| (name.clone(), until))
            })
            .collect();
        open.sort();
        open
    }

    /// Whether `model` has failed on this worker since its last success.
    pub fn is_known(&self, model: &str) -> bool {
        self.models.contains_key(model)
    }

    /// Every model that has failed since its last success, by name.
    pub fn known(&self) -> Vec<String> {
        let mut names: Vec<String> = self.models.keys().cloned().collect();
        names.sort();
        names
    }

    /// A batch of `model` ran: its circuit closes and its back-off resets.
    pub fn record_success(&mut self, model: &str) {
        self.models.remove(model);
    }

    /// A batch of `model` failed on this worker's side at `now`.
    pub fn record_failure(&mut self, model: &str, now: Instant) -> Tripped {
        let c = self.models.entry(model.to_string()).or_default();
        if c.open_until.is_some_and(|until| now < until) {
            return Tripped::No;
        }
        c.failures += 1;
        // A failed trial after a back-off opens it again at once.
        let trial_failed = c.open_until.is_some();
        if c.failures < TRIP_AFTER && !trial_failed {
            return Tripped::No;
        }
        let period = c.backoff.unwrap_or(FIRST_BACKOFF);
        c.open_until = Some(now + period);
        c.backoff = Some((period * 2).min(MAX_BACKOFF));
        Tripped::Opened(period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_in_a_row_open_the_circuit_and_a_success_in_between_resets_the_count() {
        let mut c = Circuits::new();
        let t0 = Instant::now();
        assert_eq!(c.record_failure("m", t0), Tripped::No);
        assert_eq!(c.record_failure("m", t0), Tripped::No);
        c.record_success("m");
        assert_eq!(c.record_failure("m", t0), Tripped::No);
        assert_eq!(c.record_failure("m", t0), Tripped::No);
        assert!(!c.is_open("m", t0));
        assert_eq!(c.record_failure("m", t0), Tripped::Opened(FIRST_BACKOFF));
        assert!(c.is_open("m", t0));
        assert!(!c.is_open("other", t0), "circuits are per model");
        assert_eq!(c.open(t0), [("m".to_string(), t0 + FIRST_BACKOFF)]);
    }

    #[test]
    fn a_failed_trial_reopens_at_once_for_twice_as_long_up_to_the_cap_and_a_success_resets() {
        let mut c = Circuits::new();
        let mut now = Instant::now();
        for _ in 0..TRIP_AFTER {
            c.record_failure("m", now);
        }
        let mut expected = FIRST_BACKOFF;
        for _ in 0..6 {
            now += expected;
            assert!(!c.is_open("m", now), "half open once the period ends");
            expected = (expected * 2).min(MAX_BACKOFF);
            assert_eq!(c.record_failure("m", now), Tripped::Opened(expected));
        }
        assert_eq!(expected, MAX_BACKOFF);
        now += MAX_BACKOFF;
        c.record_success("m");
        for _ in 0..TRIP_AFTER - 1 {
            assert_eq!(c.record_failure("m", now), Tripped::No);
        }
        assert_eq!(c.record_failure("m", now), Tripped::Opened(FIRST_BACKOFF));
    }

    #[test]
    fn failures_while_open_do_not_extend_the_period() {
        let mut c = Circuits::new();
        let now = Instant::now();
        for _ in 0..TRIP_AFTER {
            c.record_failure("m", now);
        }
        assert_eq!(
            c.record_failure("m", now + Duration::from_secs(1)),
            Tripped::No
        );
        assert_eq!(c.open(now)[0].1, now + FIRST_BACKOFF);
    }
}
