//! `easel generate --seed`: the API's range (0 to 4294967295, or -1 for a
//! random seed), parsed by the same parser, with the same message.
//!
//! Regression (issue 13): the flag took an unsigned 64-bit seed, so `-1`
//! was refused and seeds the API refuses were accepted.

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// `easel generate` of one small image with the tiny model into
/// `dir/out.png` with `--seed seed`.
fn generate_with_seed(dir: &Path, seed: &str) -> Output {
    let model = common::tiny_model();
    let output = dir.join("out.png");
    Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["generate", "a red apple", "-o"])
        .arg(&output)
        .arg("--model")
        .arg(&model)
        .args(["--size", "16x16", "--steps", "1", "--seed", seed])
        .current_dir(common::workspace())
        .env("EASEL_DATA_DIR", dir.join("data"))
        .env("EASEL_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn generate_takes_seed_minus_one_as_random_and_prints_the_seed_it_drew() {
    let dir = tempfile::tempdir().unwrap();
    let out = generate_with_seed(dir.path(), "-1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("out.png").exists());
    // "out.png (WxH, seed N, sampler ..., sha256 ...)"
    let seed: u64 = stdout
        .split("seed ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no seed in {stdout}"));
    assert!(seed <= u64::from(u32::MAX), "{stdout}");
}

#[test]
fn generate_refuses_a_seed_out_of_the_range_with_the_api_message() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["4294967296", "-2"] {
        let out = generate_with_seed(dir.path(), bad);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--seed"), "{err}");
        assert!(
            err.contains(&format!(
                "seed must be an integer from 0 to 4294967295 or -1 for a random seed, \
                 got `{bad}`"
            )),
            "{err}"
        );
    }
    assert!(!dir.path().join("out.png").exists());
}
