//! Reading a diffusers model folder: `model_index.json`, component configs,
//! and which safetensors files hold each component's weights.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::{EngineError, Result};

/// Reads and parses a JSON config, with typed errors for a missing or
/// malformed file.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            EngineError::MissingFile {
                path: path.to_path_buf(),
            }
        } else {
            EngineError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| EngineError::InvalidConfig {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// A diffusers model folder and its `model_index.json`.
pub(crate) struct ModelFolder {
    /// The folder.
    pub root: PathBuf,
    /// The parsed `model_index.json`.
    pub index: serde_json::Value,
}

impl ModelFolder {
    /// Opens a folder; fails if it or its `model_index.json` is missing.
    pub(crate) fn open(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(EngineError::MissingFile {
                path: root.to_path_buf(),
            });
        }
        let index = read_json(&root.join("model_index.json"))?;
        Ok(Self {
            root: root.to_path_buf(),
            index,
        })
    }

    /// Whether the folder has a component: listed in `model_index.json` with
    /// a non-null class, or present as a sub-folder.
    pub(crate) fn has_component(&self, name: &str) -> bool {
        match self.index.get(name) {
            Some(serde_json::Value::Array(a)) => a.iter().all(|v| !v.is_null()),
            Some(serde_json::Value::Null) => false,
            Some(_) => true,
            None => self.root.join(name).is_dir(),
        }
    }

    /// Path of a file inside a component folder.
    pub(crate) fn file(&self, component: &str, name: &str) -> PathBuf {
        self.root.join(component).join(name)
    }

    /// The safetensors files of a component: the canonical single file
    /// (`diffusion_pytorch_model.safetensors` or `model.safetensors`), else
    /// the shards named by a `*.safetensors.index.json`, else every
    /// `*.safetensors` file in the folder. PyTorch `.bin` files are not read
    /// (they are pickles that can run code).
    pub(crate) fn weight_files(&self, component: &str) -> Result<Vec<PathBuf>> {
        let dir = self.root.join(component);
        for name in ["diffusion_pytorch_model.safetensors", "model.safetensors"] {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(vec![p]);
            }
        }
        let canonical = if component.starts_with("text_encoder") {
            "model.safetensors"
        } else {
            "diffusion_pytorch_model.safetensors"
        };
        let missing = || EngineError::MissingFile {
            path: dir.join(canonical),
        };
        let entries = std::fs::read_dir(&dir).map_err(|_| missing())?;
        let mut shards = Vec::new();
        let mut index_file = None;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".safetensors.index.json") {
                index_file = Some(entry.path());
            } else if name.ends_with(".safetensors") {
                shards.push(entry.path());
            }
        }
        if let Some(index_file) = index_file {
            let index: serde_json::Value = read_json(&index_file)?;
            let mut files: Vec<PathBuf> = index
                .get("weight_map")
                .and_then(|m| m.as_object())
                .map(|m| {
                    m.values()
                        .filter_map(|v| v.as_str())
                        .map(|f| dir.join(f))
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            files.dedup();
            for f in &files {
                if !f.is_file() {
                    return Err(EngineError::MissingFile { path: f.clone() });
                }
            }
            if !files.is_empty() {
                return Ok(files);
            }
        }
        shards.sort();
        if shards.is_empty() {
            return Err(missing());
        }
        Ok(shards)
    }
}
