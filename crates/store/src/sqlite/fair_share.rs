//! Fair-share counters on SQLite.
//!
//! A charge is one `BEGIN IMMEDIATE` transaction on the writer connection:
//! it holds the database's write lock from its first statement, so the
//! read it starts with sees every earlier charge, from this process or any
//! other on the same file, and no other charge can slip in before it
//! commits.

use easel_core::Tier;

use super::SqliteDb;
use crate::db::{ShareWrites, VtimeWrite};
use crate::error::Result;
use crate::records::fair_share::FairShares;
use crate::rows;

// Counters and virtual times in one statement (one snapshot); `?1` NULL
// reads both tiers, otherwise only that one. A virtual-time row has a NULL
// `user_id`.
const READ: &str = "SELECT tier, user_id, served FROM fair_share \
       WHERE ?1 IS NULL OR tier = ?1 \
     UNION ALL \
     SELECT tier, NULL AS user_id, vtime AS served FROM fair_share_vtime \
       WHERE ?1 IS NULL OR tier = ?1";

const SET: &str = "INSERT INTO fair_share (tier, user_id, served) VALUES (?1, ?2, ?3) \
     ON CONFLICT (tier, user_id) DO UPDATE SET served = excluded.served";

// `?2` is a JSON array of user ids.
const REMOVE: &str = "DELETE FROM fair_share \
     WHERE tier = ?1 AND user_id IN (SELECT value FROM json_each(?2))";

const SET_VTIME: &str = "INSERT INTO fair_share_vtime (tier, vtime) VALUES (?1, ?2) \
     ON CONFLICT (tier) DO UPDATE SET vtime = excluded.vtime";

const CLEAR_VTIME: &str = "DELETE FROM fair_share_vtime WHERE tier = ?1";

impl SqliteDb {
    /// Both tiers' counters.
    pub(crate) async fn fair_shares(&self) -> Result<FairShares> {
        let found = sqlx::query(READ)
            .bind(None::<&str>)
            .fetch_all(&self.reader)
            .await?;
        rows::fair_shares(&found)
    }

    /// Reads `tier`'s counters, charges them and writes back what changed,
    /// in one write transaction.
    pub(crate) async fn charge_fair_share(
        &self,
        tier: Tier,
        per_user: &[(String, u32)],
        backlog: bool,
    ) -> Result<()> {
        let name = tier.as_str();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let found = sqlx::query(READ).bind(name).fetch_all(&mut *tx).await?;
        let before = rows::fair_shares(&found)?;
        let writes = ShareWrites::charge(before.tier(tier), per_user, backlog);
        for (user, served) in &writes.set {
            sqlx::query(SET)
                .bind(name)
                .bind(user)
                .bind(served)
                .execute(&mut *tx)
                .await?;
        }
        if !writes.removed.is_empty() {
            sqlx::query(REMOVE)
                .bind(name)
                .bind(rows::to_json(&writes.removed, "fair-share users")?)
                .execute(&mut *tx)
                .await?;
        }
        match writes.vtime {
            VtimeWrite::Keep => {}
            VtimeWrite::Set(vtime) => {
                sqlx::query(SET_VTIME)
                    .bind(name)
                    .bind(vtime)
                    .execute(&mut *tx)
                    .await?;
            }
            VtimeWrite::Clear => {
                sqlx::query(CLEAR_VTIME)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
