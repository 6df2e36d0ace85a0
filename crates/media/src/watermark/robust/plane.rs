//! A plane of f64 samples and the few filters the mark needs: luma, the
//! edge-replicated box mean, SSIM's Gaussian (padded and valid), and the
//! central window. The filters run a row at a time so their loops
//! vectorise, with each output's operations in the reference's order.

use std::ops::Range;

/// A row-major plane of samples.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plane {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f64>,
}

impl Plane {
    pub(crate) fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0.0; width * height],
        }
    }

    /// BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B of packed RGB pixels.
    pub(crate) fn luma(pixels: &[u8], width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: pixels
                .chunks_exact(3)
                .map(|p| {
                    0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])
                })
                .collect(),
        }
    }

    /// Applies `f` to every sample.
    pub(crate) fn map(&self, f: impl Fn(f64) -> f64) -> Self {
        Self {
            width: self.width,
            height: self.height,
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }

    /// Combines two planes of the same size sample by sample.
    pub(crate) fn zip(&self, other: &Self, f: impl Fn(f64, f64) -> f64) -> Self {
        Self {
            width: self.width,
            height: self.height,
            data: self
                .data
                .iter()
                .zip(&other.data)
                .map(|(&a, &b)| f(a, b))
                .collect(),
        }
    }

    /// The mean over the (2r+1)×(2r+1) window around each sample, edges
    /// replicated; columns first, then rows. Each output is
    /// (prefix[i + 2r + 2] − prefix[i + 1]) / (2r + 1) over the padded
    /// line's running sum, the reference's operations in its order; the
    /// columns are summed a row at a time so the loops vectorise.
    pub(crate) fn box_mean(&self, r: usize) -> Self {
        if r == 0 {
            return self.clone();
        }
        let (w, h) = (self.width, self.height);
        let n = (2 * r + 1) as f64;
        // prefix row i+1 = prefix row i + padded row i; the padded column
        // is r+1 copies of the first row, the rows, then r of the last.
        let rows = h + 2 * r + 1;
        let mut prefix = vec![0.0; (rows + 1) * w];
        for i in 0..rows {
            let src = i.saturating_sub(r + 1).min(h - 1);
            let (done, next) = prefix.split_at_mut((i + 1) * w);
            let before = &done[i * w..];
            let row = &self.data[src * w..(src + 1) * w];
            for ((p, &b), &v) in next[..w].iter_mut().zip(before).zip(row) {
                *p = b + v;
            }
        }
        let mut out = Plane::new(w, h);
        let mut line = vec![0.0; w + 2 * r + 2];
        for y in 0..h {
            let hi = &prefix[(y + 2 * r + 2) * w..][..w];
            let lo = &prefix[(y + 1) * w..][..w];
            let vertical = &mut out.data[y * w..(y + 1) * w];
            for ((v, &a), &b) in vertical.iter_mut().zip(hi).zip(lo) {
                *v = (a - b) / n;
            }
            running_mean(vertical, r, n, &mut line);
        }
        out
    }

    /// The separable 11-tap Gaussian (σ = 1.5, SSIM's window; taps
    /// exp(−k²/4.5) normalised), columns first, edges replicated
    /// (`valid` false) or over the valid windows only, where the plane
    /// shrinks by 10 samples a side. See [`gauss_rows`].
    pub(crate) fn gauss(&self, valid: bool) -> Self {
        let w = if valid {
            self.width.saturating_sub(10)
        } else {
            self.width
        };
        let h = gauss_height(self.height, valid);
        let mut out = Plane::new(w, h);
        gauss_rows([self], valid, 0..h, |y, [row]| {
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

/// Replaces `line` by its edge-replicated running mean over 2r+1 samples,
/// through a prefix sum of the padded line (r+1 copies of the first
/// sample, the line, r copies of the last).
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

/// SSIM's Gaussian of several planes of one size, a row at a time: calls
/// `each(row, rows)` with that output row of every plane, in order, and
/// stores no plane. Each output sums its 11 products in tap order, down
/// the column first, then along the row (the reference's operations).
/// `valid`: over the valid windows only; otherwise edges replicated.
pub(crate) fn gauss_rows<const N: usize>(
    planes: [&Plane; N],
    valid: bool,
    rows: Range<usize>,
    mut each: impl FnMut(usize, &[Vec<f64>; N]),
) {
    let taps = gauss_taps();
    let (w, h) = (planes[0].width, planes[0].height);
    let ow = if valid { w.saturating_sub(10) } else { w };
    let mut column: [Vec<f64>; N] = std::array::from_fn(|_| vec![0.0; w]);
    let mut padded = vec![0.0; w + 10];
    let mut out_rows: [Vec<f64>; N] = std::array::from_fn(|_| vec![0.0; ow]);
    for y in rows {
        for ((plane, col), out) in planes.iter().zip(&mut column).zip(&mut out_rows) {
            for (k, &t) in taps.iter().enumerate() {
                let src = if valid {
                    y + k
                } else {
                    (y as i64 + k as i64 - 5).clamp(0, h as i64 - 1) as usize
                };
                accumulate(col, &plane.data[src * w..(src + 1) * w], t, k == 0);
            }
            let line: &[f64] = if valid {
                col
            } else {
                for (i, p) in padded.iter_mut().enumerate() {
                    *p = col[(i as i64 - 5).clamp(0, w as i64 - 1) as usize];
                }
                &padded
            };
            for (k, &t) in taps.iter().enumerate() {
                accumulate(out, &line[k..k + ow], t, k == 0);
            }
        }
        each(y, &out_rows);
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

/// `out = t·src` (`first`) or `out += t·src`, element by element.
fn accumulate(out: &mut [f64], src: &[f64], t: f64, first: bool) {
    if first {
        for (o, &v) in out.iter_mut().zip(src) {
            *o = t * v;
        }
    } else {
        for (o, &v) in out.iter_mut().zip(src) {
            *o += t * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
