//! `easel projects`, `easel keys` and `easel usage` against the configured
//! database, as an operator bootstrapping a deployment runs them: no
//! server, the secret printed once and never again.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn easel(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_easel"))
        .current_dir(common::workspace())
        .args(args)
        .env("EASEL_DATA_DIR", data)
        .env_remove("EASEL_CONFIG")
        .output()
        .expect("easel runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_operator_makes_a_project_and_a_key_lists_it_without_its_secret_and_revokes_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(&easel(
        data,
        &["projects", "create", "acme", "--limits", r#"{"max_n": 2}"#],
    ));
    let listed = ok(&easel(data, &["projects", "list", "--json"]));
    let projects: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(projects[0]["id"], "acme");
    assert_eq!(projects[0]["limits"]["max_n"], 2);

    let created = ok(&easel(
        data,
        &[
            "keys",
            "create",
            "--project",
            "acme",
            "--scopes",
            "generate,read",
            "--name",
            "ci",
        ],
    ));
    let secret = created
        .split_whitespace()
        .find(|w| w.starts_with("easel_sk_"))
        .expect("the secret is printed")
        .to_string();
    let keys: serde_json::Value =
        serde_json::from_str(&ok(&easel(data, &["keys", "list", "--json"]))).unwrap();
    let key = &keys[0];
    assert_eq!(key["project"], "acme");
    assert_eq!(key["scopes"], serde_json::json!(["generate", "read"]));
    assert!(secret.starts_with(key["prefix"].as_str().unwrap()));
    let everything = ok(&easel(data, &["keys", "list"]));
    assert!(!everything.contains(&secret), "a listing shows no secret");
    assert!(everything.contains("active"));

    let id = key["id"].as_str().unwrap();
    ok(&easel(data, &["keys", "revoke", id]));
    assert!(ok(&easel(data, &["keys", "list"])).contains("revoked"));
    let usage: serde_json::Value =
        serde_json::from_str(&ok(&easel(data, &["usage", "--json", "--group-by", "day"]))).unwrap();
    assert_eq!(usage["group_by"], "day");
    assert_eq!(usage["data"], serde_json::json!([]));

    // Bad input names what is wrong and writes nothing.
    let missing = failed(&easel(data, &["keys", "create", "--project", "nope"]));
    assert!(
        missing.contains("project `nope` does not exist"),
        "{missing}"
    );
    let scope = failed(&easel(
        data,
        &["keys", "create", "--project", "acme", "--scopes", "owner"],
    ));
    assert!(scope.contains("unknown scope `owner`"), "{scope}");
    let limits = failed(&easel(
        data,
        &["projects", "create", "beta", "--limits", r#"{"max_n": 0}"#],
    ));
    assert!(limits.contains("limits.max_n"), "{limits}");
    let keys: serde_json::Value =
        serde_json::from_str(&ok(&easel(data, &["keys", "list", "--json"]))).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
}

/// Two `easel serve` processes on one database (the SQLite file of one
/// data folder, or the PostgreSQL server `EASEL_TEST_DATABASE_URL` names)
/// share a project's request rate exactly: its bucket lives in the
/// database. 50 requests at once, alternating between the processes,
/// against 10 per minute: 10 admitted, 40 refused with the headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_share_a_projects_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let database = std::env::var("EASEL_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .map(|server| {
            let name = format!("easel_test_cli_rate_{}", std::process::id());
            // `postgres://user@host:port/postgres`: the same server, another database.
            let root = server
                .rsplit_once('/')
                .map_or(server.as_str(), |(r, _)| r)
                .to_string();
            let admin = format!("{root}/postgres");
            let status = Command::new("psql")
                .args([admin.as_str(), "-qc", &format!("CREATE DATABASE {name}")])
                .status()
                .expect("psql runs");
            assert!(status.success());
            (admin, name.clone(), format!("{root}/{name}"))
        });
    let with_db = |mut c: Command| {
        if let Some((_, _, url)) = &database {
            c.env("EASEL_DATABASE__URL", url);
        }
        c
    };
    let run = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_easel"));
        c.current_dir(common::workspace())
            .args(args)
            .env("EASEL_DATA_DIR", data)
            .env_remove("EASEL_CONFIG");
        with_db(c).output().expect("easel runs")
    };
    ok(&run(&[
        "projects",
        "create",
        "shared",
        "--limits",
        r#"{"requests_per_minute": 10}"#,
    ]));
    let created = ok(&run(&[
        "keys",
        "create",
        "--project",
        "shared",
        "--scopes",
        "read",
    ]));
    let secret = created
        .split_whitespace()
        .find(|w| w.starts_with("easel_sk_"))
        .unwrap()
        .to_string();
    let ports = [common::free_port(), common::free_port()];
    let mut servers: Vec<common::Killed> = ports
        .iter()
        .map(|port| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_easel"));
            c.current_dir(common::workspace())
                .args(["serve", "--model"])
                .arg(common::tiny_model())
                .env("EASEL_DATA_DIR", data)
                .env("EASEL_SERVER__LISTEN", format!("127.0.0.1:{port}"))
                .env("EASEL_LOG", "warn")
                .stdout(std::process::Stdio::null());
            common::Killed(with_db(c).spawn().expect("easel serve starts"))
        })
        .collect();
    let client = reqwest::Client::new();
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    for (base, server) in bases.iter().zip(servers.iter_mut()) {
        common::wait_ready(&client, base, &mut server.0).await;
    }
    let sends: Vec<_> = (0..50)
        .map(|i| {
            let request = client
                .get(format!("{}/v1/models", bases[i % 2]))
                .bearer_auth(&secret);
            tokio::spawn(request.send())
        })
        .collect();
    let mut admitted = [0; 2];
    let mut refused = 0;
    for (i, send) in sends.into_iter().enumerate() {
        let r = send.await.unwrap().unwrap();
        assert_eq!(r.headers()["x-ratelimit-limit-requests"], "10");
        match r.status().as_u16() {
            200 => admitted[i % 2] += 1,
            429 => {
                assert!(r.headers().contains_key("retry-after"));
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        (admitted[0] + admitted[1], refused),
        (10, 40),
        "{admitted:?}"
    );
    drop(servers);
    if let Some((admin, name, _)) = database {
        let _ = Command::new("psql")
            .args([
                admin.as_str(),
                "-qc",
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ])
            .status();
    }
}
