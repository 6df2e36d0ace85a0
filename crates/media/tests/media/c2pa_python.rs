//! The C2PA reference SDK's Python binding (c2pa-python, pinned in
//! `.ci/requirements.txt`) validates what Easel signs:
//! `tools/c2pa/verify.py` on signed PNG, JPEG and WebP files and on a
//! tampered one.
//!
//! The interpreter is `EASEL_PYTHON` if set, else `python3` if it can
//! `import c2pa`. Without one the test skips with a note, unless
//! `EASEL_REQUIRE_PYTHON=1` (CI), where that is a failure.

use std::path::Path;
use std::process::Command;

use easel_core::OutputFormat;
use serde_json::Value;

use crate::c2pa::{TRAINED, claim, encoded, generated_signer, tamper};

fn has_c2pa(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import c2pa"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn find_python() -> Result<String, String> {
    if let Ok(python) = std::env::var("EASEL_PYTHON") {
        return if has_c2pa(&python) {
            Ok(python)
        } else {
            Err(format!("EASEL_PYTHON={python} cannot `import c2pa`"))
        };
    }
    if has_c2pa("python3") {
        return Ok("python3".into());
    }
    Err("no python with the `c2pa-python` package (set EASEL_PYTHON)".into())
}

/// One verdict per file, from `verify.py [--trust-anchor ca] files...`.
fn verify(python: &str, anchor: Option<&Path>, files: &[&Path]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/c2pa/verify.py");
    let mut command = Command::new(python);
    command.arg(script);
    if let Some(anchor) = anchor {
        command.arg("--trust-anchor").arg(anchor);
    }
    let output = command.args(files).output().expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "verify.py failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprint!("{stdout}");
    let verdicts: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(verdicts.len(), files.len(), "{stdout}");
    verdicts
}

#[test]
fn the_c2pa_reference_sdk_validates_signed_images_and_rejects_a_tampered_one() {
    let required = std::env::var("EASEL_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    let python = match find_python() {
        Ok(p) => p,
        Err(why) if required => panic!("EASEL_REQUIRE_PYTHON=1 but {why}"),
        Err(why) => {
            eprintln!("skipping the c2pa-python check: {why}");
            return;
        }
    };
    let (credentials, signer) = generated_signer();
    let out = tempfile::tempdir().unwrap();
    let mut signed_files = Vec::new();
    for (format, name) in [
        (OutputFormat::Png, "signed.png"),
        (OutputFormat::Jpeg, "signed.jpg"),
        (OutputFormat::Webp, "signed.webp"),
    ] {
        let signed = signer.sign(&encoded(format), format, &claim()).unwrap();
        let path = out.path().join(name);
        std::fs::write(&path, &signed).unwrap();
        signed_files.push(path);
        if format == OutputFormat::Png {
            std::fs::write(out.path().join("tampered.png"), tamper(&signed, format)).unwrap();
        }
    }
    let tampered = out.path().join("tampered.png");
    let mut files: Vec<&Path> = signed_files.iter().map(|p| p.as_path()).collect();
    files.push(&tampered);

    let ca = credentials.path().join("ca.pem");
    let verdicts = verify(&python, Some(&ca), &files);
    for verdict in &verdicts[..3] {
        assert_eq!(verdict["verdict"], "valid", "{verdict}");
        assert_eq!(verdict["validation_state"], "Trusted", "{verdict}");
        assert_eq!(verdict["actions"][0], "c2pa.created", "{verdict}");
        assert_eq!(verdict["digital_source_type"], TRAINED, "{verdict}");
        assert_eq!(
            verdict["soft_bindings"],
            serde_json::json!([{"alg": "org.easel.easelmark.1", "value": "e5e11234abcd"}]),
            "{verdict}"
        );
        assert_eq!(verdict["claim_generator"], "Easel 0.1.0", "{verdict}");
    }
    let rejected = &verdicts[3];
    assert_ne!(rejected["verdict"], "valid", "{rejected}");
    assert!(
        rejected["failures"]
            .as_array()
            .is_some_and(|f| f.iter().any(|c| c == "assertion.dataHash.mismatch")),
        "{rejected}"
    );

    // Without the CA the same files are intact but not trusted.
    for verdict in verify(&python, None, &files[..3]) {
        assert_eq!(verdict["validation_state"], "Valid", "{verdict}");
    }
}
