//! The wall clock, as an argument.
//!
//! Deadlines, leases, link expiry and record timestamps all read the time
//! through a [`Clock`], so a test moves time forward with
//! [`ManualClock::advance`] instead of sleeping, and a timing test can
//! neither be slow nor flaky. Production code uses [`SystemClock`].

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A source of the current wall-clock time, in milliseconds since the Unix
/// epoch (the unit every stored timestamp uses).
pub trait Clock: Debug + Send + Sync {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    fn now_ms(&self) -> i64;

    /// Whole seconds since the epoch (rounded down).
    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Whether this is the machine's own clock (so that a database server's
    /// clock may stand in for it where several machines must agree).
    fn is_system(&self) -> bool {
        false
    }
}

/// A clock shared between the parts of one application.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    }

    fn is_system(&self) -> bool {
        true
    }
}

/// A clock that stands still until told to move; clones share one time.
///
/// For tests: `advance` replaces a real sleep past a deadline or a lease.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now_ms: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock stopped at `now_ms` milliseconds since the epoch.
    pub fn at(now_ms: i64) -> Self {
        Self {
            now_ms: Arc::new(AtomicI64::new(now_ms)),
        }
    }

    /// A clock stopped at the system clock's current time.
    pub fn starting_now() -> Self {
        Self::at(SystemClock.now_ms())
    }

    /// Moves the time forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let _ = self
            .now_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ms))
            });
    }

    /// This clock as a [`SharedClock`] (sharing its time).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_clones_share_it() {
        let clock = ManualClock::at(1_000);
        let shared = clock.shared();
        assert_eq!(shared.now_ms(), 1_000);
        clock.advance(Duration::from_millis(1_500));
        assert_eq!((shared.now_ms(), shared.now_secs()), (2_500, 2));
    }

    #[test]
    fn seconds_round_down_before_the_epoch_too() {
        assert_eq!(ManualClock::at(-1).now_secs(), -1);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
