//! The command-line surface: `--help` of every command and subcommand
//! against committed snapshots (`tests/snapshots/help/`), and the earlier
//! flag spellings, hidden from `--help`, still parsing.
//!
//! After an intended change to the flags, rewrite the snapshots with
//! `EASEL_UPDATE_SNAPSHOTS=1 cargo test -p easel-cli --test help` and
//! review the diff.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn snapshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/help")
}

/// `easel ARGS` with a clean environment and an 100-column "terminal":
/// help text wraps at `COLUMNS` when stdout is not a terminal, and an
/// `env` default (e.g. `EASEL_API_KEY`) set in the caller's shell would
/// otherwise show up in it.
fn easel(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("COLUMNS", "100")
        .output()
        .expect("easel runs")
}

/// `--help` of `easel PATH...`, with this checkout's location replaced so
/// that the snapshot is the same on every machine.
fn help(path: &[&str]) -> String {
    let mut args = path.to_vec();
    args.push("--help");
    let out = easel(&args, Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(out.status.success(), "easel {args:?} failed: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .replace(env!("CARGO_MANIFEST_DIR"), "$CARGO_MANIFEST_DIR")
}

/// The subcommands a help text lists under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("    "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn every_commands_help_matches_its_snapshot() {
    let update = std::env::var_os("EASEL_UPDATE_SNAPSHOTS").is_some();
    let mut pending: Vec<Vec<String>> = vec![vec![]];
    let mut seen = Vec::new();
    let mut mismatched = Vec::new();
    while let Some(path) = pending.pop() {
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&refs);
        for sub in subcommands(&text) {
            let mut next = path.clone();
            next.push(sub);
            pending.push(next);
        }
        let name = std::iter::once("easel")
            .chain(refs.iter().copied())
            .collect::<Vec<_>>()
            .join("-");
        let file = snapshots().join(format!("{name}.txt"));
        seen.push(file.clone());
        if update {
            std::fs::create_dir_all(snapshots()).unwrap();
            std::fs::write(&file, &text).unwrap();
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            mismatched.push(format!("{}:\n{text}", file.display()));
        }
    }
    assert!(seen.len() >= 12, "found only {} commands", seen.len());
    let stale: Vec<_> = std::fs::read_dir(snapshots())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !seen.contains(p))
        .collect();
    assert!(
        mismatched.is_empty() && (update || stale.is_empty()),
        "help differs from the snapshots (rerun with EASEL_UPDATE_SNAPSHOTS=1 if intended):\n{}\nno such command: {stale:?}",
        mismatched.join("\n")
    );
}

/// Runs `easel ARGS` and checks that clap accepted the line: the command
/// got as far as its own `--threads 0` refusal (exit 1), not a usage error
/// (exit 2).
fn parses(args: &[&str], expected_error: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = easel(args, dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "easel {args:?}: {stderr}");
    assert!(stderr.contains(expected_error), "easel {args:?}: {stderr}");
}

#[test]
fn the_earlier_spellings_still_parse() {
    let threads = "--threads must be at least 1";
    parses(
        &[
            "generate",
            "a cat",
            "-o",
            "x.png",
            "--guidance-scale",
            "3",
            "--threads",
            "0",
        ],
        threads,
    );
    parses(
        &["eval", "some/model", "--out", "report", "--threads", "0"],
        threads,
    );
    parses(
        &["bench", "engine", "some/model", "--threads", "0"],
        threads,
    );
    parses(
        &["bench", "serve", "--json", "r.json", "--threads", "0"],
        threads,
    );
    parses(
        &["loadtest", "--json", "r.json", "--concurrency", "0"],
        "--concurrency",
    );
}

#[test]
fn the_current_spellings_parse() {
    let threads = "--threads must be at least 1";
    parses(
        &[
            "generate",
            "a cat",
            "-o",
            "x.png",
            "--guidance",
            "3",
            "--threads",
            "0",
        ],
        threads,
    );
    parses(
        &[
            "eval",
            "--model",
            "some/model",
            "-o",
            "report",
            "--json",
            "--threads",
            "0",
        ],
        threads,
    );
    parses(
        &["bench", "engine", "--model", "some/model", "--threads", "0"],
        threads,
    );
    parses(
        &["bench", "serve", "--json", "-o", "r.json", "--threads", "0"],
        threads,
    );
    parses(
        &[
            "loadtest",
            "--json",
            "--output",
            "r.json",
            "--concurrency",
            "0",
        ],
        "--concurrency",
    );
}

#[test]
fn a_model_given_twice_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = easel(&["eval", "a", "--model", "b"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
