//! Fair-share counters on PostgreSQL.
//!
//! A charge is one transaction that first takes a transaction-level
//! advisory lock for its tier: charges of one tier, from any process, run
//! one at a time, and since each statement of a READ COMMITTED transaction
//! sees what was committed before it started, the read after the lock sees
//! the charge that held it before. An advisory lock rather than
//! `SELECT … FOR UPDATE`, because a tier's first charge has no row to lock.

use easel_core::Tier;

use super::PgDb;
use crate::db::{ShareWrites, VtimeWrite};
use crate::error::Result;
use crate::records::fair_share::FairShares;
use crate::rows;

// Serialises the charges of one tier (`$1` is its priority) until the
// transaction ends. The first key, "fair" in ASCII, keeps these locks apart
// from admission's ("ease", `jobs.rs`) and from other applications'.
const LOCK_TIER: &str = "SELECT pg_advisory_xact_lock(1717660018, $1::int4)";

// Counters and virtual times in one statement (one snapshot); `$1` NULL
// reads both tiers, otherwise only that one. A virtual-time row has a NULL
// `user_id`.
const READ: &str = "SELECT tier, user_id, served FROM fair_share \
       WHERE $1::text IS NULL OR tier = $1 \
     UNION ALL \
     SELECT tier, NULL::text AS user_id, vtime AS served FROM fair_share_vtime \
       WHERE $1::text IS NULL OR tier = $1";

const SET: &str = "INSERT INTO fair_share (tier, user_id, served) VALUES ($1, $2, $3) \
     ON CONFLICT (tier, user_id) DO UPDATE SET served = excluded.served";

const REMOVE: &str = "DELETE FROM fair_share WHERE tier = $1 AND user_id = ANY($2)";

const SET_VTIME: &str = "INSERT INTO fair_share_vtime (tier, vtime) VALUES ($1, $2) \
     ON CONFLICT (tier) DO UPDATE SET vtime = excluded.vtime";

const CLEAR_VTIME: &str = "DELETE FROM fair_share_vtime WHERE tier = $1";

impl PgDb {
    /// Both tiers' counters.
    pub(crate) async fn fair_shares(&self) -> Result<FairShares> {
        let found = sqlx::query(READ)
            .bind(None::<&str>)
            .fetch_all(&self.pool)
            .await?;
        rows::fair_shares(&found)
    }

    /// Reads `tier`'s counters, charges them and writes back what changed,
    /// in one transaction under the tier's advisory lock.
    pub(crate) async fn charge_fair_share(
        &self,
        tier: Tier,
        per_user: &[(String, u32)],
        backlog: bool,
    ) -> Result<()> {
        let name = tier.as_str();
        let mut tx = self.pool.begin().await?;
        sqlx::query(LOCK_TIER)
            .bind(rows::priority(tier) as i32)
            .execute(&mut *tx)
            .await?;
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
                .bind(&writes.removed)
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
