//! The running task of each caller of the AUTOMATIC1111-compatible API,
//! for `GET /sdapi/v1/progress`, `POST /sdapi/v1/interrupt` and `/skip`.
//!
//! The web UI runs one task at a time for everyone; Easel runs many, so
//! each caller (project and key, see [`super::caller`]) sees and stops
//! only its own latest task. A task is `n_iter` jobs run one after the
//! other; *skip* cancels the current job and goes on with the next,
//! *interrupt* cancels it and stops. The registry lives in the API process
//! that runs the request (as the web UI's does): on a fleet, send an A1111
//! client's calls to one API replica (session affinity), or progress shows
//! the task as idle (docs/a1111.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use easel_core::JobId;

/// One caller's task.
#[derive(Debug, Clone)]
pub struct Task {
    /// Its id (`force_task_id`, or a generated one).
    pub id: String,
    /// When it started.
    pub started: DateTime<Utc>,
    /// Jobs in the task (`n_iter`).
    pub job_count: u32,
    /// The job now running or queued, 0-based.
    pub job_no: u32,
    /// That job, once submitted.
    pub job: Option<JobId>,
    /// Whether the current job was skipped.
    pub skipped: bool,
    /// Whether the task was interrupted.
    pub interrupted: bool,
    /// Whether it ended.
    pub done: bool,
    /// Steps of the current job done, and in all.
    pub step: (u32, u32),
    /// The latest preview of the current job, base64 PNG.
    pub preview: Option<String>,
}

/// What a stop request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Cancel this job.
    Cancel(JobId),
    /// The task has no job yet (it stops before submitting one).
    Flagged,
    /// The caller has no running task.
    Idle,
}

/// Every caller's latest task. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tasks {
    inner: Arc<Mutex<HashMap<String, Task>>>,
}

impl Tasks {
    /// Starts `caller`'s task (replacing a finished one).
    pub fn start(&self, caller: &str, id: String, job_count: u32) {
        let task = Task {
            id,
            started: Utc::now(),
            job_count,
            job_no: 0,
            job: None,
            skipped: false,
            interrupted: false,
            done: false,
            step: (0, 0),
            preview: None,
        };
        self.lock().insert(caller.to_string(), task);
    }

    /// Records the job now running as the task's `job_no`-th; returns
    /// whether the task was interrupted meanwhile (then the job must be
    /// cancelled and the task stopped).
    pub fn running(&self, caller: &str, task_id: &str, job_no: u32, job: JobId) -> bool {
        let mut all = self.lock();
        match all.get_mut(caller).filter(|t| t.id == task_id) {
            Some(t) => {
                t.job_no = job_no;
                t.job = Some(job);
                t.skipped = false;
                t.step = (0, 0);
                t.preview = None;
                t.interrupted
            }
            None => false,
        }
    }

    /// Records a step of `job`, with its preview when there is one.
    pub fn progress(
        &self,
        caller: &str,
        job: JobId,
        step: u32,
        total: u32,
        preview: Option<String>,
    ) {
        if let Some(t) = self.lock().get_mut(caller).filter(|t| t.job == Some(job)) {
            t.step = (step, total);
            if preview.is_some() {
                t.preview = preview;
            }
        }
    }

    /// Whether `caller`'s task was interrupted.
    pub fn interrupted(&self, caller: &str, task_id: &str) -> bool {
        self.lock()
            .get(caller)
            .is_some_and(|t| t.id == task_id && t.interrupted)
    }

    /// Marks the task finished.
    pub fn finish(&self, caller: &str, task_id: &str) {
        if let Some(t) = self.lock().get_mut(caller).filter(|t| t.id == task_id) {
            t.done = true;
            t.job = None;
        }
    }

    /// `caller`'s latest task.
    pub fn get(&self, caller: &str) -> Option<Task> {
        self.lock().get(caller).cloned()
    }

    /// Interrupts `caller`'s running task.
    pub fn interrupt(&self, caller: &str) -> Stop {
        self.stop(caller, true)
    }

    /// Skips the current job of `caller`'s running task.
    pub fn skip(&self, caller: &str) -> Stop {
        self.stop(caller, false)
    }

    fn stop(&self, caller: &str, interrupt: bool) -> Stop {
        let mut all = self.lock();
        let Some(task) = all.get_mut(caller).filter(|t| !t.done) else {
            return Stop::Idle;
        };
        if interrupt {
            task.interrupted = true;
        } else {
            task.skipped = true;
        }
        match task.job {
            Some(job) => Stop::Cancel(job),
            None => Stop::Flagged,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Task>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_and_interrupt_reach_only_the_callers_own_task() {
        let tasks = Tasks::default();
        assert_eq!(tasks.interrupt("a"), Stop::Idle);
        tasks.start("a", "t1".into(), 3);
        assert_eq!(tasks.skip("a"), Stop::Flagged);
        let job = JobId::new();
        assert!(!tasks.running("a", "t1", 0, job));
        assert_eq!(tasks.skip("a"), Stop::Cancel(job));
        assert_eq!(tasks.interrupt("b"), Stop::Idle);
        assert!(!tasks.interrupted("a", "t1"));
        assert_eq!(tasks.interrupt("a"), Stop::Cancel(job));
        assert!(tasks.interrupted("a", "t1"));
        assert!(
            tasks.running("a", "t1", 1, JobId::new()),
            "an interrupted task stops"
        );
        tasks.finish("a", "t1");
        assert_eq!(tasks.interrupt("a"), Stop::Idle);
        assert!(tasks.get("a").unwrap().done);
    }
}
