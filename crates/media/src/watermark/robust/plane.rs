//! A plane of f64 samples and the few filters the mark needs: luma, the
//! edge-replicated box mean, SSIM's Gaussian (padded and valid), and the
//! central window. The filters run a row at a time so their loops
//! vectorise (in the widest vectors the CPU has, [`wide`]), with each
//! output's operations in the reference's order, so every build and CPU
//! gives the reference's bits. Planes take their buffers from a bounded
//! pool of freed ones ([`buffer`]): page faults on fresh 2 MiB buffers
//! cost the embedder more than its arithmetic did.

use std::ops::Range;
use std::sync::{Mutex, PoisonError};

/// A row-major plane of samples.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plane {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f64>,
}

impl Plane {
    /// A plane of zeros (its buffer from [`buffer`]).
    pub(crate) fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: buffer(width * height),
        }
    }

    /// BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B of packed RGB pixels.
    pub(crate) fn luma(pixels: &[u8], width: usize, height: usize) -> Self {
        let mut out = Plane::new(width, height);
        for (y, p) in out.data.iter_mut().zip(pixels.chunks_exact(3)) {
            *y = 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]);
        }
        out
    }

    /// Applies `f` to every sample.
    pub(crate) fn map(&self, f: impl Fn(f64) -> f64) -> Self {
        let mut out = Plane::new(self.width, self.height);
        for (o, &v) in out.data.iter_mut().zip(&self.data) {
            *o = f(v);
        }
        out
    }

    /// Combines two planes of the same size sample by sample.
    pub(crate) fn zip(&self, other: &Self, f: impl Fn(f64, f64) -> f64) -> Self {
        let mut out = Plane::new(self.width, self.height);
        for ((o, &a), &b) in out.data.iter_mut().zip(&self.data).zip(&other.data) {
            *o = f(a, b);
        }
        out
    }

    /// The mean over the (2r+1)×(2r+1) window around each sample, edges
    /// replicated; columns first, then rows. See [`Plane::box_mean_map`].
    pub(crate) fn box_mean(&self, r: usize) -> Self {
        self.box_mean_map(r, |v| v)
    }

    /// `f` of the box mean of every sample. Each mean is
    /// (prefix[i + 2r + 2] − prefix[i + 1]) / (2r + 1) over the padded
    /// line's running sum, the reference's operations in its order: the
    /// columns' running sums go down a row at a time (so the loops
    /// vectorise), a half of the rows on each of two threads (the lower
    /// half first sums the rows above it, in the same order).
    pub(crate) fn box_mean_map(&self, r: usize, f: impl Fn(f64) -> f64 + Sync) -> Self {
        let (w, h) = (self.width, self.height);
        let mut out = Plane::new(w, h);
        let mid = h / 2;
        let (top, bottom) = out.data.split_at_mut(mid * w);
        both(
            || self.box_rows(r, 0..mid, top, &f),
            || self.box_rows(r, mid..h, bottom, &f),
        );
        out
    }

    /// The rows `rows` of [`Plane::box_mean_map`] into `out`.
    fn box_rows(&self, r: usize, rows: Range<usize>, out: &mut [f64], f: &impl Fn(f64) -> f64) {
        wide(|| self.box_rows_plain(r, rows, out, f));
    }

    #[inline(always)]
    fn box_rows_plain(
        &self,
        r: usize,
        rows: Range<usize>,
        out: &mut [f64],
        f: &impl Fn(f64) -> f64,
    ) {
        let (w, h) = (self.width, self.height);
        if r == 0 {
            for (o, &v) in out.iter_mut().zip(&self.data[rows.start * w..rows.end * w]) {
                *o = f(v);
            }
            return;
        }
        let n = (2 * r + 1) as f64;
        // prefix row i+1 = prefix row i + padded row i; the padded column
        // is r+1 copies of the first row, the rows, then r of the last.
        // Output row y reads prefix rows y+1 and y+2r+2: the running row
        // `sum` (prefix row `made`) is kept in a ring of the last 2r+2.
        let ring = 2 * r + 2;
        let mut prefix = vec![vec![0.0; w]; ring];
        let mut sum = vec![0.0; w];
        let mut made = 0;
        let mut line = vec![0.0; w + 2 * r + 2];
        for (y, vertical) in rows.zip(out.chunks_exact_mut(w)) {
            while made < y + 2 * r + 2 {
                let src = made.saturating_sub(r + 1).min(h - 1);
                for (s, &v) in sum.iter_mut().zip(&self.data[src * w..(src + 1) * w]) {
                    *s += v;
                }
                made += 1;
                prefix[made % ring].copy_from_slice(&sum);
            }
            let hi = &prefix[(y + 2 * r + 2) % ring];
            let lo = &prefix[(y + 1) % ring];
            for ((v, &a), &b) in vertical.iter_mut().zip(hi).zip(lo) {
                *v = (a - b) / n;
            }
            running_mean(vertical, r, n, &mut line);
            for v in vertical.iter_mut() {
                *v = f(*v);
            }
        }
    }

    /// The separable 11-tap Gaussian (σ = 1.5, SSIM's window; taps
    /// exp(−k²/4.5) normalised), columns first, edges replicated
    /// (`valid` false) or over the valid windows only, where the plane
    /// shrinks by 10 samples a side. See [`gauss_rows`], which the
    /// embedder uses; this whole-plane form is for tests.
    #[cfg(test)]
    pub(crate) fn gauss(&self, valid: bool) -> Self {
        let w = if valid {
            self.width.saturating_sub(10)
        } else {
            self.width
        };
        let h = gauss_height(self.height, valid);
        let mut out = Plane::new(w, h);
        gauss_rows([Src::Plane(self)], valid, 0..h, |y, [row]| {
            out.data[y * w..(y + 1) * w].copy_from_slice(row);
        });
        out
    }

    /// One pass of a sigma filter along rows (`along_rows`) or columns:
    /// every sample becomes the mean of the samples of its 2r+1 window
    /// (edges replicated) within ±`tau` of its own value (itself always
    /// counts). Steps larger than `tau` (object outlines, the squares of an
    /// enlarged output) are kept; the mark is averaged away.
    pub(crate) fn sigma_pass(&self, r: usize, tau: f64, along_rows: bool) -> Self {
        let (w, h) = (self.width, self.height);
        let mut out = Plane::new(w, h);
        for y in 0..h {
            for x in 0..w {
                let centre = self.data[y * w + x];
                let (mut sum, mut count) = (0.0, 0.0);
                for k in -(r as i64)..=r as i64 {
                    let v = if along_rows {
                        self.data[y * w + (x as i64 + k).clamp(0, w as i64 - 1) as usize]
                    } else {
                        self.data[(y as i64 + k).clamp(0, h as i64 - 1) as usize * w + x]
                    };
                    if (v - centre).abs() <= tau {
                        sum += v;
                        count += 1.0;
                    }
                }
                out.data[y * w + x] = sum / count;
            }
        }
        out
    }

    /// The central window of at most `n`×`n` samples, and its top-left
    /// corner: it starts at ⌊(side − n)/2⌋ when the side is larger.
    pub(crate) fn centre(&self, n: usize) -> (Self, usize, usize) {
        let y0 = self.height.saturating_sub(n) / 2;
        let x0 = self.width.saturating_sub(n) / 2;
        let (w, h) = (self.width.min(n), self.height.min(n));
        let mut out = Plane::new(w, h);
        for y in 0..h {
            out.data[y * w..(y + 1) * w]
                .copy_from_slice(&self.data[(y0 + y) * self.width + x0..][..w]);
        }
        (out, x0, y0)
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.data));
    }
}

