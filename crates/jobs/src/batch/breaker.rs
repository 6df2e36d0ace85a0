//! Feeding a batch's outcome to the model's circuit breaker
//! ([`crate::circuit`]) and keeping `easel_model_circuit_open` in step.

use std::time::Instant;

use super::Outcome;
use crate::circuit::Tripped;
use crate::worker::Worker;

impl Worker {
    /// A batch of `model` ended with `outcomes`: any image made closes its
    /// circuit; a failure on the worker's side counts once per batch.
    pub(super) fn record_circuit(&self, model: &str, outcomes: &[Outcome]) {
        let succeeded = outcomes.iter().any(Result::is_ok);
        let failed = outcomes
            .iter()
            .any(|o| o.as_ref().is_err_and(|f| f.worker_side));
        let mut circuits = self.inner.circuits.lock().expect("circuits lock poisoned");
        if succeeded {
            if circuits.is_known(model) {
                circuits.record_success(model);
                self.inner.metrics.set_circuit_open(model, false);
            }
        } else if failed
            && let Tripped::Opened(period) = circuits.record_failure(model, Instant::now())
        {
            tracing::error!(
                model,
                backoff_s = period.as_secs(),
                "circuit breaker open: this worker claims none of the model's jobs for now"
            );
            self.inner.metrics.set_circuit_open(model, true);
        }
    }

    /// Sets `easel_model_circuit_open` to 0 for models whose back-off has
    /// ended (their next batch is a trial). Called every heartbeat.
    pub(crate) fn refresh_circuit_gauges(&self) {
        let now = Instant::now();
        let circuits = self.inner.circuits.lock().expect("circuits lock poisoned");
        for model in circuits.known() {
            self.inner
                .metrics
                .set_circuit_open(&model, circuits.is_open(&model, now));
        }
    }
}
