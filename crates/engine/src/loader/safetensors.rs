//! Safetensors weights, validated at open and read tensor by tensor into
//! f32, behind a candle `VarBuilder`.
//!
//! Every file's header is read and validated when it is opened (its offsets,
//! sizes and dtypes, and that the file holds exactly the bytes it names), so
//! a truncated or malformed file fails with [`EngineError::CorruptWeights`]
//! before any model is built. Tensors are then served to candle's model
//! constructors through [`WeightStore::var_builder`]: each is checked for
//! dtype (f32, f16, bf16) and shape, and read from the file straight into
//! the f32 buffer the tensor then owns. candle's own error for a bad tensor
//! is an untyped string, so the store remembers the first typed failure
//! ([`WeightStore::take_failure`]) and the loader reports that instead.
//!
//! # Why positioned reads, not a memory map
//!
//! The store used to map each file and copy every tensor out of the map.
//! The pages a copy touches stay mapped into the process, and a file-backed
//! page counts in the resident set like any other, so the peak at load was
//! the file *and* its f32 copy (6.89 GiB for SD 1.5's 4.3 GB of f32
//! weights), and every page came in through a page fault. Here a tensor is
//! read with positioned reads (`pread`) straight into its final buffer: an
//! f32 tensor in one read of its bytes into the `Vec<f32>` that becomes the
//! tensor (one copy, from the page cache, which is not the process's
//! memory); an f16 or bf16 tensor in chunks of [`CHUNK_BYTES`] through one
//! small scratch buffer, each chunk widened into its place in the f32
//! buffer ([`widen`]). So the peak is the weights once, in the compute
//! dtype, plus one chunk, and the time is the kernel's copy out of the page
//! cache, or the disk when the file is cold (the kernel's readahead sees
//! each tensor's reads as sequential). Dropping each tensor's pages from a
//! map after the copy (`madvise`) would bound the memory as well, but still
//! pays a fault per page and needs `unsafe` to map; a read also cannot
//! fault with `SIGBUS` when the file shrinks while it loads, it fails with
//! an error. Tensors are read one after another, a large one in slices on
//! rayon's workers (the copy and the page faults of the new buffer scale
//! with the cores): a warm file copies at memory speed and a cold one at
//! the disk's.
//!
//! # LoRA overlay
//!
//! A store may carry an `Overlay` (see [`super::lora`]): the low-rank
//! updates of the LoRAs the model is loaded with, keyed by the tensor they
//! patch. A patched tensor is read as above and its updates are added to
//! its buffer in place before it becomes a tensor, so the merged model
//! holds the weights once, like the base model, and the peak grows only by
//! one update (the size of that tensor) at a time. A store without an overlay reads exactly as before.
//!
//! The content hash is not computed here: [`super::hash`] reads the files
//! once and caches the result, as before.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use half::slice::HalfFloatSliceExt as _;
use half::{bf16, f16};
use rayon::prelude::*;
use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensorError};

use super::lora::Overlay;
use crate::error::{EngineError, Result};

// Safetensors stores little-endian numbers and tensors are read straight
// into native memory.
const _: () = assert!(
    cfg!(target_endian = "little"),
    "the weight loader reads little-endian safetensors into native memory"
);

/// The largest header accepted (the safetensors crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// Bytes of an f16 or bf16 tensor read per step before widening: large
/// enough that each read is one cheap system call, small enough to stay in
/// cache and to leave the peak at the f32 weights.
const CHUNK_BYTES: usize = 1 << 20;

/// f32 bytes of a tensor slice that one worker reads (see [`read_f32`]).
const PARALLEL_BYTES: usize = 4 << 20;

/// Where one tensor lives inside a weights file.
struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute offset of the first byte in the file.
    start: u64,
}

impl Entry {
    fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The weight files of one model component, opened and validated, from
/// which tensors are read one at a time as f32.
pub struct WeightStore {
    paths: Vec<PathBuf>,
    files: Vec<File>,
    index: HashMap<String, Entry>,
    /// The files' free-form `__metadata__` entries, merged.
    metadata: HashMap<String, String>,
    /// LoRA updates added to tensors as they are read (empty: none).
    overlay: Overlay,
    failure: Mutex<Option<EngineError>>,
    loaded: AtomicU64,
}

impl WeightStore {
    /// Opens `paths` and validates their headers. Fails on the first
    /// unreadable file ([`EngineError::MissingFile`], [`EngineError::Io`])
    /// or truncated or malformed one ([`EngineError::CorruptWeights`]).
    /// Reads no tensor data.
    pub fn open(paths: &[PathBuf]) -> Result<Arc<Self>> {
        Self::open_with_overlay(paths, Overlay::default())
    }

