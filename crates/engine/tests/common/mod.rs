//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use easel_core::{SamplerKind, ScheduleKind, Size};
use easel_engine::candle_core::{DType, Device, Tensor};
use easel_engine::{HashCache, ImageRequest, LoadOptions, Model, RgbImage};

/// A fixture model folder.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

/// Load options that write nothing into the repository.
pub fn opts() -> LoadOptions {
    LoadOptions {
        hash_cache: HashCache::Off,
        ..Default::default()
    }
}

/// Loads a fixture model.
pub fn load(name: &str) -> Model {
    Model::load(&fixture(name), &opts()).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// The reference tensors recorded by tools/golden/make_models.py.
pub fn golden(name: &str) -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden")
        .join(format!("{name}.safetensors"));
    easel_engine::candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// The reference inputs recorded next to the tensors.
pub fn meta(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden")
        .join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A text-to-image request with the fixtures' defaults.
pub fn request(prompt: &str, seed: u64, side: u32, steps: u32) -> ImageRequest {
    ImageRequest {
        prompt: prompt.into(),
        negative_prompt: String::new(),
        size: Size {
            width: side,
            height: side,
        },
        steps,
        guidance_scale: 3.0,
        seed,
        sampler: Some(SamplerKind::Euler),
        schedule: ScheduleKind::Default,
        init_image: None,
        mask: None,
        clip_skip: None,
    }
}

/// The image-to-image init image (matches `gradient` in make_models.py).
pub fn gradient(side: u32) -> RgbImage {
    let mut pixels = Vec::new();
    for y in 0..side {
        for x in 0..side {
            pixels.extend([(x * 16).min(255) as u8, (y * 16).min(255) as u8, 200]);
        }
    }
    RgbImage {
        width: side,
        height: side,
        pixels,
    }
}

/// Copies a fixture model into a fresh temporary folder.
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(name), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Rewrites a safetensors file's JSON header with `edit`, keeping the data.
pub fn edit_safetensors_header(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut text = serde_json::to_vec(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

/// Edits a JSON config file in place.
pub fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// Largest absolute difference between two tensors of the same shape,
/// computed in float64 (each may be f32 or f64).
pub fn max_abs_diff_f64(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let f64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
    (f64(a) - f64(b))
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// A deterministic stream of values in [-1, 1) (a 64-bit LCG), so kernel
/// tests reproduce without a seed argument.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next value.
    pub fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// The next `n` values.
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}
