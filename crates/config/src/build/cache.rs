//! Models the post-processing and the prompt policy load (MiniLM,
//! open_nsfw, quality scorers), loaded once per process and path and shared,
//! so that setups built again in one process (the tests) do not pay for
//! them again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use easel_engine::score::Scorer;
use easel_policy::image::NsfwClassifier;
use easel_policy::prompt::MiniLmEmbedder;

/// One loaded value per path, for the life of the process.
pub(crate) fn cached<T: ?Sized + Send + Sync + 'static>(
    cache: &'static OnceLock<Mutex<HashMap<PathBuf, Arc<T>>>>,
    path: &Path,
    load: impl FnOnce(&Path) -> anyhow::Result<Arc<T>>,
) -> anyhow::Result<Arc<T>> {
    let map = cache.get_or_init(|| Mutex::new(HashMap::new()));
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if let Some(found) = map.lock().expect("model cache poisoned").get(&key) {
        return Ok(found.clone());
    }
    let loaded = load(path)?;
    map.lock()
        .expect("model cache poisoned")
        .insert(key, loaded.clone());
    Ok(loaded)
}

pub(crate) static EMBEDDERS: OnceLock<Mutex<HashMap<PathBuf, Arc<MiniLmEmbedder>>>> =
    OnceLock::new();
pub(crate) static CLASSIFIERS: OnceLock<Mutex<HashMap<PathBuf, Arc<NsfwClassifier>>>> =
    OnceLock::new();
pub(crate) static SCORERS: OnceLock<Mutex<HashMap<PathBuf, Arc<dyn Scorer>>>> = OnceLock::new();
