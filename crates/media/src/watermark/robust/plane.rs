//! A plane of f64 samples and the few filters the mark needs: luma, the
//! edge-replicated box mean, and the central window.

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
    /// replicated; columns first, then rows.
    pub(crate) fn box_mean(&self, r: usize) -> Self {
        if r == 0 {
            return self.clone();
        }
        let (w, h) = (self.width, self.height);
        let n = (2 * r + 1) as f64;
        let mut vertical = Plane::new(w, h);
        let mut column = vec![0.0; h];
        let mut prefix = vec![0.0; h + 2 * r + 2];
        for x in 0..w {
            for (y, c) in column.iter_mut().enumerate() {
                *c = self.data[y * w + x];
            }
            running_mean(&column, r, n, &mut prefix, |y, v| {
                vertical.data[y * w + x] = v
            });
        }
        let mut out = Plane::new(w, h);
        let mut prefix = vec![0.0; w + 2 * r + 2];
        for y in 0..h {
            let row = &vertical.data[y * w..(y + 1) * w];
            let target = &mut out.data[y * w..(y + 1) * w];
            running_mean(row, r, n, &mut prefix, |x, v| target[x] = v);
        }
        out
    }

    /// The separable 11-tap Gaussian (σ = 1.5, SSIM's window; taps
    /// exp(−k²/4.5) normalised), edges replicated; columns first.
    pub(crate) fn gauss(&self) -> Self {
        let taps: Vec<f64> = (-5i32..=5)
            .map(|k| (-f64::from(k * k) / 4.5).exp())
            .collect();
        let total: f64 = taps.iter().sum();
        let taps: Vec<f64> = taps.iter().map(|t| t / total).collect();
        let (w, h) = (self.width, self.height);
        let clamp = |i: i64, n: usize| i.clamp(0, n as i64 - 1) as usize;
        let mut vertical = Plane::new(w, h);
        for y in 0..h {
            for x in 0..w {
                vertical.data[y * w + x] = taps
                    .iter()
                    .enumerate()
                    .map(|(k, t)| t * self.data[clamp(y as i64 + k as i64 - 5, h) * w + x])
                    .sum();
            }
        }
        let mut out = Plane::new(w, h);
        for y in 0..h {
            for x in 0..w {
                out.data[y * w + x] = taps
                    .iter()
                    .enumerate()
                    .map(|(k, t)| t * vertical.data[y * w + clamp(x as i64 + k as i64 - 5, w)])
                    .sum();
            }
        }
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

/// The edge-replicated running mean of `line` over 2r+1 samples, through
/// a prefix sum.
fn running_mean(
    line: &[f64],
    r: usize,
    n: f64,
    prefix: &mut [f64],
    mut put: impl FnMut(usize, f64),
) {
    let len = line.len();
    // prefix[i] = sum of the padded line's first i samples; the padded
    // line is r+1 copies of the first sample (the first is never summed
    // alone), the line, then r copies of the last.
    let padded = |i: usize| -> f64 {
        if i <= r {
            line[0]
        } else if i - (r + 1) < len {
            line[i - (r + 1)]
        } else {
            line[len - 1]
        }
    };
    prefix[0] = 0.0;
    for i in 0..len + 2 * r + 1 {
        prefix[i + 1] = prefix[i] + padded(i);
    }
    for i in 0..len {
        put(i, (prefix[i + 2 * r + 2] - prefix[i + 1]) / n);
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
