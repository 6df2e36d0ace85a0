//! Memory-mapped safetensors weights behind a candle `VarBuilder`.
//!
//! Every file is mapped and its header validated when it is opened, so a
//! truncated or malformed file fails with [`EngineError::CorruptWeights`]
//! before any model is built. Tensors are then served to candle's model
//! constructors through [`WeightStore::var_builder`]: each is checked for
//! dtype (f32, f16, bf16) and shape, copied out of the map and converted to
//! f32 on the target device. candle's own error for a bad tensor is an
//! untyped string, so the store remembers the first typed failure
//! ([`WeightStore::take_failure`]) and the loader reports that instead.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use safetensors::{Dtype, SafeTensors};

use crate::error::{EngineError, Result};

/// Where one tensor lives inside a mapped file.
struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// The mapped weight files of one model component.
pub(crate) struct WeightStore {
    paths: Vec<PathBuf>,
    maps: Vec<memmap2::Mmap>,
    index: HashMap<String, Entry>,
    failure: Mutex<Option<EngineError>>,
    loaded: AtomicU64,
}

impl WeightStore {
    /// Maps and validates `paths`. Fails on the first unreadable, truncated
    /// or malformed file.
    pub(crate) fn open(paths: &[PathBuf]) -> Result<Arc<Self>> {
        let mut maps = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for (file_idx, path) in paths.iter().enumerate() {
            let file = File::open(path).map_err(|e| io_error(path, e))?;
            // SAFETY: the map is read-only; a weights file modified while a
            // model loads is an operator error that at worst yields wrong
            // numbers, which the content hash would also not match.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io_error(path, e))?;
            let st = SafeTensors::deserialize(&map).map_err(|e| EngineError::CorruptWeights {
                path: path.clone(),
                detail: describe(&e),
            })?;
            let base = map.as_ptr() as usize;
            for (name, view) in st.tensors() {
                let data = view.data();
                let start = data.as_ptr() as usize - base;
                index.insert(
                    name,
                    Entry {
                        file: file_idx,
                        dtype: view.dtype(),
                        shape: view.shape().to_vec(),
                        start,
                        end: start + data.len(),
                    },
                );
            }
            maps.push(map);
        }
        Ok(Arc::new(Self {
            paths: paths.to_vec(),
            maps,
            index,
            failure: Mutex::new(None),
            loaded: AtomicU64::new(0),
        }))
    }

    /// A `VarBuilder` reading from this store, producing f32 tensors on `device`.
    pub(crate) fn var_builder(self: &Arc<Self>, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(Backend(self.clone())), DType::F32, device.clone())
    }

    /// The first typed failure met since the last call, if any.
    pub(crate) fn take_failure(&self) -> Option<EngineError> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }

    /// Turns a candle error from building a model on this store into the
    /// typed failure behind it, or a compute error when there was none.
    pub(crate) fn explain(&self, err: candle_core::Error) -> EngineError {
        self.take_failure()
            .unwrap_or_else(|| EngineError::Compute(err.to_string()))
    }

    /// Bytes of f32 tensors handed out so far (what the built model holds).
    pub(crate) fn loaded_bytes(&self) -> u64 {
        self.loaded.load(Ordering::Relaxed)
    }

    /// The path of the (first) weights file, for messages.
    fn display_path(&self) -> PathBuf {
        match self.paths.as_slice() {
            [one] => one.clone(),
            [first, ..] => first.parent().map(Path::to_path_buf).unwrap_or_default(),
            [] => PathBuf::new(),
        }
    }

    fn fail(&self, err: EngineError) -> candle_core::Error {
        let msg = err.to_string();
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(err);
        }
        candle_core::Error::Msg(msg)
    }

    fn load(
        &self,
        name: &str,
        expected: Option<&Shape>,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let Some(entry) = self.index.get(name) else {
            return Err(self.fail(EngineError::MissingTensor {
                path: self.display_path(),
                tensor: name.to_string(),
            }));
        };
        let path = &self.paths[entry.file];
        if let Some(expected) = expected
            && expected.dims() != entry.shape.as_slice()
        {
            return Err(self.fail(EngineError::ShapeMismatch {
                path: path.clone(),
                tensor: name.to_string(),
                expected: expected.dims().to_vec(),
                found: entry.shape.clone(),
            }));
        }
        let dtype = match entry.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => {
                return Err(self.fail(EngineError::UnsupportedDtype {
                    path: path.clone(),
                    tensor: name.to_string(),
                    dtype: format!("{other:?}").to_lowercase(),
                }));
            }
        };
        let bytes = &self.maps[entry.file][entry.start..entry.end];
        let t = Tensor::from_raw_buffer(bytes, dtype, &entry.shape, &Device::Cpu)?;
        // Compute is f32 everywhere: bf16 matmul is unsupported on candle's
        // CPU backend and f16 is slow there.
        let t = t.to_dtype(DType::F32)?.to_device(dev)?;
        self.loaded
            .fetch_add(4 * t.elem_count() as u64, Ordering::Relaxed);
        Ok(t)
    }
}

/// The candle backend: a cheap handle on the shared store.
struct Backend(Arc<WeightStore>);

impl candle_nn::var_builder::SimpleBackend for Backend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0.load(name, Some(&s), dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.load(name, None, dev)?.to_dtype(dtype)
    }

    /// True for a tensor name and for any prefix of tensor names, so that
    /// candle's BERT can detect a `bert.` prefix.
    fn contains_tensor(&self, name: &str) -> bool {
        if self.0.index.contains_key(name) {
            return true;
        }
        let prefix = format!("{name}.");
        self.0.index.keys().any(|k| k.starts_with(&prefix))
    }
}

fn io_error(path: &Path, source: std::io::Error) -> EngineError {
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
}

fn describe(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::MetadataIncompleteBuffer => {
            "the file is shorter or longer than its header says (truncated download?)".into()
        }
        E::HeaderTooSmall | E::InvalidHeaderLength => {
            "the file is too short to hold its header (truncated or not safetensors)".into()
        }
        other => format!("not a valid safetensors file: {other}"),
    }
}
