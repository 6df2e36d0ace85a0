//! The queue's policy as pure state: which queued jobs run next, and which
//! run together. No runtime and no store: the worker hands it the queued
//! candidates and the fair-share counters it read from the store, runs the
//! [`Plan`] it returns, and charges what it claimed ([`Charge`]) to the
//! store and to it; unit tests drive it directly.
//!
//! # Rules
//! 1. **Tiers are strict.** Realtime jobs (a client is waiting) run before
//!    any batch job. A batch never mixes tiers: on a CPU every image costs
//!    the same whether batched or not, so a batch job riding along with a
//!    realtime one would only delay it.
//! 2. **Fair share within a tier** (start-time fair queuing). Every user has
//!    a counter of images served; the user with the smallest counter leads
//!    the next batch (ties: the older head job). A user who was idle is
//!    lifted to the tier's virtual time (the counter of the last leader), so
//!    idling builds no credit and a returning user cannot monopolise the
//!    worker. With one user holding 1,000 queued jobs, another user's single
//!    job leads the very next batch. Counters are forgotten when the tier's
//!    queue empties (the end of a busy period), so they stay bounded. They
//!    live in the database, not in a worker ([`easel_store::FairShares`]):
//!    every worker, in any process, plans from them and charges what it
//!    claimed, so the order is fair across all workers, not per process.
//! 3. **Batches form around the leader.** The leader's [`BatchKey`] (model,
//!    size, steps, guidance, sampler, schedule, strength) decides the batch;
//!    then, round-robin over the users in fair order, each user's next job
//!    with the same key joins while the batch has room for its images.
//!    Per-image seeds give each image of a batch the noise it would have
//!    alone; its pixels match unbatched runs within the engine's batching
//!    tolerance.
//! 4. **A job larger than a batch runs alone** (its `n` images in one call).
//! 5. **A short window** lets a batch that is not full wait for companions:
//!    [`Scheduler::wait_for_more`] says how long, measured from the leader's
//!    arrival, so a job never waits more than the window in total.

use std::collections::HashMap;
use std::time::Duration;

use easel_core::{GenerationParams, JobId, SamplerKind, ScheduleKind, Size, Tier};
use easel_store::{FairShares, QueuedJob};

/// What jobs must share to run in one engine call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchKey {
    /// The pool name of the model it runs on: `model@version` for a job
    /// routed to a version, followed by its LoRA combination, if any
    /// ([`crate::models::slot_name`]): jobs with different LoRAs run on
    /// different merged weights, so they never share a batch.
    pub model: String,
    /// Output size.
    pub size: Size,
    /// Denoising steps.
    pub steps: u32,
    /// Guidance scale, by its bits (so the key is `Eq`).
    pub guidance_bits: u32,
    /// Requested sampler (`None`: the model's default).
    pub sampler: Option<SamplerKind>,
    /// Sigma schedule.
    pub schedule: ScheduleKind,
    /// Image-to-image strength, by its bits; `None` for text-to-image.
    pub strength_bits: Option<u32>,
    /// Clip skip (`None` and `Some(1)` are the same layer).
    pub clip_skip: u32,
}

impl BatchKey {
    /// The key of a job with these parameters.
    pub fn of(params: &GenerationParams) -> Self {
        Self {
            model: crate::models::slot_name(params),
            size: params.size,
            steps: params.steps,
            guidance_bits: params.guidance_scale.to_bits(),
            sampler: params.sampler,
            schedule: params.schedule,
            strength_bits: params.strength.map(f32::to_bits),
            clip_skip: params.clip_skip.unwrap_or(1),
        }
    }
}

/// A queued job as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The job.
    pub id: JobId,
    /// Its tier.
    pub tier: Tier,
    /// Its user; anonymous jobs share the empty name.
    pub user: String,
    /// What it can be batched with.
    pub key: BatchKey,
    /// Images it makes (`n`).
    pub images: u32,
    /// When it was queued, in milliseconds since the epoch.
    pub queued_ms: i64,
}

impl From<&QueuedJob> for Candidate {
    fn from(job: &QueuedJob) -> Self {
        Self {
            id: job.id,
            tier: job.tier,
            user: job.user_id.clone().unwrap_or_default(),
            key: BatchKey::of(&job.params),
            images: job.params.n,
            queued_ms: job.created_at.timestamp_millis(),
        }
    }
}

