//! The periodic tile: a 16×16 grid of cells of 4×4 canonical pixels
//! (period [`P`] = 64), 129 cells carrying a fixed sync pattern and 127
//! carrying the code bits, smoothed by [1, 2, 1]/4 so the mark lives in
//! the low and middle frequencies codecs keep; at scale 1 the cells sit on
//! the image's 4-pixel grid (the transform blocks of WebP, 2×2 groups of
//! JPEG's).

use std::sync::OnceLock;

use super::bch::{self, N};
use super::keys::{permutation, prng_bits};

/// Cells per tile side.
pub(crate) const T: usize = 16;
/// Canonical pixels per cell side.
pub(crate) const CELL: usize = 4;
/// The tile's period in canonical pixels.
pub(crate) const P: usize = T * CELL;
/// Sync cells.
pub(crate) const N_SYNC: usize = T * T - N;

/// The key-derived layout, computed once.
pub(crate) struct Layout {
    /// Cell index (row·16 + column) of sync chip k.
    pub sync_cells: Vec<usize>,
    /// Cell index of code bit i.
    pub data_cells: Vec<usize>,
    /// The sync chips, ±1.
    pub sync_chips: Vec<f64>,
    /// XORed into the code bits.
    pub whiten: [bool; N],
    /// The tile with the sync chips only (data cells 0), not normalised.
    pub sync_tile: Vec<f64>,
    /// The cell footprint box(CELL) ∗ SMOOTH = [1, 3, 4, 4, 3, 1]/4:
    /// cell 0 covers canonical rows −1 … 4.
    pub foot: Vec<f64>,
}

/// SMOOTH = [1, 2, 1] / 4, centred (tap k at offset k − [`SMOOTH_C`]).
pub(crate) fn smooth() -> Vec<f64> {
    vec![0.25, 0.5, 0.25]
}

/// The centre index of [`smooth`].
pub(crate) const SMOOTH_C: usize = 1;

/// Full linear convolution.
pub(crate) fn convolve(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; a.len() + b.len() - 1];
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            out[i + j] += x * y;
        }
    }
    out
}

/// The layout every embed and detect uses.
pub(crate) fn layout() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let perm = permutation("cells", T * T);
        let sync_cells = perm[..N_SYNC].to_vec();
        let data_cells = perm[N_SYNC..].to_vec();
        let sync_chips: Vec<f64> = prng_bits("sync", N_SYNC)
            .into_iter()
            .map(|b| if b { -1.0 } else { 1.0 })
            .collect();
        let bits = prng_bits("whiten", N);
        let whiten = std::array::from_fn(|i| bits[i]);
        let mut cells = vec![0.0; T * T];
        for (&c, &chip) in sync_cells.iter().zip(&sync_chips) {
            cells[c] = chip;
        }
        let sync_tile = cells_to_tile(&cells);
        let foot = convolve(&[1.0; CELL], &smooth());
        Layout {
            sync_cells,
            data_cells,
            sync_chips,
            whiten,
            sync_tile,
            foot,
        }
    })
}

/// The P×P tile of a 16×16 grid of cell values: each cell enlarged to
/// 4×4 pixels, then smoothed circularly by SMOOTH along both axes
/// (`out[y] = Σ_k SMOOTH[k]·in[y + 1 − k]`), rows first.
pub(crate) fn cells_to_tile(cells: &[f64]) -> Vec<f64> {
    let mut tile = vec![0.0; P * P];
    for y in 0..P {
        for x in 0..P {
            tile[y * P + x] = cells[(y / CELL) * T + x / CELL];
        }
    }
    let k = smooth();
    let half = SMOOTH_C;
    let mut rows = vec![0.0; P * P];
    for y in 0..P {
        for x in 0..P {
            rows[y * P + x] = k
                .iter()
                .enumerate()
                .map(|(j, w)| w * tile[((y + P + half - j) % P) * P + x])
                .sum();
        }
    }
    for y in 0..P {
        for x in 0..P {
            tile[y * P + x] = k
                .iter()
                .enumerate()
                .map(|(j, w)| w * rows[y * P + (x + P + half - j) % P])
                .sum();
        }
    }
    tile
}

/// The unit-RMS tile carrying `message` (the 64 bits of payload and CRC).
pub(crate) fn message_tile(message: u64) -> Vec<f64> {
    let layout = layout();
    let code = bch::encode(message);
    let mut cells = vec![0.0; T * T];
    for (&c, &chip) in layout.sync_cells.iter().zip(&layout.sync_chips) {
        cells[c] = chip;
    }
    for (i, &c) in layout.data_cells.iter().enumerate() {
        cells[c] = if code[i] ^ layout.whiten[i] {
            -1.0
        } else {
            1.0
        };
    }
    let mut tile = cells_to_tile(&cells);
    let rms = (tile.iter().map(|v| v * v).sum::<f64>() / tile.len() as f64).sqrt();
    for v in &mut tile {
        *v /= rms;
    }
    tile
}
