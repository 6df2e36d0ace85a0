//! Weights are read tensor by tensor from the file straight into f32
//! (issue 14, point 5). Every tensor must come out bit for bit as the old
//! path made it (the safetensors crate's view of the whole file, copied by
//! candle's `from_raw_buffer` and converted by `to_dtype(F32)`), for f32,
//! f16 and bf16 sources; a malformed header must still fail when the store
//! opens; and nothing of a weights file may stay mapped into the process.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::*;
use easel_engine::EngineError;
use easel_engine::candle_core::{DType, Device, Tensor};
use easel_engine::loader::WeightStore;
use safetensors::{Dtype, SafeTensors};

/// Every tensor of `path` the way the engine read it before issue 14:
/// the whole file in memory, each f32/f16/bf16 tensor copied and converted
/// to f32 by candle.
fn old_path(path: &Path) -> HashMap<String, Tensor> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .filter_map(|(name, view)| {
            let dtype = match view.dtype() {
                Dtype::F32 => DType::F32,
                Dtype::F16 => DType::F16,
                Dtype::BF16 => DType::BF16,
                _ => return None,
            };
            let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            Some((name, t))
        })
        .collect()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

/// Opens `files` as one store and checks every tensor against the old path;
/// returns how many tensors were compared.
fn assert_reads_as_before(files: &[PathBuf]) -> usize {
    let store = WeightStore::open(files).unwrap();
    let mut expected = HashMap::new();
    for f in files {
        expected.extend(old_path(f));
    }
    for name in store.tensor_names() {
        if !expected.contains_key(name) {
            // Stored in a dtype the engine does not compute in.
            let e = store.tensor(name).unwrap_err();
            assert!(matches!(e, EngineError::UnsupportedDtype { .. }), "{e}");
        }
    }
    for (name, want) in &expected {
        let got = store.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.dtype(), DType::F32, "{name}");
        assert_eq!(got.dims(), want.dims(), "{name}");
        assert!(bits(&got) == bits(want), "{name} differs from the old path");
    }
    expected.len()
}

fn component_files(model: &Path, component: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(model.join(component))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    files
}

fn bundled_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/easel-emoji")
}

#[test]
fn every_tensor_of_the_bundled_model_f16_reads_as_the_old_path_did() {
    let model = bundled_model();
    for component in ["unet", "text_encoder", "scorer"] {
        let n = assert_reads_as_before(&component_files(&model, component));
        assert!(n > 20, "{component}: only {n} tensors");
    }
}

#[test]
fn every_tensor_of_the_f32_fixtures_and_a_f16_encoder_reads_as_the_old_path_did() {
    for (model, component) in [
        ("tiny-sd1", "unet"),
        ("tiny-sd1", "vae"),
        ("tiny-sd1", "text_encoder"),
        ("tiny-sdxl", "text_encoder_2"),
        ("tiny-pixel", "text_encoder"),
    ] {
        let n = assert_reads_as_before(&component_files(&fixture(model), component));
        assert!(n > 20, "{model}/{component}: only {n} tensors");
    }
}