/// The next batch to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The tier every job of the batch is in.
    pub tier: Tier,
    /// What the jobs share.
    pub key: BatchKey,
    /// The jobs, leader first.
    pub jobs: Vec<JobId>,
    /// Images in the batch.
    pub images: u32,
    /// Images per user, for [`Scheduler::charge`].
    pub per_user: Vec<(String, u32)>,
    /// When the leader was queued (ms since the epoch): the batching window
    /// counts from here.
    pub leader_queued_ms: i64,
}

/// What one claimed batch costs its users: the arguments of
/// [`easel_store::FairShare::charge`], for the worker to charge in the database
/// ([`easel_store::Db::charge_fair_share`]) and in memory
/// ([`Scheduler::apply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The tier of the batch.
    pub tier: Tier,
    /// Images per user of the jobs that were claimed, the leader (the user
    /// of the first claimed job) first.
    pub per_user: Vec<(String, u32)>,
    /// Whether anything of the tier was left queued, by the candidates the
    /// plan was made from. Without a backlog the busy period is over.
    pub backlog: bool,
}

impl Charge {
    /// The charge for those of `plan`'s jobs that are in `claimed` (a job
    /// another worker took, or a cancel ended, costs nothing here: whoever
    /// claimed it charges it). `candidates` is what was queued when the plan
    /// was made: a candidate of the plan's tier that was not claimed is
    /// backlog.
    pub fn of(plan: &Plan, claimed: &[JobId], candidates: &[Candidate]) -> Charge {
        let mut per_user: Vec<(String, u32)> = Vec::new();
        for id in plan.jobs.iter().filter(|id| claimed.contains(id)) {
            let Some(job) = candidates.iter().find(|c| c.id == *id) else {
                continue;
            };
            match per_user.iter_mut().find(|(u, _)| *u == job.user) {
                Some((_, n)) => *n += job.images,
                None => per_user.push((job.user.clone(), job.images)),
            }
        }
        let backlog = candidates
            .iter()
            .any(|c| c.tier == plan.tier && !claimed.contains(&c.id));
        Charge {
            tier: plan.tier,
            per_user,
            backlog,
        }
    }
}

/// The scheduler: batch limits plus the fair-share counters it plans from.
#[derive(Debug, Clone)]
pub struct Scheduler {
    max_images: u32,
    window: Duration,
    shares: FairShares,
}

impl Scheduler {
    /// A scheduler that batches up to `max_images` images (at least 1) and
    /// lets a partial batch wait up to `window` for companions. Its
    /// counters start empty.
    pub fn new(max_images: u32, window: Duration) -> Self {
        Self {
            max_images: max_images.max(1),
            window,
            shares: FairShares::default(),
        }
    }

    /// Largest batch, in images.
    pub fn max_images(&self) -> u32 {
        self.max_images
    }

    /// Plans from these counters from now on: the worker loads them from
    /// the database ([`easel_store::Db::fair_shares`]) before each plan, so
    /// every worker orders users alike.
    pub fn set_shares(&mut self, shares: FairShares) {
        self.shares = shares;
    }

    /// The next batch among `candidates`, considering only those for which
    /// `runnable` holds (say, whose model is loaded). `None` when nothing
    /// can run.
    pub fn plan(
        &self,
        candidates: &[Candidate],
        runnable: impl Fn(&Candidate) -> bool,
    ) -> Option<Plan> {
        let ready: Vec<&Candidate> = candidates.iter().filter(|c| runnable(c)).collect();
        let tier = ready.iter().map(|c| c.tier).min_by_key(|t| tier_rank(*t))?;
        let share = self.shares.tier(tier);

        // Each user's jobs of this tier, oldest first.
        let mut by_user: HashMap<&str, Vec<&Candidate>> = HashMap::new();
        for c in ready.iter().filter(|c| c.tier == tier) {
            by_user.entry(c.user.as_str()).or_default().push(c);
        }
        for jobs in by_user.values_mut() {
            jobs.sort_by_key(|c| (c.queued_ms, c.id));
        }
        // Fair order: least served first, then the older head job.
        let mut users: Vec<&str> = by_user.keys().copied().collect();
        users.sort_by_key(|u| {
            let head = by_user[u][0];
            (share.effective(u), head.queued_ms, head.id)
        });

        let leader = by_user[users[0]][0];
        let key = leader.key.clone();
        let mut plan = Plan {
            tier,
            key: key.clone(),
            jobs: Vec::new(),
            images: 0,
            per_user: Vec::new(),
            leader_queued_ms: leader.queued_ms,
        };
        // Round-robin in fair order; the first job taken is the leader (the
        // first user's head job), which always runs, even alone over the
        // limit.
        let mut next: HashMap<&str, usize> = users.iter().map(|u| (*u, 0)).collect();
        loop {
            let mut added = false;
            for user in &users {
                let jobs = &by_user[user];
                let cursor = next.get_mut(user).expect("every user has a cursor");
                while *cursor < jobs.len() && jobs[*cursor].key != key {
                    *cursor += 1;
                }
                let Some(job) = jobs.get(*cursor) else {
                    continue;
                };
                if !plan.jobs.is_empty() && plan.images + job.images > self.max_images {
                    // This user's next job does not fit; stop with them.
                    *cursor = jobs.len();
                    continue;
                }
                *cursor += 1;
                plan.jobs.push(job.id);
                plan.images += job.images;
                match plan.per_user.iter_mut().find(|(u, _)| u.as_str() == *user) {
                    Some((_, n)) => *n += job.images,
                    None => plan.per_user.push((user.to_string(), job.images)),
                }
                added = true;
            }
            if !added || plan.images >= self.max_images {
                break;
            }
        }
        Some(plan)
    }