/// Buffers of dropped planes, kept for the next ones: a fresh
/// allocation of a 512×512 plane (2 MiB) costs about 1 ms in page
/// faults, more than most filters that fill it, and an embed uses a
/// dozen. At most [`POOL_BYTES`] are kept, buffers of at least
/// [`POOL_MIN`] samples only.
static POOL: Mutex<Vec<Vec<f64>>> = Mutex::new(Vec::new());
const POOL_BYTES: usize = 64 << 20;
const POOL_MIN: usize = 1 << 15;

/// `len` zeros, in the smallest kept buffer that holds them, or new.
pub(crate) fn buffer(len: usize) -> Vec<f64> {
    if len >= POOL_MIN {
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        let fits = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        if let Some(i) = fits {
            let mut kept = pool.swap_remove(i);
            drop(pool);
            kept.clear();
            kept.resize(len, 0.0);
            return kept;
        }
    }
    vec![0.0; len]
}

/// Keeps `data` for a later [`buffer`], within the pool's bounds.
pub(crate) fn recycle(data: Vec<f64>) {
    if data.capacity() < POOL_MIN {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    let held: usize = pool.iter().map(Vec::capacity).sum();
    if (held + data.capacity()) * size_of::<f64>() <= POOL_BYTES {
        pool.push(data);
    }
}

/// Replaces `line` by its edge-replicated running mean over 2r+1 samples,
/// through a prefix sum of the padded line (r+1 copies of the first
/// sample, the line, r copies of the last).
#[inline(always)]
fn running_mean(line: &mut [f64], r: usize, n: f64, prefix: &mut [f64]) {
    let len = line.len();
    prefix[0] = 0.0;
    for i in 0..len + 2 * r + 1 {
        let v = line[i.saturating_sub(r + 1).min(len - 1)];
        prefix[i + 1] = prefix[i] + v;
    }
    for (i, v) in line.iter_mut().enumerate() {
        *v = (prefix[i + 2 * r + 2] - prefix[i + 1]) / n;
    }
}

/// The 11 Gaussian taps of [`Plane::gauss`], normalised, computed once.
fn gauss_taps() -> &'static [f64; 11] {
    static TAPS: std::sync::OnceLock<[f64; 11]> = std::sync::OnceLock::new();
    TAPS.get_or_init(|| {
        let taps: Vec<f64> = (-5i32..=5)
            .map(|k| (-f64::from(k * k) / 4.5).exp())
            .collect();
        let total: f64 = taps.iter().sum();
        std::array::from_fn(|i| taps[i] / total)
    })
}

