//! The pure parts of `easel batch status --watch`'s progress line: the
//! rate of settled lines, smoothed over the last minute of polls; the ETA
//! from it (or from the server's estimate until a rate is measured); the
//! bar; durations, rates and amounts as short text.
//!
//! Times are plain seconds (from any fixed origin) so that tests pass them
//! in instead of sleeping.

use std::collections::VecDeque;

/// How far back the rate looks: long enough to smooth the steps of a
/// driver that submits lines in windows, short enough to follow a change
/// in the number of workers within a minute.
pub const RATE_WINDOW_SECONDS: f64 = 60.0;

/// Settled lines (completed or failed) seen at each poll, and the rate
/// between the oldest poll of the window and the newest.
#[derive(Debug, Clone)]
pub struct RateMeter {
    /// The span the rate averages over, in seconds.
    window: f64,
    /// `(time, settled)` of the polls within the window, oldest first,
    /// plus the one just before it (so the span covers the whole window).
    samples: VecDeque<(f64, u64)>,
    /// Whether the count has changed between two polls: before that there
    /// is no rate to measure (the batch may not have started).
    moved: bool,
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter::new(RATE_WINDOW_SECONDS)
    }
}

impl RateMeter {
    /// A meter averaging over `window` seconds.
    pub fn new(window: f64) -> RateMeter {
        RateMeter {
            window,
            samples: VecDeque::new(),
            moved: false,
        }
    }

    /// Records that `settled` lines were settled at `time`.
    pub fn observe(&mut self, time: f64, settled: u64) {
        if let Some(&(_, last)) = self.samples.back()
            && last != settled
        {
            self.moved = true;
        }
        self.samples.push_back((time, settled));
        while self.samples.len() > 2 && self.samples[1].0 <= time - self.window {
            self.samples.pop_front();
        }
    }

    /// Lines per second over the window; `None` until the count has
    /// moved between two polls.
    pub fn rate(&self) -> Option<f64> {
        let (&(t0, n0), &(t1, n1)) = (self.samples.front()?, self.samples.back()?);
        if !self.moved || t1 <= t0 {
            return None;
        }
        Some(n1.saturating_sub(n0) as f64 / (t1 - t0))
    }
}

/// Where an ETA came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Eta {
    /// From the measured rate.
    Measured(f64),
    /// From the server's estimate at creation, scaled to the lines left.
    Estimated(f64),
    /// Neither is known (or the rate is 0).
    Unknown,
}

/// The time left for `remaining` of `total` lines: at the measured
/// `rate`, else the estimate's `estimate_eta` (for all the lines) times
/// the share left.
pub fn eta(remaining: u64, total: u64, rate: Option<f64>, estimate_eta: Option<f64>) -> Eta {
    match rate {
        Some(r) if r > 0.0 => Eta::Measured(remaining as f64 / r),
        Some(_) => Eta::Unknown,
        None => match estimate_eta {
            Some(e) if e.is_finite() && e >= 0.0 && total > 0 => {
                Eta::Estimated(e * remaining as f64 / total as f64)
            }
            _ => Eta::Unknown,
        },
    }
}

/// `[#####.....]`: `filled` of `total`, `width` cells wide.
pub fn bar(filled: u64, total: u64, width: usize) -> String {
    let cells = if total == 0 {
        0
    } else {
        ((filled.min(total) as u128 * width as u128) / total as u128) as usize
    };
    format!("[{}{}]", "#".repeat(cells), ".".repeat(width - cells))
}

/// A duration as `<1s`, `45s`, `3m05s`, `1h27m` or `2d03h`; `?` when not
/// finite.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".into();
    }
    if seconds > 0.0 && seconds < 0.5 {
        return "<1s".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A rate as `1.8/s`, or `12/min` below one line every ten seconds.
pub fn rate(per_second: f64) -> String {
    if per_second >= 0.1 {
        format!("{per_second:.1}/s")
    } else {
        format!("{:.1}/min", per_second * 60.0)
    }
}

/// An amount of money: two decimals, or three significant digits for
/// amounts below 0.01 (a small model's images cost fractions of a cent).
pub fn amount(x: f64) -> String {
    if x == 0.0 || x.abs() >= 0.01 {
        format!("{x:.2}")
    } else {
        let decimals = (-x.abs().log10().floor()) as usize + 2;
        format!("{x:.decimals$}")
    }
}

/// What one progress line shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Lines that made their images.
    pub completed: u64,
    /// Lines refused, failed, cancelled or expired.
    pub failed: u64,
    /// Lines in all.
    pub total: u64,
    /// Lines per second, when measured.
    pub rate: Option<f64>,
    /// Time left.
    pub eta: Eta,
    /// What the batch has cost so far.
    pub cost: f64,
    /// Its cost cap, if any.
    pub cap: Option<f64>,
}

