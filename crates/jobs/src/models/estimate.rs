//! How much memory a model will take, before it is loaded.
//!
//! The engine computes in f32 whatever the stored dtype, copying every
//! tensor out of its memory map (see `easel_engine::loader::safetensors`), so
//! a loaded model holds 4 bytes per weight: an f16 checkpoint takes twice
//! its file size. The estimate reads only the safetensors headers (8 bytes
//! of length, then JSON naming each tensor's shape) of the files the engine
//! would load, and counts 4 bytes per element. Activations during a batch
//! come on top and are not counted. A file whose header cannot be read
//! counts with its size on disk (such a model fails to load anyway). Once a
//! model has loaded, the engine's measured `ModelInfo::weight_bytes`
//! replaces the estimate.

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Components whose weights the engine loads.
const COMPONENTS: &[&str] = &["text_encoder", "text_encoder_2", "unet", "vae"];

/// The largest safetensors header read (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 * 1024 * 1024;

/// Estimated bytes of a model folder's weights once loaded in f32.
pub fn estimate_bytes(dir: &Path) -> u64 {
    COMPONENTS
        .iter()
        .flat_map(|c| weight_files(&dir.join(c)))
        .map(|file| f32_bytes(&file).unwrap_or_else(|| disk_size(&file)))
        .sum()
}

/// The files the engine reads for a component: the canonical single file,
/// else every `*.safetensors` in the folder (its shards).
fn weight_files(dir: &Path) -> Vec<PathBuf> {
    for name in ["diffusion_pytorch_model.safetensors", "model.safetensors"] {
        let p = dir.join(name);
        if p.is_file() {
            return vec![p];
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    files
}

fn disk_size(file: &Path) -> u64 {
    std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)
}

/// 4 bytes per element of every tensor named in the header; `None` when the
/// header is unreadable.
fn f32_bytes(file: &Path) -> Option<u64> {
    let mut f = File::open(file).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER {
        return None;
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).ok()?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).ok()?;
    let mut elements: u64 = 0;
    for (name, tensor) in &header {
        if name == "__metadata__" {
            continue;
        }
        let shape = tensor.get("shape")?.as_array()?;
        let count = shape
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(d.as_u64()?))?;
        elements = elements.checked_add(count)?;
    }
    elements.checked_mul(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_safetensors(path: &Path, tensors: &[(&str, &str, &[u64])]) {
        let mut header = serde_json::Map::new();
        let mut offset = 0u64;
        for (name, dtype, shape) in tensors {
            let size = if *dtype == "F16" { 2 } else { 4 };
            let bytes = shape.iter().product::<u64>() * size;
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]}),
            );
            offset += bytes;
        }
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        let header = serde_json::to_vec(&header).unwrap();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&header);
        out.resize(out.len() + offset as usize, 0);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn f16_weights_count_at_f32_size() {
        let dir = tempfile::tempdir().unwrap();
        write_safetensors(
            &dir.path().join("unet/diffusion_pytorch_model.safetensors"),
            &[("a", "F16", &[10, 10]), ("b", "F32", &[5])],
        );
        write_safetensors(
            &dir.path().join("text_encoder/model.safetensors"),
            &[("c", "F16", &[3, 2])],
        );
        assert_eq!(estimate_bytes(dir.path()), (100 + 5 + 6) * 4);
    }

    #[test]
    fn shards_are_summed_and_unrelated_folders_ignored() {
        let dir = tempfile::tempdir().unwrap();
        write_safetensors(
            &dir.path().join("unet/part-1.safetensors"),
            &[("a", "F32", &[4])],
        );
        write_safetensors(
            &dir.path().join("unet/part-2.safetensors"),
            &[("b", "F32", &[6])],
        );
        write_safetensors(
            &dir.path().join("safety_checker/model.safetensors"),
            &[("x", "F32", &[1000])],
        );
        assert_eq!(estimate_bytes(dir.path()), 10 * 4);
    }

    #[test]
    fn an_unreadable_header_counts_its_size_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vae/diffusion_pytorch_model.safetensors");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, vec![0xffu8; 300]).unwrap();
        assert_eq!(estimate_bytes(dir.path()), 300);
        assert_eq!(estimate_bytes(&dir.path().join("missing")), 0);
    }
}
