//! `easel bench queue` end to end on a real PostgreSQL server (the one
//! `EASEL_TEST_DATABASE_URL` names; skipped without it): it prints both
//! tables with every job accounted for, and drops its scratch database.

use std::process::Command;

#[test]
fn the_queue_benchmark_measures_and_cleans_up() {
    let Ok(server) = std::env::var("EASEL_TEST_DATABASE_URL") else {
        eprintln!("skipped: set EASEL_TEST_DATABASE_URL to a PostgreSQL server");
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["bench", "queue", "--database", &server])
        .args([
            "--jobs",
            "40",
            "--loops",
            "1,3",
            "--rate",
            "20",
            "--seconds",
            "1",
        ])
        .output()
        .expect("easel runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "| SKIP LOCKED | 1 | 40 |",
        "| SKIP LOCKED | 3 | 40 |",
        "| worker turn (candidates) | 1 | 40 |",
        "| worker turn (candidates) | 3 | 40 |",
        "| LISTEN/NOTIFY | 20 |",
        "| 1 s poll only | 20 |",
    ] {
        assert!(stdout.contains(row), "missing `{row}` in:\n{stdout}");
    }
    // The scratch database is gone.
    let psql = Command::new("psql")
        .args([
            &server,
            "-Atc",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'easel_bench_%'",
        ])
        .output();
    if let Ok(psql) = psql
        && psql.status.success()
    {
        assert_eq!(String::from_utf8_lossy(&psql.stdout).trim(), "0");
    }
}