    /// How long to wait for companions before running a partial `plan`, as
    /// of `now_ms`. `None`: run it now (it is full, or its leader has
    /// already waited the whole window).
    pub fn wait_for_more(&self, plan: &Plan, now_ms: i64) -> Option<Duration> {
        if plan.images >= self.max_images || self.window.is_zero() {
            return None;
        }
        let window_ms = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        let deadline = plan.leader_queued_ms.saturating_add(window_ms);
        let left = deadline.saturating_sub(now_ms);
        (left > 0).then(|| Duration::from_millis(left as u64))
    }

    /// Records that all of `plan` was claimed: each of its users is
    /// charged its images and the tier's virtual time moves to the leader's
    /// counter. `candidates` is what was queued when the plan was made:
    /// when nothing of the plan's tier is left behind, the tier's busy
    /// period is over and its counters are forgotten, so they never
    /// outgrow the queue.
    pub fn charge(&mut self, plan: &Plan, candidates: &[Candidate]) {
        self.apply(&Charge::of(plan, &plan.jobs, candidates));
    }

    /// Applies `charge` to the counters in memory, as
    /// [`easel_store::Db::charge_fair_share`] does in the database.
    pub fn apply(&mut self, charge: &Charge) {
        self.shares
            .tier_mut(charge.tier)
            .charge(&charge.per_user, charge.backlog);
    }
}

