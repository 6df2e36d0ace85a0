//! Progress fan-out: one `tokio::sync::broadcast` channel per live job.
//!
//! The hub remembers the latest event of every live job and publishes under
//! the same lock it subscribes under, so a watcher that arrives late gets the
//! current state first and then every later event, with nothing lost or
//! repeated in between. A job's channel is dropped after its terminal event;
//! watchers then drain what was sent and see the channel close.
//!
//! Publishing never blocks: the engine thread calls [`EventHub::publish`]
//! after every step. A watcher that falls more than [`CHANNEL_CAPACITY`]
//! events behind loses the oldest progress events (`Lagged`), which is fine
//! for progress and why terminal state is also readable from the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use easel_core::{ImageId, JobId};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Events buffered per job for slow watchers.
pub const CHANNEL_CAPACITY: usize = 64;

/// Something that happened to a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    /// Persisted and waiting for the worker.
    Queued {
        /// The job.
        #[serde(serialize_with = "display", deserialize_with = "parse")]
        job_id: JobId,
    },
    /// The worker claimed it and generation began.
    Started {
        /// The job.
        #[serde(serialize_with = "display", deserialize_with = "parse")]
        job_id: JobId,
    },
    /// A denoising step finished.
    Progress {
        /// The job.
        #[serde(serialize_with = "display", deserialize_with = "parse")]
        job_id: JobId,
        /// Steps done (1-based).
        step: u32,
        /// Steps in total.
        total: u32,
        /// Cheap previews of the job's images at this step, as
        /// `data:image/png;base64,…` URLs; empty unless previews are on
        /// (`[worker] preview_every_steps`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        previews: Vec<String>,
    },
    /// Every image is stored.
    Completed {
        /// The job.
        #[serde(serialize_with = "display", deserialize_with = "parse")]
        job_id: JobId,
        /// The stored images, in order (image `i` used seed `seed + i`).
        #[serde(serialize_with = "display_all", deserialize_with = "parse_all")]
        image_ids: Vec<ImageId>,
    },
    /// Generation failed.
    Failed {
        /// The job.
        #[serde(serialize_with = "display", deserialize_with = "parse")]
        job_id: JobId,
        /// Stable error code.
        code: String,
        /// Human-readable message.
        message: String,
    },
    /// Cancelled by its owner (or because its synchronous client left).
    Cancelled {
        /// The job.
        #[serde(serialize_with = "display", deserialize_with = "parse")]
        job_id: JobId,
    },
}

fn display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_all<S: serde::Serializer, T: std::fmt::Display>(
    v: &[T],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|x| x.to_string()))
}

fn parse<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

fn parse_all<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| text.parse().map_err(serde::de::Error::custom))
        .collect()
}

impl JobEvent {
    /// The job the event is about.
    pub fn job_id(&self) -> JobId {
        match self {
            JobEvent::Queued { job_id }
            | JobEvent::Started { job_id }
            | JobEvent::Progress { job_id, .. }
            | JobEvent::Completed { job_id, .. }
            | JobEvent::Failed { job_id, .. }
            | JobEvent::Cancelled { job_id } => *job_id,
        }
    }

    /// The SSE event name: `queued`, `started`, `progress`, `completed`,
    /// `failed` or `cancelled`.
    pub fn name(&self) -> &'static str {
        match self {
            JobEvent::Queued { .. } => "queued",
            JobEvent::Started { .. } => "started",
            JobEvent::Progress { .. } => "progress",
            JobEvent::Completed { .. } => "completed",
            JobEvent::Failed { .. } => "failed",
            JobEvent::Cancelled { .. } => "cancelled",
        }
    }

    /// Whether no event can follow this one.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobEvent::Completed { .. } | JobEvent::Failed { .. } | JobEvent::Cancelled { .. }
        )
    }
}

struct Channel {
    sender: broadcast::Sender<JobEvent>,
    latest: JobEvent,
}

/// The per-job channels. Cheap to clone.
#[derive(Clone, Default)]
pub struct EventHub {
    channels: Arc<Mutex<HashMap<JobId, Channel>>>,
}

/// A watcher's view: the state when it subscribed, then what follows.
pub struct Subscription {
    /// The latest event at subscription time.
    pub current: JobEvent,
    /// Later events; closes after the terminal one.
    pub receiver: broadcast::Receiver<JobEvent>,
}

