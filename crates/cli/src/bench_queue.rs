//! `easel bench queue`: the PostgreSQL queue alone, with a no-op render.
//!
//! Two measurements on a scratch database (created on the server the URL
//! names, dropped afterwards):
//!
//! 1. **Throughput.** `--jobs` jobs are queued first; then `--loops` worker
//!    loops (1, 4 and 16 by default), each its own store handle as separate
//!    worker processes would have, take and finish them until the queue is
//!    empty, in two ways: the queue's own claim (the oldest unlocked job,
//!    `FOR UPDATE SKIP LOCKED`), and a worker's turn (read the fair-share
//!    candidates, claim the chosen one; when another loop took it first,
//!    the next one of the same snapshot, as a worker re-plans). Either way the claim is then finished as the worker does:
//!    record the object keys (fenced), complete (fenced, in one
//!    transaction). No rendering, no files. Jobs per second.
//! 2. **Enqueue-to-claim latency.** Loops wait idle; jobs are submitted at
//!    `--rate` per second for `--seconds`; a loop wakes on PostgreSQL's
//!    `NOTIFY` (what the relay does) and claims. The time from the insert
//!    returning to the claim returning, P50/P99/max; then the same with
//!    wake-ups off (the 1 s poll a worker falls back to), for comparison.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use easel_core::{GenerationParams, JobId, RawParams, Size, Tier};
use easel_store::{CHANNEL_QUEUED, Db, Fence, NewJob};
use hdrhistogram::Histogram;

/// Flags of `easel bench queue`.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// A PostgreSQL server (any database on it); the benchmark creates its
    /// own scratch database there and drops it afterwards.
    #[arg(long, env = "EASEL_DATABASE__URL", hide_env_values = true)]
    database: String,
    /// Concurrent worker loops, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 4, 16])]
    loops: Vec<usize>,
    /// Jobs per throughput run.
    #[arg(long, default_value_t = 2000)]
    jobs: usize,
    /// Jobs submitted per second in the latency run.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Length of each latency run, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Idle loops waiting in the latency run.
    #[arg(long, default_value_t = 4)]
    latency_loops: usize,
}

const LEASE: Duration = Duration::from_secs(60);

/// Runs `easel bench queue`.
pub fn run(args: QueueArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(bench(args))
}

async fn bench(args: QueueArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.database.starts_with("postgres://") || args.database.starts_with("postgresql://"),
        "--database must be a postgres:// URL (the queue benchmark measures PostgreSQL)"
    );
    let scratch = Scratch::create(&args.database).await?;
    let result = measure(&args, &scratch.url).await;
    scratch.drop_database().await;
    result
}

async fn measure(args: &QueueArgs, url: &str) -> anyhow::Result<()> {
    println!(
        "easel bench queue: PostgreSQL, no-op render, {} jobs per run",
        args.jobs
    );
    println!();
    println!("| claim | worker loops | jobs | seconds | jobs/s |");
    println!("|---|---|---|---|---|");
    for turn in [false, true] {
        for &loops in &args.loops {
            let (seconds, done) = throughput(url, loops.max(1), args.jobs, turn).await?;
            println!(
                "| {} | {loops} | {done} | {seconds:.2} | {:.0} |",
                if turn {
                    "worker turn (candidates)"
                } else {
                    "SKIP LOCKED"
                },
                done as f64 / seconds
            );
        }
    }
    println!();
    println!(
        "Enqueue to claim, {} idle loops, {} jobs/s for {} s:",
        args.latency_loops, args.rate, args.seconds
    );
    println!();
    println!("| wake-up | jobs | P50 ms | P99 ms | max ms |");
    println!("|---|---|---|---|---|");
    for notify in [true, false] {
        let h = latency(url, args, notify).await?;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            if notify {
                "LISTEN/NOTIFY"
            } else {
                "1 s poll only"
            },
            h.len(),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
        );
    }
    Ok(())
}

/// A job as the benchmark queues it: the smallest valid parameters.
fn job(user: &str) -> anyhow::Result<NewJob> {
    let params = GenerationParams::validate(
        RawParams {
            model: "bench".into(),
            prompt: "a queue benchmark".into(),
            ..Default::default()
        },
        Size::new(32, 32).context("size")?,
        1,
        1.0,
        || 0,
    )
    .map_err(|e| anyhow::anyhow!("benchmark parameters: {e}"))?;
    let mut job = NewJob::new(Tier::Batch, params);
    job.user_id = Some(user.into());
    Ok(job)
}

/// The pool of one benchmark loop.
fn loop_options() -> easel_store::DbOptions {
    easel_store::DbOptions {
        max_connections: 2,
        ..Default::default()
    }
}