/// A safetensors file from `(name, dtype, shape, little-endian bytes)`,
/// written the way the format lays it out (header, then the data in order).
fn write_safetensors(path: &Path, tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for (name, dtype, shape, data) in tensors {
        header.insert(
            name.to_string(),
            serde_json::json!({
                "dtype": dtype, "shape": shape, "data_offsets": [offset, offset + data.len()]
            }),
        );
        offset += data.len();
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    for (_, _, _, data) in tensors {
        out.extend_from_slice(data);
    }
    std::fs::write(path, out).unwrap();
}

fn le16(values: impl IntoIterator<Item = u16>) -> Vec<u8> {
    values.into_iter().flat_map(u16::to_le_bytes).collect()
}

fn le32(values: impl IntoIterator<Item = u32>) -> Vec<u8> {
    values.into_iter().flat_map(u32::to_le_bytes).collect()
}

#[test]
fn every_f16_and_bf16_bit_pattern_and_f32_values_read_as_the_old_path_did() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Lcg(7);
    // Larger than the loader's 1 MiB chunk and its 4 MiB slice of f32, and
    // not a multiple of either, so chunk and slice edges fall inside the
    // tensor.
    let long = (3 << 19) + 7;
    let first = dir.path().join("a.safetensors");
    write_safetensors(
        &first,
        &[
            ("f16.all", "F16", vec![256, 256], le16(0..=u16::MAX)),
            ("bf16.all", "BF16", vec![65536], le16(0..=u16::MAX)),
            (
                "f16.long",
                "F16",
                vec![long],
                le16((0..long).map(|i| (i as u16).wrapping_mul(40503))),
            ),
            (
                "bf16.long",
                "BF16",
                vec![7, long / 7],
                le16((0..long / 7 * 7).map(|i| (i as u16).rotate_left(5))),
            ),
            ("f16.scalar", "F16", vec![], le16([0x3c00])),
            ("f16.empty", "F16", vec![0, 4], vec![]),
            ("unused.ids", "I64", vec![2], vec![0; 16]),
        ],
    );
    let second = dir.path().join("b.safetensors");
    let specials = [0.0f32, -0.0, 1e-45, -3.4e38, f32::INFINITY, f32::NAN];
    write_safetensors(
        &second,
        &[
            (
                "f32.values",
                "F32",
                vec![3, 1000],
                le32((0..3000).map(|_| rng.next().to_bits())),
            ),
            (
                "f32.specials",
                "F32",
                vec![specials.len()],
                le32(specials.map(f32::to_bits)),
            ),
            ("f32.empty", "F32", vec![0], vec![]),
            // More than the loader's 4 MiB slice of f32 (read on several
            // workers), and not a multiple of it.
            (
                "f32.long",
                "F32",
                vec![(1 << 20) + 13],
                le32((0..(1u32 << 20) + 13).map(|i| i.wrapping_mul(2_654_435_761) >> 2)),
            ),
        ],
    );
    let n = assert_reads_as_before(&[first, second]);
    assert_eq!(n, 10);
}

fn open_err(path: &Path) -> EngineError {
    match WeightStore::open(&[path.to_path_buf()]) {
        Ok(_) => panic!("{} opened but should not", path.display()),
        Err(e) => e,
    }
}

fn assert_corrupt(path: &Path, bytes: &[u8], says: &str) {
    std::fs::write(path, bytes).unwrap();
    let e = open_err(path);
    assert!(matches!(e, EngineError::CorruptWeights { .. }), "{e}");
    assert!(e.to_string().contains(says), "`{e}` does not say `{says}`");
}

#[test]
fn a_malformed_header_fails_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    write_safetensors(
        &path,
        &[
            ("w", "F32", vec![4], le32([1, 2, 3, 4])),
            ("b", "F32", vec![1], le32([5])),
        ],
    );
    let good = std::fs::read(&path).unwrap();
    assert!(WeightStore::open(std::slice::from_ref(&path)).is_ok());

    let mut longer = good.clone();
    longer.push(0);
    assert_corrupt(&path, &longer, "longer than its header says");
    assert_corrupt(&path, &good[..good.len() - 1], "truncated");
    assert_corrupt(&path, &good[..5], "too short");
    let mut past_end = good.clone();
    past_end[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
    assert_corrupt(&path, &past_end, "too short to hold its header");
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_corrupt(&path, &huge, "not a valid safetensors file");

    // A header whose byte ranges leave a gap, or do not match a shape.
    let bad_header = |edit: fn(&mut serde_json::Value)| {
        std::fs::write(&path, &good).unwrap();
        edit_safetensors_header(&path, edit);
        let e = open_err(&path);
        assert!(matches!(e, EngineError::CorruptWeights { .. }), "{e}");
    };
    bad_header(|h| h["w"]["data_offsets"] = serde_json::json!([4, 16]));
    bad_header(|h| h["w"]["shape"] = serde_json::json!([3]));
    bad_header(|h| h["w"]["dtype"] = "F64".into());
    bad_header(|h| h["w"] = serde_json::json!("not a tensor"));
}

#[test]
fn typed_failures_name_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    write_safetensors(&path, &[("ids", "I64", vec![1], vec![0; 8])]);
    let store = WeightStore::open(std::slice::from_ref(&path)).unwrap();
    match store.tensor("ids").unwrap_err() {
        EngineError::UnsupportedDtype { tensor, dtype, .. } => {
            assert_eq!((tensor.as_str(), dtype.as_str()), ("ids", "i64"));
        }
        e => panic!("expected an unsupported dtype, got {e}"),
    }
    match store.tensor("nope").unwrap_err() {
        EngineError::MissingTensor { tensor, .. } => assert_eq!(tensor, "nope"),
        e => panic!("expected a missing tensor, got {e}"),
    }
}

