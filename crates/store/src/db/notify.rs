//! Signals between processes that share one database: PostgreSQL's
//! `LISTEN`/`NOTIFY`. A SQLite database has one process, so it has none;
//! callers then keep to their in-process signals.
//!
//! Delivery is best effort: a notification sent while a listener was
//! disconnected is lost. Every signal therefore stands for state that is
//! also in the tables, which a slow poll finds anyway.

use super::{Backend, Db};
use crate::error::Result;
use crate::records::notify::Notification;

/// A job became queued (payload: its tier). Sent by the database itself,
/// whichever process queued it.
pub const CHANNEL_QUEUED: &str = "easel_queued";

/// A running job's owner asked to cancel it (payload: the job id). Sent by
/// the database itself.
pub const CHANNEL_CANCEL: &str = "easel_cancel";

/// A session listening for notifications ([`Db::listen`]).
pub struct Listener {
    inner: sqlx::postgres::PgListener,
}

impl Db {
    /// Whether other processes can share this database and hear
    /// [`Db::notify`] (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Sends `payload` on `channel` to every process listening. Nothing on
    /// SQLite.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        match &self.backend {
            Backend::Postgres(pg) => pg.notify(channel, payload).await,
            Backend::Sqlite(_) => Ok(()),
        }
    }

    /// Listens on `channels` on a session of its own; `None` on SQLite.
    pub async fn listen(&self, channels: &[&str]) -> Result<Option<Listener>> {
        match &self.backend {
            Backend::Postgres(pg) => Ok(Some(Listener {
                inner: pg.listen(channels).await?,
            })),
            Backend::Sqlite(_) => Ok(None),
        }
    }
}

impl Listener {
    /// The next notification. After a lost connection it reconnects and
    /// listens again (what was sent meanwhile is lost); an error means it
    /// could not.
    pub async fn recv(&mut self) -> Result<Notification> {
        crate::postgres::notify::recv(&mut self.inner).await
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}
