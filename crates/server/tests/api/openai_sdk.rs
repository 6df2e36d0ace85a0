//! The official OpenAI Python SDK, unmodified, against the real server
//! (`tools/openai_sdk_check.py`).
//!
//! The interpreter is `EASEL_PYTHON` if set, else `python3` if it can
//! `import openai`. Without one the test skips,
//! unless `EASEL_REQUIRE_PYTHON=1` (CI), where a missing interpreter or SDK
//! is a failure.

use crate::helpers::{run_python_check, spawn_app};

#[tokio::test]
async fn the_official_openai_python_sdk_works_unmodified() {
    let app = spawn_app().await;
    run_python_check(&app, "openai_sdk_check.py", "openai").await;
}