    /// [`Self::open`] with LoRA updates to add to the tensors they patch
    /// as they are read (planned against this component's tensor names by
    /// `LoraPlan::new`).
    pub(crate) fn open_with_overlay(paths: &[PathBuf], overlay: Overlay) -> Result<Arc<Self>> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        let mut metadata = HashMap::new();
        for (file_idx, path) in paths.iter().enumerate() {
            let mut file = File::open(path).map_err(|e| io_error(path, e))?;
            let (data_start, header) =
                read_header(&mut file).map_err(|e| EngineError::CorruptWeights {
                    path: path.clone(),
                    detail: e,
                })?;
            if let Some(meta) = header.metadata() {
                metadata.extend(meta.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            for (name, info) in header.tensors() {
                index.insert(
                    name,
                    Entry {
                        file: file_idx,
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        start: data_start + info.data_offsets.0 as u64,
                    },
                );
            }
            files.push(file);
        }
        Ok(Arc::new(Self {
            paths: paths.to_vec(),
            files,
            index,
            metadata,
            overlay,
            failure: Mutex::new(None),
            loaded: AtomicU64::new(0),
        }))
    }

    /// The names of every tensor in the files, in no particular order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// The stored shape of tensor `name`, if the files hold it.
    pub(crate) fn shape(&self, name: &str) -> Option<&[usize]> {
        self.index.get(name).map(|e| e.shape.as_slice())
    }

    /// The files' `__metadata__` entry `key`, if any.
    pub(crate) fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// Reads one tensor as f32 on the CPU, whatever its stored dtype.
    /// Fails with [`EngineError::MissingTensor`] or
    /// [`EngineError::UnsupportedDtype`], or [`EngineError::Io`] when the
    /// file cannot be read.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        self.read(name, None)
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

    /// Reads `name` as an f32 CPU tensor, checking its shape against
    /// `expected` when given.
    fn read(&self, name: &str, expected: Option<&Shape>) -> Result<Tensor> {
        let Some(entry) = self.index.get(name) else {
            return Err(EngineError::MissingTensor {
                path: self.display_path(),
                tensor: name.to_string(),
            });
        };
        let path = &self.paths[entry.file];
        if let Some(expected) = expected
            && expected.dims() != entry.shape.as_slice()
        {
            return Err(EngineError::ShapeMismatch {
                path: path.clone(),
                tensor: name.to_string(),
                expected: expected.dims().to_vec(),
                found: entry.shape.clone(),
            });
        }
        if !matches!(entry.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(EngineError::UnsupportedDtype {
                path: path.clone(),
                tensor: name.to_string(),
                dtype: format!("{:?}", entry.dtype).to_lowercase(),
            });
        }
        let mut data = read_f32(&self.files[entry.file], entry).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                EngineError::CorruptWeights {
                    path: path.clone(),
                    detail: format!(
                        "tensor `{name}` ends past the end of the file (did it change while \
                         loading?)"
                    ),
                }
            } else {
                io_error(path, e)
            }
        })?;
        if let Some(patches) = self.overlay.patches(name) {
            super::lora::merge::apply(&mut data, patches)?;
        }
        Tensor::from_vec(data, entry.shape.as_slice(), &Device::Cpu)
            .map_err(|e| EngineError::Compute(e.to_string()))
    }

    /// [`Self::read`] for candle: typed failures remembered, the tensor moved
    /// to `dev` and counted.
    fn load(
        &self,
        name: &str,
        expected: Option<&Shape>,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.read(name, expected).map_err(|e| self.fail(e))?;
        // Compute is f32 everywhere: bf16 matmul is unsupported on candle's
        // CPU backend and f16 is slow there. On the CPU this is no copy.
        let t = t.to_device(dev)?;
        self.loaded
            .fetch_add(4 * t.elem_count() as u64, Ordering::Relaxed);
        Ok(t)
    }
}

