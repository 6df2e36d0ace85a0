//! The server's LoRA folder and the pool names of LoRA combinations.
//!
//! A [`LoraLibrary`] serves the `*.safetensors` files of one folder
//! (`[pool] lora_dir`), each named by its file stem. A file is opened
//! (parsed and hashed, [`LoraAdapter::open`]) on first use and kept,
//! keyed by its path, modification time and length, so a file replaced on
//! disk is opened again and a request names the content it will get.
//!
//! A job with LoRAs runs on its own pool entry: the base model's pool name
//! followed by `+lora:NAME*WEIGHT#HASH` per LoRA, in name order
//! ([`lora_slot_name`]). The name carries everything a loader needs, so
//! the entry can be made from it in any process (a worker sees only the
//! job's parameters), and jobs with different combinations never share a
//! batch (the scheduler groups by pool name). File stems that could not be
//! told apart in such a name (with `+`, `*`, `#`, `:`, `<` or `>`) are not
//! served.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use easel_core::{LoraRef, MAX_LORAS, ParamError, check_lora_weight};
use easel_engine::{EngineError, LoraAdapter};

/// What separates a base pool name from each LoRA of its combination.
const SEP: &str = "+lora:";

/// A LoRA file in the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraFile {
    /// Its file stem: the name requests use.
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size_bytes: u64,
}

/// Why a LoRA could not be handed out.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    /// No file of that name in the folder (or no folder).
    #[error("LoRA `{name}` does not exist; available: {available}")]
    NotFound {
        /// The requested name.
        name: String,
        /// The names served, comma separated (at most 20), or `none`.
        available: String,
    },
    /// The file is there but unusable.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl LoraError {
    /// Stable code: `lora_not_found` or the engine's (`lora_invalid`, …).
    pub fn code(&self) -> &'static str {
        match self {
            LoraError::NotFound { .. } => "lora_not_found",
            LoraError::Engine(e) => e.code(),
        }
    }
}

/// A file opened once, with what identifies its content on disk.
struct Cached {
    modified: Option<SystemTime>,
    len: u64,
    adapter: Arc<LoraAdapter>,
}

/// The LoRA folder of a server. Cheap to share (`Arc`).
#[derive(Default)]
pub struct LoraLibrary {
    dir: Option<PathBuf>,
    cache: Mutex<HashMap<PathBuf, Cached>>,
}

impl std::fmt::Debug for LoraLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoraLibrary")
            .field("dir", &self.dir)
            .finish()
    }
}

impl LoraLibrary {
    /// The LoRAs of `dir`; `None`: no LoRAs. A folder that does not exist
    /// serves none (until it is made).
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            cache: Mutex::default(),
        }
    }

    /// The folder, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The LoRA files of the folder, by name.
    pub fn list(&self) -> Vec<LoraFile> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let Ok(read) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut files: Vec<LoraFile> = read
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let path = e.path();
                if path.extension().and_then(|x| x.to_str()) != Some("safetensors") {
                    return None;
                }
                let name = path.file_stem()?.to_str()?.to_string();
                let meta = std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
                valid_name(&name).then_some(LoraFile {
                    name,
                    path,
                    size_bytes: meta.len(),
                })
            })
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        files
    }

    /// The adapter named `name`, opened (and hashed) on first use or when
    /// its file has changed since.
    pub fn open(&self, name: &str) -> Result<Arc<LoraAdapter>, LoraError> {
        let file = self
            .list()
            .into_iter()
            .find(|f| f.name == name)
            .ok_or_else(|| self.not_found(name))?;
        let meta = std::fs::metadata(&file.path).map_err(|_| self.not_found(name))?;
        let (modified, len) = (meta.modified().ok(), meta.len());
        {
            let cache = self.cache.lock().expect("LoRA cache lock poisoned");
            if let Some(c) = cache.get(&file.path)
                && c.modified == modified
                && c.len == len
                && modified.is_some()
            {
                return Ok(c.adapter.clone());
            }
        }
        let adapter = Arc::new(LoraAdapter::open(&file.path)?);
        self.cache.lock().expect("LoRA cache lock poisoned").insert(
            file.path,
            Cached {
                modified,
                len,
                adapter: adapter.clone(),
            },
        );
        Ok(adapter)
    }

    fn not_found(&self, name: &str) -> LoraError {
        let names: Vec<String> = self.list().into_iter().map(|f| f.name).collect();
        let available = match names.len() {
            0 => "none".to_string(),
            n if n > 20 => format!("{}, … ({n} in all; GET /v1/loras)", names[..20].join(", ")),
            _ => names.join(", "),
        };
        LoraError::NotFound {
            name: name.chars().take(80).collect(),
            available,
        }
    }

    /// A request's LoRAs (`(name, weight)` in the order given) checked and
    /// resolved: weights finite within ±[`easel_core::MAX_LORA_WEIGHT`], a name given
    /// twice summed (as A1111 applies both), weight-0 entries dropped (they
    /// change nothing), at most [`MAX_LORAS`], each name a file of the
    /// folder, hashed; sorted by name.
    pub fn resolve(&self, wanted: &[(String, f64)]) -> Result<Vec<LoraRef>, ParamError> {
        let mut sums: Vec<(String, f64)> = Vec::new();
        for (name, weight) in wanted {
            check_lora_weight(name, *weight)?;
            match sums.iter_mut().find(|(n, _)| n == name) {
                Some((_, w)) => *w += weight,
                None => sums.push((name.clone(), *weight)),
            }
        }
        if sums.len() > MAX_LORAS {
            return Err(ParamError::new(
                "loras",
                "too_many_loras",
                format!(
                    "at most {MAX_LORAS} LoRAs may be combined, got {}",
                    sums.len()
                ),
            ));
        }
        let mut refs = Vec::with_capacity(sums.len());
        for (name, weight) in sums {
            let weight = check_lora_weight(&name, weight)?;
            let adapter = self
                .open(&name)
                .map_err(|e| ParamError::new("loras", e.code(), e.to_string()))?;
            if weight == 0.0 {
                continue;
            }
            refs.push(LoraRef {
                name,
                weight,
                hash: Some(adapter.hash().to_string()),
            });
        }
        refs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(refs)
    }
}

