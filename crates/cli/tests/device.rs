//! `--device` on `easel generate` and `easel serve`: the same forms as the
//! config's `pool.device`, the flag winning over it, and a clear refusal of
//! CUDA in a build without GPU support.

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// `easel ARGS` in the workspace (no `easel.toml` there), with its data in
/// `dir` and `env` added.
fn easel(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(args)
        .current_dir(common::workspace())
        .env("EASEL_DATA_DIR", dir.join("data"))
        .env("EASEL_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// `easel generate` of one small image with the tiny model into
/// `dir/out.png`, plus `extra`.
fn generate(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let model = common::tiny_model();
    let output = dir.join("out.png");
    let base: &[&str] = &[
        "generate",
        "a red apple",
        "-o",
        output.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--size",
        "16x16",
        "--steps",
        "2",
        "--seed",
        "7",
    ];
    let args = [base, extra].concat();
    easel(&args, dir, env)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn generate_on_the_cpu_writes_the_image_and_the_flag_wins_over_the_config() {
    let dir = tempfile::tempdir().unwrap();
    // A config asking for a device this build may not have: the flag replaces it.
    let out = generate(
        dir.path(),
        &["--device", "cpu"],
        &[("EASEL_POOL__DEVICE", "cuda:3")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("out.png").exists());
}

#[test]
fn generate_refuses_a_device_that_is_not_one_naming_the_flag_and_the_forms() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["tpu", "cuda:x", "cuda:-1"] {
        let out = generate(dir.path(), &["--device", bad], &[]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("--device"), "{err}");
        assert!(err.contains(&format!("`{bad}` is not a device")), "{err}");
        assert!(err.contains("`cuda:N`"), "{err}");
    }
    assert!(!dir.path().join("out.png").exists());
}

#[test]
fn generate_on_cuda_in_a_build_without_gpu_support_says_how_to_rebuild() {
    if easel_engine::CUDA_BUILT {
        eprintln!("skipped: this build has GPU support");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = generate(dir.path(), &["--device", "cuda:0"], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("--device cuda:0"), "{err}");
    assert!(err.contains("no GPU support"), "{err}");
    assert!(err.contains("--features easel-engine/cuda"), "{err}");
    assert!(!dir.path().join("out.png").exists());

    // The same from the config, naming its key.
    let out = generate(dir.path(), &[], &[("EASEL_POOL__DEVICE", "cuda")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("pool.device = \"cuda\""), "{err}");
    assert!(err.contains("no GPU support"), "{err}");
}

#[test]
fn serve_takes_the_device_flag_into_pool_device() {
    let dir = tempfile::tempdir().unwrap();
    let out = easel(
        &["serve", "--device", "cuda:2", "--print-config"],
        dir.path(),
        &[],
    );
    if easel_engine::CUDA_BUILT {
        assert!(out.status.success(), "{}", stderr(&out));
        let config = String::from_utf8_lossy(&out.stdout);
        assert!(config.contains("device = \"cuda:2\""), "{config}");
    } else {
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("--device cuda:2"), "{err}");
        assert!(err.contains("no GPU support"), "{err}");
    }
    let out = easel(
        &["serve", "--device", "cpu", "--print-config"],
        dir.path(),
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let config = String::from_utf8_lossy(&out.stdout);
    assert!(config.contains("device = \"cpu\""), "{config}");
}
