//! The engine's own OS thread.
//!
//! Engine calls are long, CPU-bound and synchronous; on an async runtime's
//! worker threads they would stall every connection. The worker task sends
//! each job's render to this thread over a channel and awaits the reply on
//! a oneshot, so the runtime only ever waits. Progress is published from
//! here straight into the [`EventHub`](crate::events::EventHub), which never
//! blocks.
//!
//! One thread, because the simple worker runs one job at a time and the
//! engine's tensor library already uses every core for one call; the batching
//! scheduler of the job-system issue will feed several requests per call
//! rather than add threads.

use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// A unit of work for the engine thread.
pub type Task = Box<dyn FnOnce() + Send + 'static>;

/// Handle to the engine thread. Dropping it ends the thread after the task
/// in hand.
pub struct EngineThread {
    sender: Option<mpsc::Sender<Task>>,
    thread: Option<JoinHandle<()>>,
}

impl EngineThread {
    /// Starts the thread.
    pub fn start() -> Self {
        let (sender, receiver) = mpsc::channel::<Task>();
        let thread = std::thread::Builder::new()
            .name("easel-engine".into())
            .spawn(move || {
                while let Ok(task) = receiver.recv() {
                    // A panicking engine call fails its job (the reply is
                    // dropped), not every later job.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
                }
            })
            .expect("spawning the engine thread");
        Self {
            sender: Some(sender),
            thread: Some(thread),
        }
    }

    /// Runs `f` on the engine thread and awaits its result. `None` if `f`
    /// panicked, so the caller can fail the job.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let task: Task = Box::new(move || {
            let _ = tx.send(f());
        });
        self.sender.as_ref()?.send(task).ok()?;
        rx.await.ok()
    }
}

impl Drop for EngineThread {
    fn drop(&mut self) {
        self.sender.take();
        // Joining here could block an async runtime for a whole engine call;
        // the thread finishes its task and exits on its own.
        self.thread.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_off_the_runtime_threads() {
        let engine = EngineThread::start();
        let name = engine
            .run(|| std::thread::current().name().map(str::to_string))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("easel-engine"));
    }
}
