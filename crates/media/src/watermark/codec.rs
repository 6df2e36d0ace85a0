//! The reference's `dwtDctSvd` layout and quantisation, on the U plane.
//!
//! Ported from `imwatermark/dwtDctSvd.py` of invisible-watermark 0.2.0
//! (<https://github.com/ShieldMnt/invisible-watermark/blob/0.2.0/imwatermark/dwtDctSvd.py>):
//! the image is cropped to multiples of 4 pixels, the U plane goes
//! through a one-level Haar DWT, the approximation band is cut into 4×4
//! blocks in row-major order, block `n` carries bit `n % 64`, and its
//! largest singular value `s` is quantised with step 36 so that
//! `s mod 36` sits at 9 (bit 0) or 27 (bit 1). Reading votes each block
//! by `s mod 36 > 18` and takes each bit's majority (a tie reads 1, as
//! the reference's `mean * 255 > 127` does).

use super::color::{shift_u, u_plane};
use super::payload::EMBEDDED_BITS;
use super::svd::{Block, largest_singular};

/// The quantisation step of the reference's U channel (`scales=[0,36,0]`).
pub(crate) const STEP: f64 = 36.0;

/// How far from its target a block's singular value may end up after
/// rounding to 8-bit pixels before embedding tries again; the decision
/// boundary is 9 away.
const TOLERANCE: f64 = 1.5;

/// Embedding passes: each re-measures the 8-bit result and corrects the
/// blocks that rounding or the RGB cube's edges left short of their target.
const PASSES: usize = 4;

/// The 4×4 approximation blocks of a `width` × `height` image. Each covers
/// 8×8 pixels; pixels right of or below the last whole block are never touched.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    width: usize,
    blocks_x: usize,
    blocks_y: usize,
}

impl Grid {
    pub(crate) fn new(width: u32, height: u32) -> Self {
        // The reference crops to `row//4*4`, halves with the DWT and then
        // takes whole 4-blocks: `(row//4*4/2)//4 == row//8`.
        Self {
            width: width as usize,
            blocks_x: width as usize / 8,
            blocks_y: height as usize / 8,
        }
    }

    pub(crate) fn blocks(&self) -> usize {
        self.blocks_x * self.blocks_y
    }

    /// The Haar approximation block `(by, bx)`: `cA = (a + b + c + d) / 2`
    /// over each 2×2 pixel square, as `pywt.dwt2(..., 'haar')` computes it.
    fn approximation(&self, u: &[f64], by: usize, bx: usize) -> Block {
        std::array::from_fn(|i| {
            std::array::from_fn(|j| {
                let (y, x) = (by * 8 + 2 * i, bx * 8 + 2 * j);
                let at = |dy: usize, dx: usize| u[(y + dy) * self.width + x + dx];
                (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 2.0
            })
        })
    }
}

/// The point of bit `bit`'s lattice `(k + 0.25 + 0.5·bit)·STEP` nearest to
/// `s`. The reference always takes the cell `s` is in (`k = s // STEP`),
/// which moves `s` by up to 27; the nearest point moves it by at most 18
/// and reads the same.
fn quantise(s: f64, bit: bool) -> f64 {
    let offset = if bit { 0.75 } else { 0.25 };
    let k = (s / STEP - offset).round();
    (k + offset) * STEP
}

/// A block's vote: `s mod STEP > STEP / 2`.
fn vote(s: f64) -> bool {
    s.rem_euclid(STEP) > STEP / 2.0
}

/// Writes `bits` into packed RGB `pixels` of a `width` × `height` image
/// (whose grid has at least [`EMBEDDED_BITS`] blocks).
pub(crate) fn embed(pixels: &mut [u8], width: u32, height: u32, bits: &[bool; EMBEDDED_BITS]) {
    let grid = Grid::new(width, height);
    let original = u_plane(pixels);
    let targets: Vec<f64> = (0..grid.blocks())
        .map(|n| {
            let block = grid.approximation(&original, n / grid.blocks_x, n % grid.blocks_x);
            quantise(largest_singular(&block).0, bits[n % EMBEDDED_BITS])
        })
        .collect();
    let mut current = original;
    for _pass in 0..PASSES {
        let mut changed = false;
        for (n, &target) in targets.iter().enumerate() {
            let (by, bx) = (n / grid.blocks_x, n % grid.blocks_x);
            let (s, u, v) = largest_singular(&grid.approximation(&current, by, bx));
            let delta = target - s;
            if delta.abs() <= TOLERANCE {
                continue;
            }
            changed = true;
            // cA gains delta·u·vᵀ; the inverse Haar spreads a change of
            // cA over its 2×2 pixels as half of it each.
            for i in 0..8 {
                for j in 0..8 {
                    let at = (by * 8 + i) * grid.width + bx * 8 + j;
                    let du = delta * u[i / 2] * v[j / 2] / 2.0;
                    let p = &mut pixels[at * 3..at * 3 + 3];
                    let moved = shift_u([f64::from(p[0]), f64::from(p[1]), f64::from(p[2])], du);
                    for c in 0..3 {
                        p[c] = moved[c].round() as u8;
                    }
                }
            }
        }
        if !changed {
            break;
        }
        current = u_plane(pixels);
    }
}

/// What the blocks of an image say.
pub(crate) struct Votes {
    /// The majority bit of each of the 64 positions.
    pub bits: [bool; EMBEDDED_BITS],
    /// The share of all blocks that agree with their position's majority.
    pub agreement: f32,
}

/// Reads the 64 bits of packed RGB `pixels`; `None` when the grid has
/// fewer than [`EMBEDDED_BITS`] blocks.
pub(crate) fn read(pixels: &[u8], width: u32, height: u32) -> Option<Votes> {
    let grid = Grid::new(width, height);
    if grid.blocks() < EMBEDDED_BITS {
        return None;
    }
    let u = u_plane(pixels);
    let mut ones = [0u32; EMBEDDED_BITS];
    let mut counts = [0u32; EMBEDDED_BITS];
    for n in 0..grid.blocks() {
        let block = grid.approximation(&u, n / grid.blocks_x, n % grid.blocks_x);
        let slot = n % EMBEDDED_BITS;
        counts[slot] += 1;
        ones[slot] += u32::from(vote(largest_singular(&block).0));
    }
    // The reference's `mean * 255 > 127`, in integers.
    let bits: [bool; EMBEDDED_BITS] = std::array::from_fn(|i| ones[i] * 255 > counts[i] * 127);
    let agreeing: u32 = (0..EMBEDDED_BITS)
        .map(|i| {
            if bits[i] {
                ones[i]
            } else {
                counts[i] - ones[i]
            }
        })
        .sum();
    Some(Votes {
        bits,
        agreement: agreeing as f32 / grid.blocks() as f32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantise_lands_on_the_bit_and_moves_at_most_half_a_step() {
        for i in 0..2000 {
            let s = 300.0 + i as f64 * 0.37;
            for bit in [false, true] {
                let q = quantise(s, bit);
                assert_eq!(vote(q), bit, "{s} {bit}");
                assert!((q - s).abs() <= STEP / 2.0 + 1e-9);
                // Nine away from the boundary either side.
                assert!((q.rem_euclid(STEP) - if bit { 27.0 } else { 9.0 }).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn grid_matches_the_reference_crop() {
        assert_eq!(Grid::new(256, 256).blocks(), 32 * 32);
        // 263 // 4 * 4 = 260; 130 // 4 = 32 blocks.
        assert_eq!(Grid::new(263, 100).blocks(), 32 * 12);
    }
}