fn tier_rank(tier: Tier) -> u8 {
    match tier {
        Tier::Realtime => 0,
        Tier::Batch => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_with_different_loras_never_share_a_batch() {
        let base = crate::testing::fake_params("16x16", 1);
        let with = |weight: f32| {
            let mut p = base.clone();
            p.loras = vec![easel_core::LoraRef {
                name: "grain".into(),
                weight,
                hash: Some("sha256:00".into()),
            }];
            p
        };
        assert_ne!(BatchKey::of(&base), BatchKey::of(&with(0.8)));
        assert_ne!(BatchKey::of(&with(0.5)), BatchKey::of(&with(0.8)));
        assert_eq!(BatchKey::of(&with(0.8)), BatchKey::of(&with(0.8)));
    }

    fn key(model: &str, steps: u32) -> BatchKey {
        BatchKey {
            model: model.into(),
            size: Size::new(32, 32).unwrap(),
            steps,
            guidance_bits: 5.0f32.to_bits(),
            sampler: None,
            schedule: ScheduleKind::Default,
            strength_bits: None,
            clip_skip: 1,
        }
    }

    struct Queue {
        jobs: Vec<Candidate>,
        clock: i64,
    }

    impl Queue {
        fn new() -> Self {
            Self {
                jobs: Vec::new(),
                clock: 1_000,
            }
        }

        fn push(&mut self, tier: Tier, user: &str, key: BatchKey, images: u32) -> JobId {
            self.clock += 1;
            let id = JobId::new();
            self.jobs.push(Candidate {
                id,
                tier,
                user: user.into(),
                key,
                images,
                queued_ms: self.clock,
            });
            id
        }

        /// Plans, charges and removes the batch, as the worker does.
        fn run(&mut self, s: &mut Scheduler) -> Option<Plan> {
            let plan = s.plan(&self.jobs, |_| true)?;
            s.charge(&plan, &self.jobs);
            self.jobs.retain(|c| !plan.jobs.contains(&c.id));
            Some(plan)
        }
    }

    #[test]
    fn an_empty_queue_plans_nothing() {
        let s = Scheduler::new(4, Duration::ZERO);
        assert_eq!(s.plan(&[], |_| true), None);
    }

    #[test]
    fn realtime_runs_before_older_batch_work() {
        let mut q = Queue::new();
        let mut s = Scheduler::new(4, Duration::ZERO);
        let old_batch = q.push(Tier::Batch, "a", key("m", 8), 1);
        let rt = q.push(Tier::Realtime, "b", key("m", 8), 1);
        let plan = q.run(&mut s).unwrap();
        assert_eq!(plan.tier, Tier::Realtime);
        assert_eq!(plan.jobs, vec![rt], "tiers never mix in a batch");
        assert_eq!(q.run(&mut s).unwrap().jobs, vec![old_batch]);
    }

    #[test]
    fn one_users_backlog_delays_another_user_by_at_most_one_batch() {
        let mut q = Queue::new();
        let mut s = Scheduler::new(4, Duration::ZERO);
        for _ in 0..1_000 {
            q.push(Tier::Batch, "heavy", key("m", 8), 1);
        }
        // A batch of the heavy user's runs; then the light user arrives.
        let first = q.run(&mut s).unwrap();
        assert_eq!(first.images, 4);
        let light = q.push(Tier::Batch, "light", key("m", 8), 1);
        let next = q.run(&mut s).unwrap();
        assert_eq!(next.jobs[0], light, "the light user leads the next batch");
        assert_eq!(next.images, 4, "the heavy user fills the rest");
    }

    #[test]
    fn a_realtime_job_overtakes_a_thousand_batch_jobs() {
        let mut q = Queue::new();
        let mut s = Scheduler::new(4, Duration::ZERO);
        for _ in 0..1_000 {
            q.push(Tier::Batch, "heavy", key("m", 8), 1);
        }
        q.run(&mut s).unwrap();
        let rt = q.push(Tier::Realtime, "light", key("m", 8), 1);
        assert_eq!(q.run(&mut s).unwrap().jobs, vec![rt]);
    }

    #[test]
    fn users_alternate_and_idling_builds_no_credit() {
        let mut q = Queue::new();
        let mut s = Scheduler::new(1, Duration::ZERO);
        for _ in 0..6 {
            q.push(Tier::Batch, "a", key("m", 8), 1);
        }
        // `a` runs alone for a while...
        for _ in 0..3 {
            q.run(&mut s).unwrap();
        }
        // ...then `b` arrives with a backlog of its own: the two alternate;
        // `b` does not get three turns in a row to "catch up".
        let mut order = Vec::new();
        for _ in 0..3 {
            q.push(Tier::Batch, "b", key("m", 8), 1);
        }
        let user_of: HashMap<JobId, String> =
            q.jobs.iter().map(|c| (c.id, c.user.clone())).collect();
        while let Some(plan) = q.run(&mut s) {
            order.push(user_of[&plan.jobs[0]].clone());
        }
        assert_eq!(order, ["b", "a", "b", "a", "b", "a"]);
    }

    #[test]
    fn batches_only_join_jobs_with_the_same_key() {
        let mut q = Queue::new();
        let mut s = Scheduler::new(8, Duration::ZERO);
        let a1 = q.push(Tier::Batch, "u", key("m", 8), 1);
        let other_steps = q.push(Tier::Batch, "u", key("m", 20), 1);
        let other_model = q.push(Tier::Batch, "v", key("n", 8), 1);
        let a2 = q.push(Tier::Batch, "v", key("m", 8), 2);
        let plan = q.run(&mut s).unwrap();
        assert_eq!(plan.jobs, vec![a1, a2]);
        assert_eq!(plan.images, 3);
        assert_eq!(plan.per_user, vec![("u".into(), 1), ("v".into(), 2)]);
        let rest: Vec<JobId> = q.jobs.iter().map(|c| c.id).collect();
        assert_eq!(rest, vec![other_steps, other_model]);
    }

    #[test]
    fn batches_fill_round_robin_and_respect_the_image_limit() {
        let mut q = Queue::new();
        let mut s = Scheduler::new(4, Duration::ZERO);
        let a: Vec<JobId> = (0..3)
            .map(|_| q.push(Tier::Batch, "a", key("m", 8), 1))
            .collect();
        let b: Vec<JobId> = (0..3)
            .map(|_| q.push(Tier::Batch, "b", key("m", 8), 1))
            .collect();
        let plan = q.run(&mut s).unwrap();
        assert_eq!(plan.jobs, vec![a[0], b[0], a[1], b[1]]);
        // A job of 3 images does not fit beside 2 more: it waits.
        let mut q = Queue::new();
        let small = q.push(Tier::Batch, "a", key("m", 8), 2);
        let big = q.push(Tier::Batch, "b", key("m", 8), 3);
        let plan = q.run(&mut s).unwrap();
        assert_eq!(plan.jobs, vec![small]);
        assert_eq!(q.run(&mut s).unwrap().jobs, vec![big]);
    }

    #[test]
    fn a_job_larger_than_a_batch_runs_alone() {
        let mut q = Queue::new();
        let mut s = Scheduler::new(4, Duration::ZERO);
        let big = q.push(Tier::Batch, "a", key("m", 8), 10);
        q.push(Tier::Batch, "a", key("m", 8), 1);
        let plan = q.run(&mut s).unwrap();
        assert_eq!(plan.jobs, vec![big]);
        assert_eq!(plan.images, 10);
    }

    #[test]
    fn jobs_that_cannot_run_are_passed_over() {
        let mut q = Queue::new();
        let s = Scheduler::new(4, Duration::ZERO);
        q.push(Tier::Realtime, "a", key("cold", 8), 1);
        let warm = q.push(Tier::Batch, "b", key("warm", 8), 1);
        let plan = s.plan(&q.jobs, |c| c.key.model == "warm").unwrap();
        assert_eq!(plan.jobs, vec![warm]);
        assert_eq!(s.plan(&q.jobs, |_| false), None);
    }

    #[test]
    fn a_partial_batch_waits_at_most_the_window_from_its_leaders_arrival() {
        let mut q = Queue::new();
        let s = Scheduler::new(4, Duration::from_millis(50));
        q.push(Tier::Batch, "a", key("m", 8), 1);
        let plan = s.plan(&q.jobs, |_| true).unwrap();
        let t0 = plan.leader_queued_ms;
        assert_eq!(
            s.wait_for_more(&plan, t0 + 10),
            Some(Duration::from_millis(40))
        );
        assert_eq!(s.wait_for_more(&plan, t0 + 50), None);
        // A full batch never waits; nor does anything with no window.
        for _ in 0..3 {
            q.push(Tier::Batch, "a", key("m", 8), 1);
        }
        let full = s.plan(&q.jobs, |_| true).unwrap();
        assert_eq!(s.wait_for_more(&full, t0), None);
        let no_window = Scheduler::new(4, Duration::ZERO);
        assert_eq!(no_window.wait_for_more(&plan, t0), None);
    }

    #[test]
    fn only_the_claimed_part_of_a_plan_is_charged() {
        let mut q = Queue::new();
        let s = Scheduler::new(4, Duration::ZERO);
        let a = q.push(Tier::Batch, "a", key("m", 8), 1);
        let b = q.push(Tier::Batch, "b", key("m", 8), 2);
        let c = q.push(Tier::Batch, "c", key("m", 8), 1);
        let plan = s.plan(&q.jobs, |_| true).unwrap();
        assert_eq!(plan.jobs, vec![a, b, c]);
        // Another worker took the leader's job: `b` leads what was claimed,
        // and the job it lost does not count as done here.
        let charge = Charge::of(&plan, &[b, c], &q.jobs);
        assert_eq!(charge.per_user, vec![("b".into(), 2), ("c".into(), 1)]);
        assert!(charge.backlog, "an unclaimed candidate is backlog");
        let all = Charge::of(&plan, &plan.jobs, &q.jobs);
        assert_eq!(all.per_user, plan.per_user);
        assert!(!all.backlog, "the plan took the whole queue");
    }

    #[test]
    fn idle_users_are_forgotten() {
        let mut q = Queue::new();
        let mut s = Scheduler::new(1, Duration::ZERO);
        for i in 0..100 {
            q.push(Tier::Batch, &format!("user{i}"), key("m", 8), 1);
        }
        while q.run(&mut s).is_some() {}
        // Counters live for one busy period: none is left once it ends.
        assert!(s.shares.batch.served.is_empty(), "{:?}", s.shares.batch);
    }
}