/// Whether a file stem can be a LoRA's name (see the module docs).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.trim() == name && !name.contains(['+', '*', '#', ':', '<', '>'])
}

/// The pool name of `base` (a model's pool name) with `loras`; `base`
/// itself when there are none.
pub fn lora_slot_name(base: &str, loras: &[LoraRef]) -> String {
    let mut name = base.to_string();
    for r in loras {
        name.push_str(SEP);
        name.push_str(&format!(
            "{}*{}#{}",
            r.name,
            r.weight,
            r.hash.as_deref().unwrap_or("")
        ));
    }
    name
}

/// A pool name split into its base model's pool name and its LoRAs
/// (none for a plain model).
pub fn split_lora_slot(name: &str) -> (&str, Vec<LoraRef>) {
    let mut parts = name.split(SEP);
    let base = parts.next().unwrap_or(name);
    let loras = parts
        .filter_map(|part| {
            let (rest, hash) = part.rsplit_once('#')?;
            let (name, weight) = rest.rsplit_once('*')?;
            Some(LoraRef {
                name: name.to_string(),
                weight: weight.parse().ok()?,
                hash: (!hash.is_empty()).then(|| hash.to_string()),
            })
        })
        .collect();
    (base, loras)
}

/// Whether `name` is the pool name of a LoRA combination.
pub fn is_lora_slot(name: &str) -> bool {
    name.contains(SEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lora_slot_name_splits_back_into_its_parts() {
        let loras = vec![
            LoraRef {
                name: "film grain".into(),
                weight: 0.8,
                hash: Some("sha256:ab".into()),
            },
            LoraRef {
                name: "x".into(),
                weight: -1.25,
                hash: None,
            },
        ];
        let name = lora_slot_name("m@blake3:1", &loras);
        assert_eq!(
            name,
            "m@blake3:1+lora:film grain*0.8#sha256:ab+lora:x*-1.25#"
        );
        assert!(is_lora_slot(&name));
        assert_eq!(split_lora_slot(&name), ("m@blake3:1", loras));
        assert_eq!(split_lora_slot("m"), ("m", vec![]));
        assert_eq!(lora_slot_name("m", &[]), "m");
    }

    #[test]
    fn names_that_would_not_split_are_not_served() {
        for bad in ["", " a", "a+b", "a*b", "a#b", "a:b", "<a>"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_name("Film Grain (v2).1"));
    }

    #[test]
    fn without_a_folder_nothing_is_found() {
        let lib = LoraLibrary::new(None);
        assert!(lib.list().is_empty());
        let e = lib.resolve(&[("a".into(), 1.0)]).unwrap_err();
        assert_eq!(e.code, "lora_not_found");
        assert!(e.message.contains("available: none"), "{}", e.message);
        let e = lib.resolve(&[("a".into(), 9.0)]).unwrap_err();
        assert_eq!(e.code, "invalid_lora_weight");
        let many: Vec<(String, f64)> = (0..9).map(|i| (format!("l{i}"), 1.0)).collect();
        assert_eq!(lib.resolve(&many).unwrap_err().code, "too_many_loras");
    }
}
