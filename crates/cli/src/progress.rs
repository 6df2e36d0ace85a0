//! Progress bars on stderr for the long commands (`generate`, `eval`,
//! `loadtest`, `bench`, `batch status --watch`).
//!
//! Every bar draws to stderr through indicatif, which draws nothing when
//! stderr is not a terminal: piped output, test harnesses and CI logs get
//! no bars and no escape codes, only the lines the commands print.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a bar redraws on its own (spinners, elapsed time).
const TICK: Duration = Duration::from_millis(120);

/// A bar of `len` `unit`s with the elapsed time and an ETA.
pub(crate) fn bar(len: u64, unit: &str, message: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{elapsed}}, ETA {{eta}})"
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(message.into());
    bar.enable_steady_tick(TICK);
    bar
}

/// A spinner with the elapsed time, for work of unknown length (a model
/// load, one engine benchmark).
pub(crate) fn spinner(message: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"),
    );
    bar.set_message(message.into());
    bar.enable_steady_tick(TICK);
    bar
}

/// A single status line the caller composes and redraws in place with
/// `set_message`; hidden (see [`ProgressBar::is_hidden`]) when stderr is
/// not a terminal, so the caller can print plain lines instead.
pub(crate) fn line() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
    bar
}
