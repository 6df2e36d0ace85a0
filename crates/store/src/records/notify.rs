//! A notification from another process sharing the database.

/// One message received on a channel ([`crate::Db::listen`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The channel it was sent on.
    pub channel: String,
    /// What was sent (at most about 8,000 bytes).
    pub payload: String,
}
