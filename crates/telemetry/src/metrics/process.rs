//! The process's CPU utilisation, sampled at scrape time: CPU seconds
//! (user + system, from `/proc/self/stat`) used since the previous sample,
//! per wall second, divided by the cores available to the process. 1.0
//! means every core busy. Where `/proc` is missing (not Linux) the ratio
//! is not updated.

use std::time::Instant;

/// Clock ticks per second of `/proc/*/stat` times: Linux's `USER_HZ`,
/// which is 100 on every architecture Easel builds for (it is fixed by the
/// kernel's ABI, unlike the scheduler's `HZ`).
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system) this process has used, or `None` where
/// `/proc/self/stat` cannot be read.
pub(super) fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_seconds(&stat)
}

/// `utime` and `stime` (fields 14 and 15) of a `/proc/PID/stat` line, in
/// seconds. The command name (field 2) is in parentheses and may hold
/// spaces, so fields are counted after its closing parenthesis.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After the name: state (3), ppid (4), ..., utime is field 14, i.e.
    // the 12th after the name.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// The previous sample.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuSample {
    at: Instant,
    cpu_seconds: f64,
}

impl CpuSample {
    /// A sample now (0 CPU seconds where `/proc` is missing).
    pub(super) fn now() -> Self {
        Self {
            at: Instant::now(),
            cpu_seconds: cpu_seconds().unwrap_or(0.0),
        }
    }

    /// The utilisation between `self` and `later`, per core, in [0, 1];
    /// `None` when no wall time passed.
    pub(super) fn ratio_until(&self, later: &CpuSample, cores: usize) -> Option<f64> {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        if wall <= 0.0 {
            return None;
        }
        let used = (later.cpu_seconds - self.cpu_seconds).max(0.0);
        Some((used / wall / cores.max(1) as f64).clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn user_and_system_ticks_are_read_after_a_name_with_spaces() {
        let line = "4242 (easel serve) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 \
                    9 0 12345 0 0";
        assert_eq!(parse_cpu_seconds(line), Some(3.0));
    }

    #[test]
    fn this_process_has_a_cpu_time_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(cpu_seconds().is_some());
        }
    }

    #[test]
    fn the_ratio_is_per_core_and_clamped() {
        let start = Instant::now();
        let a = CpuSample {
            at: start,
            cpu_seconds: 10.0,
        };
        let b = CpuSample {
            at: start + Duration::from_secs(2),
            cpu_seconds: 12.0,
        };
        assert_eq!(a.ratio_until(&b, 4), Some(0.25));
        assert_eq!(a.ratio_until(&b, 1), Some(1.0));
        assert_eq!(a.ratio_until(&a, 1), None);
    }
}