/// A plane [`gauss_rows`] filters: a stored one, or the square or the
/// product of stored ones, formed a row at a time (the same bits as
/// storing `a·a` or `a·b` first, without the plane).
#[derive(Clone, Copy)]
pub(crate) enum Src<'a> {
    Plane(&'a Plane),
    Square(&'a Plane),
    Product(&'a Plane, &'a Plane),
}

impl Src<'_> {
    fn size(&self) -> (usize, usize) {
        let plane = match self {
            Src::Plane(p) | Src::Square(p) | Src::Product(p, _) => p,
        };
        (plane.width, plane.height)
    }
}

/// The source rows of one [`Src`] a Gaussian is reading: a stored
/// plane's rows are borrowed; a square's or a product's are formed once
/// each and kept while the 11 output rows that read them are computed
/// (slot `row % 11`, so a window of 11 consecutive rows never collides).
struct Rows<'a> {
    src: Src<'a>,
    slots: Vec<Vec<f64>>,
    tags: [usize; 11],
}

impl<'a> Rows<'a> {
    fn new(src: Src<'a>) -> Self {
        let slots = match src {
            Src::Plane(_) => Vec::new(),
            Src::Square(_) | Src::Product(..) => vec![vec![0.0; src.size().0]; 11],
        };
        Self {
            src,
            slots,
            tags: [usize::MAX; 11],
        }
    }

