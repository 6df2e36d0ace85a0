//! The official OpenAI Python SDK, unmodified, against the real server
//! (`tools/openai_sdk_check.py`).
//!
//! The interpreter is `EASEL_PYTHON` if set, else `python3` if it can
//! `import openai`. Without one the test skips,
//! unless `EASEL_REQUIRE_PYTHON=1` (CI), where a missing interpreter or SDK
//! is a failure.

use std::path::Path;
use std::process::Command;

use crate::helpers::{MODEL, spawn_app};

fn has_openai(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn find_python() -> Result<String, String> {
    if let Ok(python) = std::env::var("EASEL_PYTHON") {
        return if has_openai(&python) {
            Ok(python)
        } else {
            Err(format!("EASEL_PYTHON={python} cannot `import openai`"))
        };
    }
    if has_openai("python3") {
        return Ok("python3".into());
    }
    Err("no python with the `openai` package (set EASEL_PYTHON)".into())
}

#[tokio::test]
async fn the_official_openai_python_sdk_works_unmodified() {
    let required = std::env::var("EASEL_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    let python = match find_python() {
        Ok(p) => p,
        Err(why) if required => panic!("EASEL_REQUIRE_PYTHON=1 but {why}"),
        Err(why) => {
            eprintln!("skipping the OpenAI SDK check: {why}");
            return;
        }
    };
    let app = spawn_app().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/openai_sdk_check.py");
    let base = app.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(base)
            .arg(MODEL)
            .output()
    })
    .await
    .unwrap()
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK check failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
