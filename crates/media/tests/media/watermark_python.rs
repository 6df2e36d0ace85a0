//! easelmark against its independent Python reference
//! (`tools/watermark/robust/easelmark.py`, numpy and Pillow pinned in
//! `.ci/requirements.txt`): the reference reads what Easel marks, as PNG
//! and after a JPEG re-encode, and Easel reads what the reference marks.
//!
//! The interpreter is `EASEL_PYTHON` if set, else `python3` if it can
//! import numpy and PIL. Without one the test skips with a note, unless
//! `EASEL_REQUIRE_PYTHON=1` (CI), where that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use easel_core::{OutputFormat, RgbImage};
use easel_media::{Metadata, WatermarkMethod, WatermarkPayload, detect_watermark, embed_watermark};
use serde_json::Value;

const PAYLOAD: WatermarkPayload = WatermarkPayload {
    server: 0xE5E1,
    image: 0x1234_ABCD,
};

fn usable(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import numpy, PIL"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn find_python() -> Option<String> {
    let required = std::env::var("EASEL_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    let candidate = std::env::var("EASEL_PYTHON").unwrap_or_else(|_| "python3".into());
    if usable(&candidate) {
        return Some(candidate);
    }
    assert!(
        !required,
        "EASEL_REQUIRE_PYTHON=1 but {candidate} cannot import numpy and PIL"
    );
    eprintln!("skipping the easelmark Python cross-check: {candidate} lacks numpy or PIL");
    None
}

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/watermark/robust/easelmark.py")
}

fn source(name: &str) -> RgbImage {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/watermark")
        .join(format!("source_{name}.png"));
    let decoded = image::open(path).unwrap().to_rgb8();
    RgbImage {
        width: decoded.width(),
        height: decoded.height(),
        pixels: decoded.into_raw(),
    }
}

fn run(python: &str, args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new(python)
        .arg(reference())
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "easelmark.py failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_python_reference_and_easel_read_each_others_marks() {
    let Some(python) = find_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for name in ["emoji", "natural"] {
        let original = source(name);
        // Easel marks, the reference reads (PNG, then JPEG quality 85).
        let marked = embed_watermark(&original, PAYLOAD).unwrap();
        for (format, ext) in [(OutputFormat::Png, "png"), (OutputFormat::Jpeg, "jpg")] {
            let bytes = easel_media::encode(&marked, format, Some(85), &Metadata::none()).unwrap();
            let path = dir.path().join(format!("ours_{name}.{ext}"));
            std::fs::write(&path, bytes).unwrap();
            let read: Value =
                serde_json::from_str(run(&python, &["detect".as_ref(), path.as_os_str()]).trim())
                    .unwrap();
            assert_eq!(
                read["server"],
                u64::from(PAYLOAD.server),
                "{name}.{ext}: {read}"
            );
            assert_eq!(
                read["image"],
                u64::from(PAYLOAD.image),
                "{name}.{ext}: {read}"
            );
        }
        // The reference marks, Easel reads.
        let input = dir.path().join(format!("source_{name}.png"));
        let output = dir.path().join(format!("theirs_{name}.png"));
        let png =
            easel_media::encode(&original, OutputFormat::Png, None, &Metadata::none()).unwrap();
        std::fs::write(&input, png).unwrap();
        run(
            &python,
            &[
                "embed".as_ref(),
                input.as_os_str(),
                output.as_os_str(),
                "--server".as_ref(),
                format!("{:#x}", PAYLOAD.server).as_ref(),
                "--image".as_ref(),
                format!("{:#x}", PAYLOAD.image).as_ref(),
            ],
        );
        let theirs = image::open(&output).unwrap().to_rgb8();
        let theirs = RgbImage {
            width: theirs.width(),
            height: theirs.height(),
            pixels: theirs.into_raw(),
        };
        let reading = detect_watermark(&theirs).expect("Easel reads the reference's mark");
        assert_eq!(reading.payload, PAYLOAD, "{name}");
        assert_eq!(reading.method, WatermarkMethod::Easelmark, "{name}");
    }
}
