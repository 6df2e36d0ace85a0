//! The 64-bit DCT perceptual hash of the bundled model's training-set index
//! (`models/easel-emoji/index/phash.json`) and the near-copy check.
//!
//! The algorithm is `tools/emoji/phash_index.py`'s, bit for bit (a golden
//! test compares the two on fixed images):
//! 1. the image as 32×32 RGB (other sizes are first area-resampled to 32×32);
//! 2. grey = (299·R + 587·G + 114·B) / 1000 in f64, unrounded;
//! 3. the unnormalised 2-D DCT-II D = C·grey·Cᵀ, C[k][n] = cos(π(2n+1)k / 64);
//! 4. the top-left 8×8 block in row-major order, DC included: v[i] = D[i/8][i%8];
//! 5. m = (s[31] + s[32]) / 2 of the sorted values;
//! 6. bit i = v[i] > m, with v[0] the most significant bit.
//!
//! Distance is the Hamming distance. Emoji are alike (many yellow faces): 10 %
//! of training images have a *different* training image within 4 bits and
//! the median nearest neighbour is 12 bits away, so [`NEAR_COPY_BITS`] is
//! kept low.

use std::path::Path;

use serde::Deserialize;

use super::image::resize_area;
use crate::error::Result;
use crate::loader::read_json;
use crate::request::RgbImage;

/// An image whose nearest training image is at most this many bits away is
/// flagged as a near-copy. 2 bits: 5 % of distinct training images are this
/// close to another one (the index's `stats`), so a larger threshold would
/// mostly flag the ordinary likeness of emoji faces rather than copying.
pub const NEAR_COPY_BITS: u32 = 2;

const N: usize = 32;

/// The 64-bit pHash of `img` (see the module docs).
pub fn phash(img: &RgbImage) -> u64 {
    let img = resize_area(img, N as u32);
    let mut grey = [[0f64; N]; N];
    for (i, px) in img.pixels.chunks_exact(3).enumerate() {
        let (r, g, b) = (px[0] as f64, px[1] as f64, px[2] as f64);
        grey[i / N][i % N] = (299.0 * r + 587.0 * g + 114.0 * b) / 1000.0;
    }
    // Only the first 8 rows of C are needed for the top-left 8×8 block.
    let mut c = [[0f64; N]; 8];
    for (k, row) in c.iter_mut().enumerate() {
        for (n, v) in row.iter_mut().enumerate() {
            *v = (std::f64::consts::PI * (2 * n + 1) as f64 * k as f64 / (2 * N) as f64).cos();
        }
    }
    // T = C·grey (8×32), then D = T·Cᵀ (8×8); summed in the same order as
    // numpy's matmul of the reference would not be guaranteed anyway, so the
    // golden test checks the hash bits, not the coefficients.
    let mut t = [[0f64; N]; 8];
    for k in 0..8 {
        for col in 0..N {
            t[k][col] = (0..N).map(|n| c[k][n] * grey[n][col]).sum();
        }
    }
    let mut v = [0f64; 64];
    for (i, vi) in v.iter_mut().enumerate() {
        let (k, l) = (i / 8, i % 8);
        *vi = (0..N).map(|n| t[k][n] * c[l][n]).sum();
    }
    let mut sorted = v;
    sorted.sort_by(f64::total_cmp);
    let m = (sorted[31] + sorted[32]) / 2.0;
    v.iter()
        .enumerate()
        .filter(|(_, x)| **x > m)
        .fold(0u64, |h, (i, _)| h | 1 << (63 - i))
}

/// Number of differing bits.
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

#[derive(Deserialize)]
struct IndexFile {
    entries: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    hash: String,
    caption: String,
}

/// One training image in the index.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// Its pHash.
    pub hash: u64,
    /// Its first caption (the Unicode name), e.g. "red apple".
    pub caption: String,
}

/// The nearest training image to a query.
#[derive(Debug, Clone)]
pub struct NearestMatch {
    /// Hamming distance in bits.
    pub distance: u32,
    /// Position in the index.
    pub index: usize,
    /// Whether `distance <= NEAR_COPY_BITS`.
    pub near_copy: bool,
}

/// The training-set index: every training image's pHash.
#[derive(Debug, Clone)]
pub struct PhashIndex {
    /// The entries, in file order.
    pub entries: Vec<IndexEntry>,
}

impl PhashIndex {
    /// Reads `index/phash.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let raw: IndexFile = read_json(path)?;
        let entries = raw
            .entries
            .into_iter()
            .map(|e| {
                let hash = u64::from_str_radix(&e.hash, 16).map_err(|err| {
                    crate::EngineError::InvalidConfig {
                        path: path.to_path_buf(),
                        detail: format!("hash `{}` of `{}`: {err}", e.hash, e.caption),
                    }
                })?;
                Ok(IndexEntry {
                    hash,
                    caption: e.caption,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { entries })
    }

    /// The training image nearest to `hash` (`None` for an empty index).
    pub fn nearest(&self, hash: u64) -> Option<NearestMatch> {
        let (index, distance) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, hamming(e.hash, hash)))
            .min_by_key(|&(_, d)| d)?;
        Some(NearestMatch {
            distance,
            index,
            near_copy: distance <= NEAR_COPY_BITS,
        })
    }
}
