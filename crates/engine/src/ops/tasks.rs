//! Sharing numbered tasks among the engine's threads, the one loop every
//! parallel kernel runs (attention, both convolutions, group norm).
//!
//! Tasks are taken from a shared counter rather than split up front, so a
//! worker that finishes early (its core was less busy, its tiles were at
//! an edge) takes more, and the kernel ends when the last task does. Each
//! worker makes its scratch state once and keeps it across its tasks.

use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

/// Runs tasks `0..tasks` on up to `threads` rayon workers (at least one,
/// at most one per task). Each worker makes its own state with `init`
/// (scratch buffers, what it last filled) and runs `run(state, task)` for
/// the next task number until none is left. With one worker everything
/// runs on the calling thread.
pub(crate) fn share<S>(
    tasks: usize,
    threads: usize,
    init: impl Fn() -> S + Sync,
    run: impl Fn(&mut S, usize) + Sync,
) {
    let next = AtomicUsize::new(0);
    let worker = |_| {
        let mut state = init();
        loop {
            let task = next.fetch_add(1, Ordering::Relaxed);
            if task >= tasks {
                break;
            }
            run(&mut state, task);
        }
    };
    let workers = threads.clamp(1, tasks.max(1));
    if workers == 1 {
        worker(0);
    } else {
        (0..workers).into_par_iter().for_each(worker);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn every_task_runs_exactly_once_whatever_the_thread_count() {
        for (tasks, threads) in [(0, 4), (1, 4), (7, 1), (7, 3), (100, 16)] {
            let seen = Mutex::new(vec![0u32; tasks]);
            let inits = AtomicUsize::new(0);
            share(
                tasks,
                threads,
                || inits.fetch_add(1, Ordering::Relaxed),
                |_, task| seen.lock().unwrap()[task] += 1,
            );
            assert!(seen.into_inner().unwrap().iter().all(|&n| n == 1));
            let workers = inits.into_inner();
            assert!((1..=threads.clamp(1, tasks.max(1))).contains(&workers));
        }
    }
}
