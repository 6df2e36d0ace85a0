//! PostgreSQL's `LISTEN`/`NOTIFY`: how processes sharing the database tell
//! each other that something changed.

use sqlx::postgres::PgListener;

use super::PgDb;
use crate::error::Result;
use crate::records::notify::Notification;

impl PgDb {
    /// Sends `payload` on `channel` to every listening session, when the
    /// statement commits (at once: it runs alone).
    pub(crate) async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A session of its own listening on `channels`.
    pub(crate) async fn listen(&self, channels: &[&str]) -> Result<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen_all(channels.iter().copied()).await?;
        Ok(listener)
    }
}

/// The next notification; reconnects (and listens again) after the
/// connection was lost, which loses what was sent meanwhile.
pub(crate) async fn recv(listener: &mut PgListener) -> Result<Notification> {
    let received = listener.recv().await?;
    Ok(Notification {
        channel: received.channel().to_string(),
        payload: received.payload().to_string(),
    })
}