/// The cause of the old peak: pages of a mapped weights file stay resident
/// after the copy. The store reads with positioned reads and maps nothing.
#[cfg(target_os = "linux")]
#[test]
fn reading_every_tensor_leaves_no_weights_file_mapped() {
    let files = component_files(&fixture("tiny-sd1"), "unet");
    let store = WeightStore::open(&files).unwrap();
    let names: Vec<String> = store.tensor_names().map(str::to_string).collect();
    let tensors: Vec<Tensor> = names.iter().map(|n| store.tensor(n).unwrap()).collect();
    assert!(!tensors.is_empty());
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for f in &files {
        let f = f.canonicalize().unwrap();
        assert!(
            !maps.contains(f.to_str().unwrap()),
            "{} is mapped while its tensors are alive",
            f.display()
        );
    }
}

fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Peak RSS above the RSS at the start, and seconds, of `f` (Linux: the
/// peak is reset through /proc/self/clear_refs, as `easel bench` does).
fn peak_and_time<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let base = status_bytes("VmRSS");
    let start = std::time::Instant::now();
    let out = f();
    let secs = start.elapsed().as_secs_f64();
    let gib = (status_bytes("VmHWM") - base) as f64 / (1u64 << 30) as f64;
    (out, secs, gib)
}

/// Prints (asserts nothing about time) the peak memory and time of reading
/// a large weights file the old way (a map kept while every tensor is
/// copied out and converted, as the store did while a model was built) and
/// the new way, each in one component's worth of 64 MiB tensors. Size:
/// `EASEL_LOAD_MIB` (default 2048) of f32, and half that of f16. The page
/// cache is warm (the file was just written), so times are the copy's.
/// `cargo test --release -p easel-engine --test load_stream -- --ignored --nocapture`
#[cfg(target_os = "linux")]
#[test]
#[ignore = "writes gigabytes; run by hand to measure"]
fn measure_large_file_load() {
    let mib: usize = std::env::var("EASEL_LOAD_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    let dir =
        tempfile::tempdir_in(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")).unwrap();
    for (dtype, width) in [("F32", 4usize), ("F16", 2)] {
        let path = dir.path().join(format!("{dtype}.safetensors"));
        let per_tensor = 64usize << 20;
        let count = (mib << 20) * width / 4 / per_tensor;
        let names: Vec<String> = (0..count).map(|i| format!("t{i}")).collect();
        let data = vec![0x3cu8; per_tensor];
        let tensors: Vec<(&str, &str, Vec<usize>, Vec<u8>)> = names
            .iter()
            .map(|n| (n.as_str(), dtype, vec![per_tensor / width], data.clone()))
            .collect();
        write_safetensors(&path, &tensors);
        drop(tensors);
        let file_gib = std::fs::metadata(&path).unwrap().len() as f64 / (1u64 << 30) as f64;

        let (old, old_s, old_gib) = peak_and_time(|| {
            let file = std::fs::File::open(&path).unwrap();
            let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
            let st = SafeTensors::deserialize(&map).unwrap();
            let ts: Vec<Tensor> = names
                .iter()
                .map(|n| {
                    let v = st.tensor(n).unwrap();
                    let dt = if dtype == "F32" {
                        DType::F32
                    } else {
                        DType::F16
                    };
                    Tensor::from_raw_buffer(v.data(), dt, v.shape(), &Device::Cpu)
                        .unwrap()
                        .to_dtype(DType::F32)
                        .unwrap()
                })
                .collect();
            ts.len()
        });
        let (new, new_s, new_gib) = peak_and_time(|| {
            let store = WeightStore::open(std::slice::from_ref(&path)).unwrap();
            let ts: Vec<Tensor> = names.iter().map(|n| store.tensor(n).unwrap()).collect();
            ts.len()
        });
        assert_eq!(old, new);
        println!(
            "{dtype} file {file_gib:.2} GiB ({count} tensors): old map+copy {old_s:.2} s, \
             peak +{old_gib:.2} GiB; new read {new_s:.2} s, peak +{new_gib:.2} GiB"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
