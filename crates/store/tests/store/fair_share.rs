//! Fair-share counters in the database: every worker, in any process,
//! charges one set of counters per tier, with exactly the arithmetic of
//! `FairShare::charge`, and concurrent charges never lose one another.

use std::collections::HashMap;

use easel_core::Tier;
use easel_store::{FairShare, FairShares};

use crate::helpers::fresh_db;

fn batch(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
    pairs.iter().map(|(u, n)| (u.to_string(), *n)).collect()
}

#[tokio::test]
async fn a_new_database_has_no_counters() {
    let t = fresh_db().await;
    assert_eq!(t.db.fair_shares().await.unwrap(), FairShares::default());
}

#[tokio::test]
async fn charges_from_two_processes_accumulate_into_one_fair_order() {
    let t = fresh_db().await;
    let other = t.connect_again().await;
    let workers = [t.db.clone(), other.clone()];
    // The same charges, alternating between the two handles, and in memory.
    let charges = [
        batch(&[("heavy", 4)]),
        batch(&[("light", 1), ("heavy", 3)]),
        batch(&[("heavy", 4)]),
        batch(&[("", 2)]),
        batch(&[("light", 1), ("", 1), ("heavy", 2)]),
    ];
    let mut expected = FairShare::default();
    for (i, per_user) in charges.iter().enumerate() {
        workers[i % 2]
            .charge_fair_share(Tier::Batch, per_user, true)
            .await
            .unwrap();
        expected.charge(per_user, true);
        for db in &workers {
            let shares = db.fair_shares().await.unwrap();
            assert_eq!(shares.batch, expected, "after charge {i}");
            assert_eq!(shares.realtime, FairShare::default(), "tiers are apart");
        }
    }
    // One fair order, whichever process asks: the light user leads.
    for db in &workers {
        let shares = db.fair_shares().await.unwrap().batch;
        let least = ["heavy", "light", ""]
            .into_iter()
            .min_by_key(|u| shares.effective(u))
            .unwrap();
        assert_eq!(least, "light", "{shares:?}");
    }
}

#[tokio::test]
async fn a_tiers_counters_are_forgotten_when_its_queue_empties() {
    let t = fresh_db().await;
    let other = t.connect_again().await;
    t.db.charge_fair_share(Tier::Batch, &batch(&[("a", 3)]), true)
        .await
        .unwrap();
    t.db.charge_fair_share(Tier::Batch, &batch(&[("b", 1)]), true)
        .await
        .unwrap();
    t.db.charge_fair_share(Tier::Realtime, &batch(&[("a", 1)]), true)
        .await
        .unwrap();
    // The last batch of the busy period, claimed by another process.
    other
        .charge_fair_share(Tier::Batch, &batch(&[("b", 1)]), false)
        .await
        .unwrap();
    let shares = t.db.fair_shares().await.unwrap();
    assert_eq!(shares.batch, FairShare::default());
    assert_eq!(
        shares.realtime,
        FairShare {
            served: HashMap::from([("a".into(), 1)]),
            vtime: 0,
        },
        "only the tier that emptied is reset"
    );
    // A new busy period starts from nothing.
    t.db.charge_fair_share(Tier::Batch, &batch(&[("b", 2)]), true)
        .await
        .unwrap();
    assert_eq!(
        other.fair_shares().await.unwrap().batch,
        FairShare {
            served: HashMap::from([("b".into(), 2)]),
            vtime: 0,
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_charges_from_two_processes_lose_no_update() {
    let t = fresh_db().await;
    let handles = [t.db.clone(), t.connect_again().await];
    const PER_HANDLE: u64 = 20;
    let mut tasks = Vec::new();
    for db in &handles {
        for _ in 0..PER_HANDLE {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.charge_fair_share(Tier::Batch, &batch(&[("a", 1), ("b", 2)]), true)
                    .await
                    .unwrap();
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Every charge read the one before it: `a` led each time, at its
    // previous count, and both users got every one of their images.
    let n = PER_HANDLE * 2;
    assert_eq!(
        t.db.fair_shares().await.unwrap().batch,
        FairShare {
            served: HashMap::from([("a".into(), n), ("b".into(), 2 * n)]),
            vtime: n - 1,
        }
    );
}
