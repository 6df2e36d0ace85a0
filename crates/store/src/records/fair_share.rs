//! Fair-share counters: start-time fair queuing's state for one tier, and
//! the pure arithmetic that charges a batch to it.
//!
//! The scheduler (`easel_jobs::schedule`) orders users by
//! [`FairShare::effective`]; whoever claims a batch charges it with
//! [`FairShare::charge`]. The store keeps one [`FairShare`] per tier in the
//! database ([`Db::fair_shares`](crate::Db::fair_shares),
//! [`Db::charge_fair_share`](crate::Db::charge_fair_share)), so every
//! worker, in any process, plans from the same counters.

use std::collections::HashMap;

use easel_core::Tier;

/// Fair-share state of one tier.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FairShare {
    /// Images served per user (anonymous jobs share the empty name), in the
    /// tier's virtual time. Users at or below `vtime` are dropped: they
    /// count as idle. Default: empty.
    pub served: HashMap<String, u64>,
    /// The tier's virtual time: the counter of the most recent leader.
    /// Default 0.
    pub vtime: u64,
}

impl FairShare {
    /// `user`'s counter: what it was served, lifted to the virtual time, so
    /// a user returning from idle starts level with the last leader.
    pub fn effective(&self, user: &str) -> u64 {
        self.served.get(user).copied().unwrap_or(0).max(self.vtime)
    }

    /// Charges one claimed batch: `per_user` is its images per user, the
    /// leader first. The virtual time moves to the leader's counter, each
    /// user's counter grows by its images, and counters at or below the
    /// virtual time are forgotten. With no `backlog` (nothing of the tier
    /// left queued) the tier's busy period is over and every counter is
    /// forgotten, so the state never outgrows the queue.
    pub fn charge(&mut self, per_user: &[(String, u32)], backlog: bool) {
        if !backlog {
            *self = FairShare::default();
            return;
        }
        let Some((leader, _)) = per_user.first() else {
            return;
        };
        self.vtime = self.vtime.max(self.effective(leader));
        for (user, images) in per_user {
            let served = self.effective(user) + u64::from(*images);
            self.served.insert(user.clone(), served);
        }
        let vtime = self.vtime;
        self.served.retain(|_, served| *served > vtime);
    }
}

/// The fair-share state of both tiers, as [`Db::fair_shares`](crate::Db::fair_shares)
/// reads it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FairShares {
    /// The realtime tier's counters. Default: empty.
    pub realtime: FairShare,
    /// The batch tier's counters. Default: empty.
    pub batch: FairShare,
}

impl FairShares {
    /// The counters of `tier`.
    pub fn tier(&self, tier: Tier) -> &FairShare {
        match tier {
            Tier::Realtime => &self.realtime,
            Tier::Batch => &self.batch,
        }
    }

    /// The counters of `tier`, to change.
    pub fn tier_mut(&mut self, tier: Tier) -> &mut FairShare {
        match tier {
            Tier::Realtime => &mut self.realtime,
            Tier::Batch => &mut self.batch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_user(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
        pairs.iter().map(|(u, n)| (u.to_string(), *n)).collect()
    }

    #[test]
    fn the_leader_sets_the_virtual_time_and_everyone_pays_for_their_images() {
        let mut share = FairShare::default();
        share.charge(&per_user(&[("a", 2), ("b", 1)]), true);
        assert_eq!(share.vtime, 0);
        assert_eq!(
            share.served,
            HashMap::from([("a".into(), 2), ("b".into(), 1)])
        );
        // `b` leads next: the virtual time moves to its counter, and a
        // newcomer starts there.
        share.charge(&per_user(&[("b", 1)]), true);
        assert_eq!(share.vtime, 1);
        assert_eq!(share.effective("c"), 1);
        assert_eq!(
            share.served,
            HashMap::from([("a".into(), 2), ("b".into(), 2)])
        );
    }

    #[test]
    fn counters_at_the_virtual_time_are_forgotten() {
        let mut share = FairShare::default();
        share.charge(&per_user(&[("a", 1)]), true);
        share.charge(&per_user(&[("b", 3)]), true);
        share.charge(&per_user(&[("a", 1)]), true);
        // `a` led at 1 and is now at 2; `b` at 3 stays above.
        assert_eq!(share.vtime, 1);
        share.charge(&per_user(&[("a", 2)]), true);
        assert_eq!(share.vtime, 2);
        assert_eq!(
            share.served,
            HashMap::from([("a".into(), 4), ("b".into(), 3)])
        );
        share.charge(&per_user(&[("b", 1)]), true);
        share.charge(&per_user(&[("a", 0)]), true);
        // `a` led at 4 with nothing: everyone at or below 4 is idle.
        assert_eq!(share.vtime, 4);
        assert!(share.served.is_empty(), "{:?}", share.served);
    }

    #[test]
    fn the_end_of_a_busy_period_forgets_everything() {
        let mut share = FairShare::default();
        share.charge(&per_user(&[("a", 5)]), true);
        share.charge(&per_user(&[("a", 1)]), false);
        assert_eq!(share, FairShare::default());
    }

    #[test]
    fn an_empty_charge_with_backlog_changes_nothing() {
        let mut share = FairShare::default();
        share.charge(&per_user(&[("a", 5)]), true);
        let before = share.clone();
        share.charge(&[], true);
        assert_eq!(share, before);
    }
}
