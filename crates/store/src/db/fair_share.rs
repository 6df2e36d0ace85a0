//! Fair-share counters in the database, shared by every worker.
//!
//! Each worker plans from [`Db::fair_shares`] and, once it has claimed a
//! batch, charges it with [`Db::charge_fair_share`]: a read, the pure
//! [`FairShare::charge`], and a write of what changed, atomically per tier
//! (on PostgreSQL under a per-tier advisory lock, on SQLite on the single
//! writer), so two workers charging at once never lose each other's
//! images, whichever process they run in.

use easel_core::Tier;

use super::{Db, dispatch};
use crate::error::Result;
use crate::records::fair_share::{FairShare, FairShares};

impl Db {
    /// Both tiers' fair-share counters, in one statement (so one consistent
    /// snapshot, however many workers charge meanwhile).
    pub async fn fair_shares(&self) -> Result<FairShares> {
        dispatch!(self, b => b.fair_shares().await)
    }

    /// Charges a claimed batch of `tier` to its users, as
    /// [`FairShare::charge`] does in memory: `per_user` is the batch's
    /// images per user, leader first; `backlog` says whether anything of
    /// the tier was left queued (without it the tier's counters are reset).
    /// The read, the arithmetic and the write form one transaction that
    /// excludes every other charge of the tier, in any process.
    pub async fn charge_fair_share(
        &self,
        tier: Tier,
        per_user: &[(String, u32)],
        backlog: bool,
    ) -> Result<()> {
        dispatch!(self, b => b.charge_fair_share(tier, per_user, backlog).await)
    }
}

/// What a charge changes in one tier's rows: only those, so a charge costs
/// the batch's users, not every user with a counter.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ShareWrites {
    /// Users whose counter is new or changed, with its value.
    pub(crate) set: Vec<(String, i64)>,
    /// Users whose row goes (idle again, or the busy period ended).
    pub(crate) removed: Vec<String>,
    /// The tier's virtual-time row.
    pub(crate) vtime: VtimeWrite,
}

/// What happens to a tier's `fair_share_vtime` row.
#[derive(Debug, Default, PartialEq)]
pub(crate) enum VtimeWrite {
    /// Unchanged.
    #[default]
    Keep,
    /// Now this.
    Set(i64),
    /// Back to 0: the row goes.
    Clear,
}

impl ShareWrites {
    /// The rows that change when `per_user` and `backlog` are charged to
    /// `before`, a tier's state as the database holds it.
    pub(crate) fn charge(
        before: &FairShare,
        per_user: &[(String, u32)],
        backlog: bool,
    ) -> ShareWrites {
        let mut after = before.clone();
        after.charge(per_user, backlog);
        let set = after
            .served
            .iter()
            .filter(|(user, served)| before.served.get(*user) != Some(served))
            .map(|(user, served)| (user.clone(), to_column(*served)))
            .collect();
        let removed = before
            .served
            .keys()
            .filter(|user| !after.served.contains_key(*user))
            .cloned()
            .collect();
        let vtime = match after.vtime {
            v if v == before.vtime => VtimeWrite::Keep,
            0 => VtimeWrite::Clear,
            v => VtimeWrite::Set(to_column(v)),
        };
        ShareWrites {
            set,
            removed,
            vtime,
        }
    }
}

/// A counter as a BIGINT column; 2⁶³ images is beyond any queue.
fn to_column(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_charge_writes_only_the_rows_it_changes() {
        let before = FairShare {
            served: HashMap::from([("a".into(), 3), ("b".into(), 5), ("c".into(), 9)]),
            vtime: 2,
        };
        // `a` leads at 3: `a` goes to 4, `b` (5) and `c` (9) are untouched,
        // nobody falls to the virtual time.
        let writes = ShareWrites::charge(&before, &[("a".into(), 1)], true);
        assert_eq!(
            writes,
            ShareWrites {
                set: vec![("a".into(), 4)],
                removed: vec![],
                vtime: VtimeWrite::Set(3),
            }
        );
    }

    #[test]
    fn the_end_of_a_busy_period_removes_every_row() {
        let before = FairShare {
            served: HashMap::from([("a".into(), 3)]),
            vtime: 2,
        };
        let writes = ShareWrites::charge(&before, &[("a".into(), 1)], false);
        assert_eq!(writes.set, vec![]);
        assert_eq!(writes.removed, vec!["a".to_string()]);
        assert_eq!(writes.vtime, VtimeWrite::Clear);
    }
}
