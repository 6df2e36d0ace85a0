//! The background loader: one OS thread that loads models one at a time.
//!
//! One at a time, because two loads at once would each decide against a
//! budget the other is about to use, and would compete for the same disk
//! and memory bandwidth anyway. The thread starts with the first load and
//! ends when the last [`super::Models`] handle is dropped (its channel
//! closes); a load in progress cannot be interrupted, so the thread is not
//! joined and the process may exit while it runs.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::audit::{ModelEvent, UnloadReason};
use super::budget::{Plan, Resident, plan};
use super::{OVER_BUDGET, Pool, Shared, Slot};

/// How often a load blocked by models in use looks again.
const RETRY: Duration = Duration::from_millis(100);

/// One queued load.
pub(super) struct Request {
    /// The slot; it is `Loading` while queued.
    pub index: usize,
    /// Whether other models may be evicted for it (false for the extra
    /// models of the default preload, which only load if they fit).
    pub may_evict: bool,
}

/// The sending end of the loader thread, started on first use.
#[derive(Default)]
pub(super) struct Loader {
    tx: Mutex<Option<Sender<Request>>>,
}

impl Loader {
    /// Queues a load, starting the thread if needed.
    pub fn send(&self, shared: &Arc<Shared>, request: Request) {
        let mut tx = self.tx.lock().expect("loader lock poisoned");
        let sender = tx.get_or_insert_with(|| {
            let (sender, receiver) = channel::<Request>();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("easel-model-loader".into())
                .spawn(move || {
                    for request in receiver {
                        load_one(&shared, request);
                    }
                })
                .expect("spawning the model loader thread");
            sender
        });
        if sender.send(request).is_err() {
            tracing::error!("the model loader thread has stopped; load not started");
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// Makes room within the budget, then loads, then publishes the result.
fn load_one(shared: &Shared, request: Request) {
    let index = request.index;
    let spec = shared.lock().entries[index].spec.clone();
    let name = spec.name.clone();
    let deadline = Instant::now() + shared.options.load_wait;
    loop {
        let mut pool = shared.lock();
        if !matches!(pool.entries[index].slot, Slot::Loading) {
            return;
        }
        let need = pool.entries[index].bytes;
        let residents = residents(&pool, index);
        let budget = shared.options.budget_bytes;
        let decision = plan(&residents, need, budget);
        if !request.may_evict && decision != (Plan::Fits { evict: Vec::new() }) {
            tracing::info!(
                model = %name,
                "not preloaded: it does not fit the memory budget next to the loaded models"
            );
            pool.entries[index].slot = Slot::Unloaded;
            return;
        }
        match decision {
            Plan::Fits { evict } => {
                for victim in evict {
                    tracing::info!(
                        model = %pool.entries[victim].spec.name, for_model = %name,
                        "evicting the least recently used model to stay within the memory budget"
                    );
                    pool.entries[victim].slot = Slot::Unloaded;
                    let victim_name = pool.entries[victim].spec.name.clone();
                    shared.record(
                        &victim_name,
                        None,
                        ModelEvent::Unloaded {
                            reason: UnloadReason::Evicted,
                            for_model: Some(name.clone()),
                        },
                    );
                }
                break;
            }
            Plan::Blocked { short_by, pinned } => {
                if Instant::now() >= deadline {
                    let holders: Vec<&str> = pinned
                        .iter()
                        .map(|i| pool.entries[*i].spec.name.as_str())
                        .collect();
                    let message = format!(
                        "needs {:.1} MiB but the memory budget ({:.1} MiB) is {:.1} MiB short \
                         while models in use keep theirs ({}); it loads on the next request",
                        need as f64 / MIB,
                        budget as f64 / MIB,
                        short_by as f64 / MIB,
                        holders.join(", ")
                    );
                    tracing::warn!(model = %name, "{message}");
                    if let Some(metrics) = shared.metrics.get() {
                        metrics.model_error(&name, OVER_BUDGET);
                    }
                    let actor = pool.entries[index].requested_by.take();
                    shared.record(
                        &name,
                        actor,
                        ModelEvent::LoadFailed {
                            code: OVER_BUDGET.into(),
                            message: message.clone(),
                        },
                    );
                    pool.entries[index].slot = Slot::Failed {
                        code: OVER_BUDGET.into(),
                        message,
                    };
                    return;
                }
            }
        }
        drop(pool);
        std::thread::sleep(RETRY);
    }

    let started = Instant::now();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| (shared.load)(&spec)));
    // A registered version must be what it was registered as: a folder
    // changed on disk since would make images that record a stale hash.
    let base = super::split_lora_slot(&spec.name).0;
    let outcome = match (outcome, base.split_once('@')) {
        (Ok(Ok(model)), Some((_, version))) if model.info().content_hash != version => Ok(Err((
            "version_mismatch".to_string(),
            format!(
                "the folder {} now holds version {}, not {version}; register it again",
                spec.path.display(),
                model.info().content_hash
            ),
        ))),
        (outcome, _) => outcome,
    };
    let seconds = started.elapsed().as_secs_f64();
    let mut pool = shared.lock();
    let slot = match outcome {
        Ok(Ok(model)) => {
            let info = model.info().clone();
            tracing::info!(
                model = %name, seconds,
                mib = info.weight_bytes as f64 / MIB, "model loaded"
            );
            let entry = &mut pool.entries[index];
            if info.weight_bytes > 0 {
                entry.bytes = info.weight_bytes;
            }
            entry.info = Some(Arc::new(info));
            Slot::Ready(model)
        }
        Ok(Err((code, message))) => {
            tracing::error!(model = %name, code = %code, error = %message, "model failed to load");
            Slot::Failed { code, message }
        }
        Err(_) => {
            tracing::error!(model = %name, "model loading panicked");
            Slot::Failed {
                code: "load_panicked".into(),
                message: "the engine panicked while loading; see the server log".into(),
            }
        }
    };
    let ready = matches!(slot, Slot::Ready(_));
    let actor = pool.entries[index].requested_by.take();
    let event = match &slot {
        Slot::Failed { code, message } => ModelEvent::LoadFailed {
            code: code.clone(),
            message: message.clone(),
        },
        _ => {
            let info = pool.entries[index].info.as_deref();
            ModelEvent::Loaded {
                model_hash: info.map(|i| i.content_hash.clone()).unwrap_or_default(),
                bytes: pool.entries[index].bytes,
                seconds,
            }
        }
    };
    shared.record(&name, actor, event);
    // A LoRA combination is no version of its model: nothing to publish.
    if let (true, Some(info), false) = (
        ready,
        pool.entries[index].info.clone(),
        super::is_lora_slot(&name),
    ) {
        shared.publish(&spec, pool.entries[index].configured, &info);
    }
    if let Some(metrics) = shared.metrics.get() {
        match &slot {
            Slot::Failed { code, .. } => metrics.model_error(&name, code),
            _ => metrics.model_loaded(&name, seconds),
        }
    }
    pool.entries[index].slot = slot;
    if ready {
        pool.touch(index);
    }
}

/// The models taking memory, other than `except`: the ready ones, pinned
/// while a batch holds them. Loads run one at a time, so another slot in
/// `Loading` is only queued and takes no memory yet.
fn residents(pool: &Pool, except: usize) -> Vec<Resident> {
    pool.entries
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != except)
        .filter_map(|(index, e)| {
            let pinned = match &e.slot {
                Slot::Ready(g) => Arc::strong_count(g) > 1,
                Slot::Loading | Slot::Unloaded | Slot::Failed { .. } => return None,
            };
            Some(Resident {
                index,
                bytes: e.bytes,
                last_used: e.last_used,
                pinned,
            })
        })
        .collect()
}
