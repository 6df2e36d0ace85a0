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
