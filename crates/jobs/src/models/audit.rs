//! The pool's audit trail: `model.loaded`, `model.load_failed` and
//! `model.unloaded` events, appended to the store's audit log; and each
//! loaded model's description, published to the store's model catalog for
//! the processes that load no model (the `api` role).
//!
//! Loads finish on the loader's OS thread and unloads happen under the
//! pool's lock, neither of which may wait on the database. So the pool only
//! sends each event down an unbounded channel; one task on the runtime that
//! attached the log appends them in the order they were sent. A failed
//! append is logged and does not affect the pool.

use easel_store::{Db, NewAuditEvent};
use serde_json::json;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

/// Why a model left memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnloadReason {
    /// An unload asked for (the admin route).
    Requested,
    /// Evicted, least recently used first, to make room for another model.
    Evicted,
}

/// Something the pool did that the audit log keeps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ModelEvent {
    /// A load finished and the model is ready.
    Loaded {
        /// Content hash of the weights.
        model_hash: String,
        /// Bytes of weights in memory.
        bytes: u64,
        /// Wall-clock seconds the load took.
        seconds: f64,
    },
    /// A load failed; the slot is `failed` with this code and message.
    LoadFailed { code: String, message: String },
    /// A ready model was dropped from memory.
    Unloaded {
        reason: UnloadReason,
        /// The model it made room for (evictions only).
        for_model: Option<String>,
    },
}

impl ModelEvent {
    /// The audit entry: type `model.*`, subject the model's name, actor who
    /// asked for it (`None`: the server itself).
    fn entry(self, model: &str, actor: Option<String>) -> NewAuditEvent {
        let (kind, detail) = match self {
            ModelEvent::Loaded {
                model_hash,
                bytes,
                seconds,
            } => (
                "model.loaded",
                json!({"model_hash": model_hash, "bytes": bytes, "seconds": seconds}),
            ),
            ModelEvent::LoadFailed { code, message } => (
                "model.load_failed",
                json!({"code": code, "message": message}),
            ),
            ModelEvent::Unloaded { reason, for_model } => (
                "model.unloaded",
                json!({
                    "reason": match reason {
                        UnloadReason::Requested => "requested",
                        UnloadReason::Evicted => "evicted",
                    },
                    "for_model": for_model,
                }),
            ),
        };
        let mut entry = NewAuditEvent::new(kind).subject(model).detail(detail);
        entry.actor = actor;
        entry
    }
}

/// What the sink writes, in order.
enum Write {
    Audit(NewAuditEvent),
    Catalog {
        model: String,
        info: serde_json::Value,
    },
    /// A loaded folder's version, for the version registry.
    Version {
        model: String,
        version: String,
        path: String,
        architecture: String,
    },
}

/// The sending end; cheap to call from any thread.
pub(crate) struct AuditSink {
    tx: UnboundedSender<Write>,
}

impl AuditSink {
    /// Starts the task that appends to `db`, on the current Tokio runtime.
    /// `None` outside a runtime (nothing could run the appends).
    pub(crate) fn start(db: Db) -> Option<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (tx, mut rx) = unbounded_channel::<Write>();
        // Ends when the pool (the only sender) is dropped.
        runtime.spawn(async move {
            while let Some(write) = rx.recv().await {
                match write {
                    Write::Audit(entry) => {
                        let kind = entry.event_type.clone();
                        if let Err(e) = db.append_audit(entry).await {
                            tracing::warn!(event = %kind, error = %e, "could not append to the audit log");
                        }
                    }
                    Write::Catalog { model, info } => {
                        if let Err(e) = db.publish_model(&model, &info).await {
                            tracing::warn!(model = %model, error = %e, "could not publish the model's description");
                        }
                    }
                    Write::Version {
                        model,
                        version,
                        path,
                        architecture,
                    } => {
                        let recorded = db
                            .record_model_version(
                                &model,
                                &version,
                                &path,
                                Some(&architecture),
                                Some("server"),
                            )
                            .await;
                        if let Err(e) = recorded {
                            tracing::warn!(model = %model, error = %e, "could not record the model's version");
                        }
                    }
                }
            }
        });
        Some(Self { tx })
    }

    /// Queues one event for the log.
    pub(crate) fn record(&self, model: &str, actor: Option<String>, event: ModelEvent) {
        // The receiver only goes when the runtime shuts down; the event is
        // lost with it, as any in-flight write would be.
        let _ = self.tx.send(Write::Audit(event.entry(model, actor)));
    }

    /// Queues a loaded model's version for the version registry and, for
    /// a configured model, its description for the model catalog.
    pub(crate) fn publish(
        &self,
        spec: &super::ModelSpec,
        configured: bool,
        info: &easel_engine::ModelInfo,
    ) {
        let alias = spec.name.split('@').next().unwrap_or(&spec.name);
        let _ = self.tx.send(Write::Version {
            model: alias.to_string(),
            version: info.content_hash.clone(),
            path: spec.path.display().to_string(),
            architecture: serde_json::to_value(info.architecture)
                .ok()
                .and_then(|a| a.as_str().map(str::to_string))
                .unwrap_or_default(),
        });
        if !configured {
            return;
        }
        match serde_json::to_value(info) {
            Ok(info) => {
                let _ = self.tx.send(Write::Catalog {
                    model: spec.name.clone(),
                    info,
                });
            }
            Err(e) => tracing::warn!(model = %spec.name, error = %e, "cannot describe the model"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_model_entries_with_the_name_as_subject() {
        let e = ModelEvent::Unloaded {
            reason: UnloadReason::Evicted,
            for_model: Some("big".into()),
        }
        .entry("small", None);
        assert_eq!(e.event_type, "model.unloaded");
        assert_eq!(e.subject.as_deref(), Some("small"));
        assert_eq!(e.actor, None);
        assert_eq!(e.detail, json!({"reason": "evicted", "for_model": "big"}));
        let f = ModelEvent::LoadFailed {
            code: "corrupt_weights".into(),
            message: "bad header".into(),
        }
        .entry("x", Some("ops".into()));
        assert_eq!(
            (f.event_type.as_str(), f.actor.as_deref()),
            ("model.load_failed", Some("ops"))
        );
    }
}
