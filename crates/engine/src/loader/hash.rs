//! The content hash that names a model version.
//!
//! A model's hash is `blake3:` followed by the BLAKE3 of a manifest listing,
//! for every weight file in path order, its path relative to the model folder
//! and the BLAKE3 of its bytes. Configs are not hashed: they change no
//! weights, and an edited scheduler default should not look like a new model.
//!
//! Hashing a multi-gigabyte checkpoint takes seconds, so per-file hashes are
//! cached in a JSON sidecar keyed by relative path, size and modification
//! time (nanoseconds); a file whose size or mtime changed is hashed again.
//! The cache is best effort: an unreadable or unwritable cache only costs
//! the hashing time, never a failed load.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// Name of the sidecar cache written into the model folder by default.
pub const SIDECAR_NAME: &str = ".easel-content-hash.json";

/// Where per-file hashes are cached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HashCache {
    /// `<model folder>/.easel-content-hash.json` (default).
    #[default]
    Sidecar,
    /// A file of the operator's choosing (e.g. when the model folder is read-only).
    File(PathBuf),
    /// No cache: hash every load.
    Off,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    files: BTreeMap<String, CacheEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CacheEntry {
    size: u64,
    mtime_ns: u128,
    blake3: String,
}

fn cache_path(root: &Path, cache: &HashCache) -> Option<PathBuf> {
    match cache {
        HashCache::Sidecar => Some(root.join(SIDECAR_NAME)),
        HashCache::File(p) => Some(p.clone()),
        HashCache::Off => None,
    }
}

fn read_cache(path: Option<&Path>) -> CacheFile {
    path.and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Size and modification time (nanoseconds) of a file, the cache's key.
fn stamp(path: &Path) -> std::io::Result<(u64, u128)> {
    let meta = std::fs::metadata(path)?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok((meta.len(), mtime_ns))
}

fn manifest_hash(manifest: &str) -> String {
    format!("blake3:{}", blake3::hash(manifest.as_bytes()).to_hex())
}

/// The content hash of `files` from the cache alone: `Some` when the cache
/// holds an entry of the current size and mtime for every file, `None`
/// when some file would have to be read (or the cache is off). Reads no
/// weights and writes nothing.
pub fn cached_content_hash(root: &Path, files: &[PathBuf], cache: &HashCache) -> Option<String> {
    let stored = read_cache(cache_path(root, cache).as_deref());
    let mut sorted: Vec<(String, &PathBuf)> =
        files.iter().map(|p| (relative_key(root, p), p)).collect();
    sorted.sort();
    let mut manifest = String::new();
    for (key, path) in sorted {
        let (size, mtime_ns) = stamp(path).ok()?;
        let entry = stored
            .files
            .get(&key)
            .filter(|e| e.size == size && e.mtime_ns == mtime_ns)?;
        manifest.push_str(&format!("{key}\0{}\n", entry.blake3));
    }
    Some(manifest_hash(&manifest))
}

/// Hashes the weight files `files` (absolute paths inside `root`), reading
/// only those whose cache entry is missing or stale, and updates the cache.
pub fn content_hash(root: &Path, files: &[PathBuf], cache: &HashCache) -> Result<String> {
    let cache_path = cache_path(root, cache);
    let mut stored = read_cache(cache_path.as_deref());
    let mut sorted: Vec<(String, &PathBuf)> =
        files.iter().map(|p| (relative_key(root, p), p)).collect();
    sorted.sort();
    let mut manifest = String::new();
    let mut changed = false;
    for (key, path) in sorted {
        let (size, mtime_ns) = stamp(path).map_err(|source| EngineError::Io {
            path: path.clone(),
            source,
        })?;
        let hit = stored
            .files
            .get(&key)
            .filter(|e| e.size == size && e.mtime_ns == mtime_ns)
            .map(|e| e.blake3.clone());
        let hex = match hit {
            Some(h) => h,
            None => {
                let h = hash_file(path)?;
                stored.files.insert(
                    key.clone(),
                    CacheEntry {
                        size,
                        mtime_ns,
                        blake3: h.clone(),
                    },
                );
                changed = true;
                h
            }
        };
        manifest.push_str(&format!("{key}\0{hex}\n"));
    }
    // Best effort (see module docs).
    if changed
        && let Some(p) = cache_path
        && let Ok(bytes) = serde_json::to_vec_pretty(&stored)
        && let Err(e) = std::fs::write(&p, bytes)
    {
        tracing::debug!(path = %p.display(), error = %e, "content hash cache not written");
    }
    Ok(manifest_hash(&manifest))
}

fn relative_key(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn hash_file(path: &Path) -> Result<String> {
    let io = |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_changes_with_content_and_the_cache_notices_edits() {
        let dir = std::env::temp_dir().join(format!("easel-hash-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("unet")).unwrap();
        let f = dir.join("unet/w.safetensors");
        std::fs::write(&f, b"one").unwrap();
        let files = vec![f.clone()];
        let a = content_hash(&dir, &files, &HashCache::Sidecar).unwrap();
        assert!(dir.join(SIDECAR_NAME).exists());
        assert_eq!(a, content_hash(&dir, &files, &HashCache::Sidecar).unwrap());
        std::fs::write(&f, b"two!").unwrap();
        let b = content_hash(&dir, &files, &HashCache::Sidecar).unwrap();
        assert_ne!(a, b);
        assert_eq!(b, content_hash(&dir, &files, &HashCache::Off).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_cached_hash_is_known_only_once_every_file_was_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.safetensors");
        std::fs::write(&f, b"one").unwrap();
        let files = vec![f.clone()];
        assert_eq!(
            cached_content_hash(dir.path(), &files, &HashCache::Sidecar),
            None
        );
        let full = content_hash(dir.path(), &files, &HashCache::Sidecar).unwrap();
        assert_eq!(
            cached_content_hash(dir.path(), &files, &HashCache::Sidecar),
            Some(full)
        );
        std::fs::write(&f, b"a different length").unwrap();
        assert_eq!(
            cached_content_hash(dir.path(), &files, &HashCache::Sidecar),
            None
        );
        assert_eq!(
            cached_content_hash(dir.path(), &files, &HashCache::Off),
            None
        );
    }
}