/// Reads and validates a safetensors header (8 bytes of little-endian
/// length, then JSON), leaving the data unread. Returns the offset of the
/// data in the file and the parsed header, or why the file is not valid.
fn read_header(file: &mut File) -> std::result::Result<(u64, Metadata), String> {
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut prefix = [0u8; 8];
    if file_len < 8 {
        return Err(describe(&SafeTensorError::HeaderTooSmall));
    }
    file.read_exact(&mut prefix).map_err(|e| e.to_string())?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > MAX_HEADER {
        return Err(describe(&SafeTensorError::HeaderTooLarge));
    }
    if 8 + header_len > file_len {
        return Err(describe(&SafeTensorError::InvalidHeaderLength));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    // The header's deserialisation checks that the tensors' byte ranges
    // tile the data and that each range is the size its dtype and shape
    // make (the safetensors crate's own validation).
    let metadata: Metadata = serde_json::from_slice(&header)
        .map_err(|e| describe(&SafeTensorError::InvalidHeaderDeserialization(e)))?;
    let data_start = 8 + header_len;
    if data_start + metadata.data_len() as u64 != file_len {
        return Err(describe(&SafeTensorError::MetadataIncompleteBuffer));
    }
    Ok((data_start, metadata))
}

/// Reads one validated tensor's bytes from `file` into a new f32 buffer.
///
/// A tensor of more than [`PARALLEL_BYTES`] is read in slices of that many
/// f32 bytes on rayon's workers: the copy out of the page cache and the
/// first touch of the new buffer's pages are the load's cost, and both
/// scale with the cores (SD 1.5's UNet is mostly tensors of 6–59 MB).
fn read_f32(file: &File, entry: &Entry) -> std::io::Result<Vec<f32>> {
    let count = entry.elem_count();
    // On huge pages where the kernel grants them (`crate::alloc`).
    let mut out = crate::alloc::zeroed_f32(count);
    let per_slice = PARALLEL_BYTES / 4;
    let elem = (entry.dtype.bitsize() / 8) as u64;
    let read_slice = |(i, dst): (usize, &mut [f32])| -> std::io::Result<()> {
        let start = entry.start + (i * per_slice) as u64 * elem;
        match entry.dtype {
            Dtype::F32 => read_exact_at(file, bytes_mut(dst), start),
            Dtype::F16 => read_widened::<f16>(file, start, dst),
            Dtype::BF16 => read_widened::<bf16>(file, start, dst),
            other => unreachable!("dtype {other:?} is rejected before reading"),
        }
    };
    if count <= per_slice {
        read_slice((0, &mut out))?;
    } else {
        out.par_chunks_mut(per_slice)
            .enumerate()
            .try_for_each(read_slice)?;
    }
    Ok(out)
}

/// Reads `out.len()` elements of a 16-bit float type from `file` at
/// `start`, chunk by chunk through one scratch buffer, widening each chunk
/// into its place in `out`.
fn read_widened<T: Half>(file: &File, start: u64, out: &mut [f32]) -> std::io::Result<()> {
    let per_chunk = CHUNK_BYTES / std::mem::size_of::<T>();
    let mut scratch = vec![T::default(); per_chunk.min(out.len())];
    let mut offset = start;
    for dst in out.chunks_mut(per_chunk) {
        let src = &mut scratch[..dst.len()];
        read_exact_at(file, bytes_mut(src), offset)?;
        widen(src, dst);
        offset += std::mem::size_of_val(src) as u64;
    }
    Ok(())
}

/// The one conversion from a stored dtype to the compute dtype (f32):
/// exact, and bit for bit what candle's `to_dtype(F32)` gives (both are the
/// `half` crate's conversion, F16C instructions where the CPU has them).
fn widen<T: Half>(src: &[T], dst: &mut [f32]) {
    T::to_f32_slice(src, dst);
}

/// The 16-bit float types a tensor may be stored in.
trait Half: Plain + Default {
    /// `half`'s vectorised conversion of a slice.
    fn to_f32_slice(src: &[Self], dst: &mut [f32]);
}

impl Half for f16 {
    fn to_f32_slice(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
}

impl Half for bf16 {
    fn to_f32_slice(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
}

mod plain {
    /// Number types with no padding for which every bit pattern is a value.
    pub(super) trait Plain: Copy {}
    impl Plain for f32 {}
    impl Plain for half::f16 {}
    impl Plain for half::bf16 {}
}
use plain::Plain;

/// The bytes of a slice of numbers, to read a file into.
fn bytes_mut<T: Plain>(v: &mut [T]) -> &mut [u8] {
    // SAFETY: `Plain` (sealed) is implemented only for f32, f16 and bf16:
    // no padding, no invalid bit patterns, so any bytes written through the
    // view leave valid numbers. The view covers exactly the slice's memory
    // (`size_of_val`), u8 has alignment 1, and it borrows `v` mutably for
    // its whole life, so nothing else aliases it.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// Fills `buf` from `file` at `offset` without moving a shared cursor, so
/// reads need only `&File`.
#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Fills `buf` from `file` at `offset` (Windows also moves the file's
/// cursor, which no read relies on: each names its own offset).
#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt as _;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

fn describe(e: &SafeTensorError) -> String {
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