impl EventHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `event` to the job's watchers and remembers it as the latest.
    /// A terminal event closes the job's channel.
    pub fn publish(&self, event: JobEvent) {
        let id = event.job_id();
        let mut channels = self.channels.lock().expect("event hub lock poisoned");
        let terminal = event.is_terminal();
        match channels.get_mut(&id) {
            Some(channel) => {
                // No receivers is not an error: nobody is watching.
                let _ = channel.sender.send(event.clone());
                channel.latest = event;
            }
            None if !terminal => {
                let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
                channels.insert(
                    id,
                    Channel {
                        sender,
                        latest: event,
                    },
                );
            }
            None => {}
        }
        if terminal {
            channels.remove(&id);
        }
    }

    /// Subscribes to a live job, or, when the hub has no channel for it
    /// (a job queued before a restart), opens one whose current state is
    /// `fallback`. Returns `None` when `fallback` is terminal and nothing is
    /// live: the caller already has the whole story.
    pub fn subscribe(
        &self,
        id: JobId,
        fallback: impl FnOnce() -> JobEvent,
    ) -> Option<Subscription> {
        let mut channels = self.channels.lock().expect("event hub lock poisoned");
        if let Some(channel) = channels.get(&id) {
            return Some(Subscription {
                current: channel.latest.clone(),
                receiver: channel.sender.subscribe(),
            });
        }
        let current = fallback();
        if current.is_terminal() {
            return None;
        }
        let (sender, receiver) = broadcast::channel(CHANNEL_CAPACITY);
        channels.insert(
            id,
            Channel {
                sender,
                latest: current.clone(),
            },
        );
        Some(Subscription { current, receiver })
    }

    /// Sends `event` to the job's watchers only if the job has a channel
    /// (someone subscribed, or it runs here): an event relayed from another
    /// process opens no channel that no terminal event might ever close.
    pub fn publish_if_watched(&self, event: JobEvent) {
        let id = event.job_id();
        let mut channels = self.channels.lock().expect("event hub lock poisoned");
        let Some(channel) = channels.get_mut(&id) else {
            return;
        };
        let _ = channel.sender.send(event.clone());
        if event.is_terminal() {
            channels.remove(&id);
        } else {
            channel.latest = event;
        }
    }

    /// The latest event of a live job.
    pub fn latest(&self, id: JobId) -> Option<JobEvent> {
        let channels = self.channels.lock().expect("event hub lock poisoned");
        channels.get(&id).map(|c| c.latest.clone())
    }

    /// Number of live jobs with a channel (for tests and metrics).
    pub fn live(&self) -> usize {
        self.channels.lock().expect("event hub lock poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_watcher_gets_the_current_state_then_later_events() {
        let hub = EventHub::new();
        let job_id = JobId::new();
        hub.publish(JobEvent::Queued { job_id });
        hub.publish(JobEvent::Started { job_id });
        hub.publish(JobEvent::Progress {
            job_id,
            step: 1,
            total: 2,
            previews: vec![],
        });
        let mut sub = hub.subscribe(job_id, || unreachable!()).unwrap();
        assert_eq!(
            sub.current,
            JobEvent::Progress {
                job_id,
                step: 1,
                total: 2,
                previews: vec![],
            }
        );
        hub.publish(JobEvent::Progress {
            job_id,
            step: 2,
            total: 2,
            previews: vec![],
        });
        hub.publish(JobEvent::Completed {
            job_id,
            image_ids: vec![],
        });
        assert_eq!(sub.receiver.try_recv().unwrap().name(), "progress");
        assert_eq!(sub.receiver.try_recv().unwrap().name(), "completed");
        assert!(matches!(
            sub.receiver.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
        assert_eq!(hub.live(), 0);
    }

    #[test]
    fn a_finished_job_opens_no_channel() {
        let hub = EventHub::new();
        let job_id = JobId::new();
        assert!(
            hub.subscribe(job_id, || JobEvent::Cancelled { job_id })
                .is_none()
        );
        assert_eq!(hub.live(), 0);
    }

    #[test]
    fn events_serialize_with_a_type_tag_and_text_ids() {
        let job_id = JobId::new();
        let v = serde_json::to_value(JobEvent::Progress {
            job_id,
            step: 3,
            total: 8,
            previews: vec![],
        })
        .unwrap();
        assert_eq!(v["type"], "progress");
        assert_eq!(v["job_id"], job_id.to_string());
        assert_eq!(v["step"], 3);
    }
}
