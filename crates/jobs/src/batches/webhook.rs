//! The schedule of a finished batch's completion webhook: the first try
//! at once, then retries with exponential backoff (`base`, `2·base`,
//! `4·base`, … at most an hour apart) until it is delivered or
//! `max_attempts` tries have failed. Sending it (the body and its HMAC
//! signature) is the server's part, through `BatchHooks::notify`.

use std::time::Duration;

/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How long to wait after the `failed`-th failed try (from 1) before the
/// next; `None` when none is left.
pub fn next_try(failed: u32, max_attempts: u32, base: Duration) -> Option<Duration> {
    if failed >= max_attempts {
        return None;
    }
    let factor = 2u32.saturating_pow(failed.saturating_sub(1));
    Some(base.saturating_mul(factor).min(MAX_BACKOFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_until_the_attempts_run_out() {
        let base = Duration::from_secs(2);
        assert_eq!(next_try(1, 4, base), Some(Duration::from_secs(2)));
        assert_eq!(next_try(2, 4, base), Some(Duration::from_secs(4)));
        assert_eq!(next_try(3, 4, base), Some(Duration::from_secs(8)));
        assert_eq!(next_try(4, 4, base), None);
    }

    #[test]
    fn waits_at_most_an_hour() {
        assert_eq!(
            next_try(30, 100, Duration::from_secs(60)),
            Some(MAX_BACKOFF)
        );
    }
}