/// `[#####.....] 512/10000 done, 3 failed, 1.8/s, ETA 1h27m, cost
/// 0.42/25.00`: the bar counts settled lines, `done` the completed ones;
/// an ETA from the estimate is marked `~`.
pub fn line(p: &Progress) -> String {
    let mut out = format!(
        "{} {}/{} done, {} failed",
        bar(p.completed + p.failed, p.total, 20),
        p.completed,
        p.total,
        p.failed
    );
    if let Some(r) = p.rate {
        out.push_str(&format!(", {}", rate(r)));
    }
    match p.eta {
        Eta::Measured(s) => out.push_str(&format!(", ETA {}", duration(s))),
        Eta::Estimated(s) => out.push_str(&format!(", ETA ~{}", duration(s))),
        Eta::Unknown => out.push_str(", ETA ?"),
    }
    out.push_str(&format!(", cost {}", amount(p.cost)));
    if let Some(cap) = p.cap {
        out.push_str(&format!("/{}", amount(cap)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_is_no_rate_until_the_count_moves() {
        let mut m = RateMeter::default();
        assert_eq!(m.rate(), None);
        m.observe(0.0, 5);
        m.observe(2.0, 5);
        assert_eq!(m.rate(), None, "a batch that has not started has no rate");
        m.observe(4.0, 9);
        assert_eq!(m.rate(), Some(1.0), "4 lines over the 4 s observed");
    }

    #[test]
    fn the_rate_is_smoothed_over_the_last_minute() {
        let mut m = RateMeter::new(60.0);
        // 1 line/s for two minutes, then 3 lines/s for 30 s.
        for t in 0..=120 {
            m.observe(f64::from(t), u64::from(t as u32));
        }
        assert!((m.rate().unwrap() - 1.0).abs() < 1e-9);
        for t in 121..=150 {
            m.observe(f64::from(t), 120 + 3 * u64::from(t as u32 - 120));
        }
        // The last 60 s: 30 s at 1/s and 30 s at 3/s.
        let r = m.rate().unwrap();
        assert!((r - 2.0).abs() < 0.05, "{r}");
        assert!(m.samples.len() <= 62, "old polls are dropped");
    }

    #[test]
    fn a_stalled_batch_has_a_rate_of_zero_and_no_eta() {
        let mut m = RateMeter::new(10.0);
        m.observe(0.0, 0);
        m.observe(1.0, 1);
        for t in 2..30 {
            m.observe(f64::from(t), 1);
        }
        assert_eq!(m.rate(), Some(0.0));
        assert_eq!(eta(9, 10, m.rate(), Some(100.0)), Eta::Unknown);
    }

    #[test]
    fn the_eta_falls_back_to_the_estimate_for_the_lines_left() {
        assert_eq!(eta(50, 100, Some(2.0), Some(1.0)), Eta::Measured(25.0));
        assert_eq!(eta(50, 100, None, Some(300.0)), Eta::Estimated(150.0));
        assert_eq!(eta(50, 100, None, None), Eta::Unknown);
        assert_eq!(eta(0, 0, None, Some(3.0)), Eta::Unknown);
    }

    #[test]
    fn the_bar_fills_in_proportion_and_never_overflows() {
        assert_eq!(bar(512, 1000, 10), "[#####.....]");
        assert_eq!(bar(0, 10, 4), "[....]");
        assert_eq!(bar(10, 10, 4), "[####]");
        assert_eq!(bar(12, 10, 4), "[####]");
        assert_eq!(bar(0, 0, 3), "[...]");
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(0.0), "0s");
        assert_eq!(duration(0.2), "<1s");
        assert_eq!(duration(45.4), "45s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(5220.0), "1h27m");
        assert_eq!(duration(183_600.0), "2d03h");
        assert_eq!(duration(f64::INFINITY), "?");
        assert_eq!(duration(-1.0), "?");
    }

    #[test]
    fn rates_and_amounts_keep_their_significant_digits() {
        assert_eq!(rate(1.84), "1.8/s");
        assert_eq!(rate(0.05), "3.0/min");
        assert_eq!(amount(0.0), "0.00");
        assert_eq!(amount(25.0), "25.00");
        assert_eq!(amount(0.4249), "0.42");
        assert_eq!(amount(0.000_123_4), "0.000123");
    }

    #[test]
    fn the_line_shows_counts_rate_eta_and_cost_against_the_cap() {
        let p = Progress {
            completed: 512,
            failed: 3,
            total: 10_000,
            rate: Some(1.8),
            eta: Eta::Measured(5220.0),
            cost: 0.42,
            cap: Some(25.0),
        };
        assert_eq!(
            line(&p),
            "[#...................] 512/10000 done, 3 failed, 1.8/s, ETA 1h27m, cost 0.42/25.00"
        );
        let early = Progress {
            rate: None,
            eta: Eta::Estimated(90.0),
            cap: None,
            ..p.clone()
        };
        assert!(
            line(&early).ends_with("3 failed, ETA ~1m30s, cost 0.42"),
            "{}",
            line(&early)
        );
        let unknown = Progress {
            rate: None,
            eta: Eta::Unknown,
            ..p
        };
        assert!(line(&unknown).contains("ETA ?"));
    }
}