    /// Forms row `y` (of a square or a product) unless it is kept.
    fn row(&mut self, y: usize) {
        let w = self.src.size().0;
        let (a, b) = match self.src {
            Src::Plane(_) => return,
            Src::Square(p) => (p, p),
            Src::Product(p, q) => (p, q),
        };
        let slot = y % 11;
        if self.tags[slot] != y {
            let (ra, rb) = (&a.data[y * w..(y + 1) * w], &b.data[y * w..(y + 1) * w]);
            for ((o, &u), &v) in self.slots[slot].iter_mut().zip(ra).zip(rb) {
                *o = u * v;
            }
            self.tags[slot] = y;
        }
    }

    /// Row `y`, formed by [`Rows::row`] for a square or a product.
    fn get(&self, y: usize) -> &[f64] {
        let w = self.src.size().0;
        match self.src {
            Src::Plane(p) => &p.data[y * w..(y + 1) * w],
            _ => {
                debug_assert_eq!(self.tags[y % 11], y);
                &self.slots[y % 11]
            }
        }
    }
}

/// SSIM's Gaussian of several planes of one size, a row at a time: calls
/// `each(row, rows)` with that output row of every plane, in order, and
/// stores no plane. Each output sums its 11 products in tap order, down
/// the column first, then along the row (the reference's operations).
/// `valid`: over the valid windows only; otherwise edges replicated.
pub(crate) fn gauss_rows<'a, const N: usize>(
    planes: [Src<'a>; N],
    valid: bool,
    rows: Range<usize>,
    mut each: impl FnMut(usize, &[Vec<f64>; N]),
) {
    let taps = gauss_taps();
    let (w, h) = planes[0].size();
    let ow = if valid { w.saturating_sub(10) } else { w };
    let mut sources = planes.map(Rows::new);
    let mut column = vec![0.0; w];
    let mut padded = vec![0.0; w + 10];
    let mut out_rows: [Vec<f64>; N] = std::array::from_fn(|_| vec![0.0; ow]);
    for y in rows {
        for (source, out) in sources.iter_mut().zip(&mut out_rows) {
            let src = |k: usize| {
                if valid {
                    y + k
                } else {
                    (y as i64 + k as i64 - 5).clamp(0, h as i64 - 1) as usize
                }
            };
            // Form the rows first (a square's or a product's), then read.
            for k in 0..11 {
                source.row(src(k));
            }
            let inputs: [&[f64]; 11] = std::array::from_fn(|k| source.get(src(k)));
            taps11(inputs, taps, &mut column);
            let line: &[f64] = if valid {
                &column
            } else {
                padded[5..5 + w].copy_from_slice(&column);
                let (first, last) = (column[0], column[w - 1]);
                padded[..5].fill(first);
                padded[5 + w..].fill(last);
                &padded
            };
            taps11(std::array::from_fn(|k| &line[k..k + ow]), taps, out);
        }
        each(y, &out_rows);
    }
}

/// `out[x] = t₀·in₀[x] + t₁·in₁[x] + … + t₁₀·in₁₀[x]`, summed left to
/// right: the 11 taps of a Gaussian, down a column (`inᵢ` the rows) or
/// along a row (`inᵢ` the row shifted by i), in [`wide`] vectors.
fn taps11(inputs: [&[f64]; 11], taps: &[f64; 11], out: &mut [f64]) {
    wide(|| taps11_plain(inputs, taps, out));
}