/// Takes and finishes one job: the queue's oldest unlocked one, or (`turn`)
/// the way a worker's turn chooses it; `false` when none was queued.
async fn take_one(db: &Db, name: &str, turn: bool) -> anyhow::Result<bool> {
    let job = if turn {
        let candidates = db.queued_candidates(1).await?;
        if candidates.is_empty() {
            return Ok(false);
        }
        // Another loop may take the first choice first; as the worker does,
        // try the next ones of the same snapshot (up to 4 in all), then
        // look again.
        let mut claimed = None;
        for candidate in candidates.iter().take(4) {
            if let Some(job) = db.claim_jobs(&[candidate.id], name, LEASE).await?.pop() {
                claimed = Some(job);
                break;
            }
        }
        match claimed {
            Some(job) => job,
            None => return Ok(true),
        }
    } else {
        match db.claim_next_queued(name, LEASE).await? {
            Some(job) => job,
            None => return Ok(false),
        }
    };
    let fence = Fence::of(&job);
    db.stage_objects(fence, &[], LEASE).await?;
    db.complete_job_with_images(fence, Vec::new()).await?;
    Ok(true)
}

/// Queues `jobs` jobs, then drains them with `loops` loops, each on its own
/// store handle. Returns the seconds to drain and the jobs finished.
async fn throughput(
    url: &str,
    loops: usize,
    jobs: usize,
    turn: bool,
) -> anyhow::Result<(f64, usize)> {
    let producer = Db::connect(url).await?;
    for i in 0..jobs {
        // Eight users, so the fair-share candidates are a real window.
        producer
            .insert_job(job(&format!("user-{}", i % 8))?)
            .await?;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for l in 0..loops {
        // One query at a time per loop: two connections each, so that 16
        // loops stay well inside a default server's 100 connections.
        let db = Db::connect_with(url, loop_options()).await?;
        tasks.push(tokio::spawn(async move {
            let name = format!("bench-{l}");
            while take_one(&db, &name, turn).await? {}
            db.close().await;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let left = producer.queue_depth(None).await?;
    producer.close().await;
    anyhow::ensure!(left == 0, "{left} jobs were left queued");
    Ok((seconds, jobs))
}

/// Submits at `args.rate` per second while idle loops claim; returns the
/// enqueue-to-claim times in microseconds.
async fn latency(url: &str, args: &QueueArgs, notify: bool) -> anyhow::Result<Histogram<u64>> {
    let submitted: Arc<Mutex<HashMap<JobId, Instant>>> = Arc::default();
    let waits: Arc<Mutex<Histogram<u64>>> =
        Arc::new(Mutex::new(Histogram::new(3).context("histogram")?));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for l in 0..args.latency_loops.max(1) {
        let db = Db::connect_with(url, loop_options()).await?;
        let mut listener = if notify {
            db.listen(&[CHANNEL_QUEUED]).await?
        } else {
            None
        };
        let (submitted, waits, mut stop) = (submitted.clone(), waits.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let name = format!("latency-{l}");
            while !*stop.borrow() {
                // Take everything there is, then wait for a wake-up.
                while let Some(job) = db.claim_next_queued(&name, LEASE).await? {
                    let at = Instant::now();
                    if let Some(sent) = submitted.lock().expect("lock").remove(&job.id) {
                        let us = at.duration_since(sent).as_micros() as u64;
                        waits.lock().expect("lock").record(us.max(1))?;
                    }
                    db.complete_job_with_images(Fence::of(&job), Vec::new())
                        .await?;
                }
                let woken = async {
                    match listener.as_mut() {
                        Some(listener) => {
                            let _ = listener.recv().await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(1)).await,
                    }
                };
                tokio::select! {
                    () = woken => {}
                    _ = stop.changed() => {}
                }
            }
            db.close().await;
            anyhow::Ok(())
        }));
    }
    let producer = Db::connect(url).await?;
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut tick = tokio::time::interval(interval);
    let total = args.rate as u64 * args.seconds;
    for _ in 0..total {
        tick.tick().await;
        let new = job("latency")?;
        let id = new.id;
        // Stamped before the insert: the wait counts from the moment the
        // job could be claimed, the insert's own time included.
        submitted.lock().expect("lock").insert(id, Instant::now());
        producer.insert_job(new).await?;
    }
    // Let the last jobs be claimed (a poll takes up to a second).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !submitted.lock().expect("lock").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        // A loop busy claiming sees the stop at its next wait.
        let abort = task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    producer.close().await;
    let h = waits.lock().expect("lock").clone();
    Ok(h)
}

/// A database of the benchmark's own on the server `--database` names.
struct Scratch {
    admin: String,
    name: String,
    url: String,
}

impl Scratch {
    async fn create(server: &str) -> anyhow::Result<Scratch> {
        use sqlx::ConnectOptions as _;
        let options: sqlx::postgres::PgConnectOptions =
            server.parse().context("parsing --database")?;
        let name = format!("easel_bench_{}", std::process::id());
        let mut admin = options
            .clone()
            .connect()
            .await
            .context("connecting to --database")?;
        // The name is ours (digits and letters), not input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating the scratch database {name}"))?;
        let url = options.database(&name).to_url_lossy().to_string();
        Ok(Scratch {
            admin: server.to_string(),
            name,
            url,
        })
    }

    async fn drop_database(self) {
        use sqlx::ConnectOptions as _;
        let Ok(options) = self.admin.parse::<sqlx::postgres::PgConnectOptions>() else {
            return;
        };
        if let Ok(mut admin) = options.connect().await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
            {
                eprintln!(
                    "warning: could not drop the scratch database {}: {e}",
                    self.name
                );
            }
        }
    }
}
