//! Embeds the web UI: every file under `ui/` becomes an entry of
//! `$OUT_DIR/ui_assets.rs`, a table of `(path relative to ui/, bytes)`
//! read by `src/ui.rs`. Cargo reruns this when anything under `ui/`
//! changes.

use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
    println!("cargo:rerun-if-changed=ui");
    let mut files = Vec::new();
    if root.is_dir() {
        walk(&root, &mut files);
    }
    files.sort();
    let mut out = String::from("/// The web UI's files: path under `ui/`, contents.\n");
    out.push_str("pub static ASSETS: &[(&str, &[u8])] = &[\n");
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .expect("under ui/")
            .to_str()
            .expect("UI file names are UTF-8")
            .replace('\\', "/");
        out.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?})),\n",
            file.to_str().expect("UTF-8 path")
        ));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("ui_assets.rs");
    fs::write(dest, out).expect("writing ui_assets.rs");
}

/// Every file under `dir`, skipping hidden ones (editor droppings).
fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("reading ui/") {
        let path = entry.expect("reading ui/").path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        } else if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}