/// Runs `f` compiled for the widest vectors the CPU has (AVX-512 or
/// AVX2 on x86-64, detected at run time), for the loops it inlines.
/// Only the vector width changes: the same IEEE operations in the same
/// order (Rust never fuses a multiply and an add), so the same bits.
#[inline(always)]
pub(crate) fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked above.
            return unsafe { wide_avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked above.
            return unsafe { wide_avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn wide_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn wide_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[inline(always)]
fn taps11_plain(inputs: [&[f64]; 11], taps: &[f64; 11], out: &mut [f64]) {
    let n = out.len();
    let i = inputs.map(|row| &row[..n]);
    for x in 0..n {
        let mut acc = taps[0] * i[0][x];
        acc += taps[1] * i[1][x];
        acc += taps[2] * i[2][x];
        acc += taps[3] * i[3][x];
        acc += taps[4] * i[4][x];
        acc += taps[5] * i[5][x];
        acc += taps[6] * i[6][x];
        acc += taps[7] * i[7][x];
        acc += taps[8] * i[8][x];
        acc += taps[9] * i[9][x];
        acc += taps[10] * i[10][x];
        out[x] = acc;
    }
}

/// The output rows of [`gauss_rows`] for a plane of `height` rows.
pub(crate) fn gauss_height(height: usize, valid: bool) -> usize {
    if valid {
        height.saturating_sub(10)
    } else {
        height
    }
}

/// Runs `a` here and `b` on a second thread (the embedder splits its
/// rows in two halves); both results. A panic in `b` resumes here.
pub(crate) fn both<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    std::thread::scope(|scope| {
        let second = scope.spawn(b);
        let first = a();
        let second = second
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (first, second)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plane_on_a_reused_buffer_starts_at_zero() {
        let mut dirty = Plane::new(256, 256);
        dirty.data.fill(7.0);
        drop(dirty);
        for _ in 0..4 {
            let plane = Plane::new(250, 250);
            assert!(plane.data.iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn the_box_mean_replicates_edges() {
        let p = Plane {
            width: 4,
            height: 1,
            data: vec![1.0, 2.0, 3.0, 10.0],
        };
        let b = p.box_mean(1);
        // Rows of one sample: the vertical pass keeps them.
        let expected = [4.0 / 3.0, 2.0, 5.0, 23.0 / 3.0];
        for (got, want) in b.data.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{:?}", b.data);
        }
    }
}

#[cfg(test)]
mod brute {
    use super::*;

    /// The Gaussian as a direct windowed sum per output, columns first:
    /// the row-at-a-time version gives the same bits.
    #[test]
    fn the_gaussian_is_the_direct_windowed_sum_bit_for_bit() {
        let (w, h) = (37usize, 21usize);
        let mut state = 5u64;
        let p = Plane {
            width: w,
            height: h,
            data: (0..w * h)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (state >> 40) as f64 / 997.0
                })
                .collect(),
        };
        let taps = gauss_taps();
        let clamp = |i: i64, n: usize| i.clamp(0, n as i64 - 1) as usize;
        let mut vertical = Plane::new(w, h);
        for y in 0..h {
            for x in 0..w {
                vertical.data[y * w + x] = taps
                    .iter()
                    .enumerate()
                    .map(|(k, t)| t * p.data[clamp(y as i64 + k as i64 - 5, h) * w + x])
                    .sum();
            }
        }
        let g = p.gauss(false);
        for y in 0..h {
            for x in 0..w {
                let want: f64 = taps
                    .iter()
                    .enumerate()
                    .map(|(k, t)| t * vertical.data[y * w + clamp(x as i64 + k as i64 - 5, w)])
                    .sum();
                assert_eq!(g.data[y * w + x].to_bits(), want.to_bits(), "at {x},{y}");
            }
        }
    }

    #[test]
    fn the_box_mean_is_the_windowed_mean_with_edges_replicated() {
        let (w, h) = (13usize, 9usize);
        let mut state = 9u64;
        let data: Vec<f64> = (0..w * h)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (state >> 40) as f64 / 1000.0
            })
            .collect();
        let p = Plane {
            width: w,
            height: h,
            data,
        };
        for r in [1usize, 2, 3] {
            let b = p.box_mean(r);
            for y in 0..h {
                for x in 0..w {
                    let mut sum = 0.0;
                    for dy in -(r as i64)..=r as i64 {
                        for dx in -(r as i64)..=r as i64 {
                            let yy = (y as i64 + dy).clamp(0, h as i64 - 1) as usize;
                            let xx = (x as i64 + dx).clamp(0, w as i64 - 1) as usize;
                            sum += p.data[yy * w + xx];
                        }
                    }
                    let want = sum / ((2 * r + 1) * (2 * r + 1)) as f64;
                    assert!((b.data[y * w + x] - want).abs() < 1e-9, "r {r} at {x},{y}");
                }
            }
        }
    }
}
