//! The SSIM the embedder calibrates its strength against, and the one
//! `easel bench watermark` and the reference's `bench.py` report: the
//! lumas compared in SSIM's Gaussian window (11 taps, σ = 1.5), C1 =
//! (0.01·255)², C2 = (0.03·255)², averaged over the valid windows (no
//! padding), as the reference's `ssim` computes it.

use std::ops::Range;

use super::plane::{Plane, Src, both, gauss_rows, wide};

const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);

/// The original's statistics, computed once for the tries of a
/// calibration.
pub(crate) struct Reference<'a> {
    x: &'a Plane,
    mu: Plane,
    /// The windowed mean of x².
    sq: Plane,
}

impl<'a> Reference<'a> {
    /// The statistics computed here (tests; the embedder has them).
    #[cfg(test)]
    pub(crate) fn new(x: &'a Plane) -> Self {
        Self {
            x,
            mu: x.gauss(true),
            sq: x.map(|v| v * v).gauss(true),
        }
    }

    /// The statistics computed elsewhere: `mu` and `sq` are the valid
    /// Gaussians of x and x² (the embedder's budget pass has them).
    pub(crate) fn with_stats(x: &'a Plane, mu: Plane, sq: Plane) -> Self {
        debug_assert_eq!((mu.width, mu.height), (x.width - 10, x.height - 10));
        Self { x, mu, sq }
    }

    /// The original's width and height.
    pub(crate) fn size(&self) -> (usize, usize) {
        (self.x.width, self.x.height)
    }

    /// The mean SSIM of `y` against the original (same size, each side
    /// over 10 samples).
    pub(crate) fn ssim(&self, y: &Plane) -> f64 {
        let vw = self.mu.width;
        let half = |rows: Range<usize>| {
            let mut total = 0.0;
            let planes = [Src::Plane(y), Src::Square(y), Src::Product(self.x, y)];
            gauss_rows(planes, true, rows, |r, [mu_y, yy, xy]| {
                let mu_x = &self.mu.data[r * vw..(r + 1) * vw];
                let sq_x = &self.sq.data[r * vw..(r + 1) * vw];
                wide(|| {
                    for i in 0..vw {
                        let (mx, my) = (mu_x[i], mu_y[i]);
                        let sxx = sq_x[i] - mx * mx;
                        let syy = yy[i] - my * my;
                        let sxy = xy[i] - mx * my;
                        total += ((2.0 * mx * my + C1) * (2.0 * sxy + C2))
                            / ((mx * mx + my * my + C1) * (sxx + syy + C2));
                    }
                });
            });
            total
        };
        let mid = self.mu.height / 2;
        let (top, bottom) = both(|| half(0..mid), || half(mid..self.mu.height));
        let total = top + bottom;
        total / self.mu.data.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(w: usize, h: usize, seed: u64) -> Plane {
        let mut state = seed;
        let mut p = Plane::new(w, h);
        for v in &mut p.data {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *v = (state >> 56) as f64;
        }
        p
    }

    #[test]
    fn a_picture_against_itself_is_one_and_noise_lowers_it() {
        let x = plane(40, 30, 1);
        let reference = Reference::new(&x);
        assert!((reference.ssim(&x) - 1.0).abs() < 1e-12);
        let noisy = x.zip(&plane(40, 30, 2), |a, n| a + (n - 127.5) / 16.0);
        let s = reference.ssim(&noisy);
        assert!(s < 0.999 && s > 0.5, "{s}");
    }

    /// The row-at-a-time SSIM gives the bits of the plane formula.
    #[test]
    fn the_streamed_ssim_is_the_plane_formula() {
        let x = plane(41, 33, 4);
        let y = x.zip(&plane(41, 33, 5), |a, n| a + (n - 127.5) / 40.0);
        let (mx, my) = (x.gauss(true), y.gauss(true));
        let xx = x.map(|v| v * v).gauss(true);
        let yy = y.map(|v| v * v).gauss(true);
        let xy = x.zip(&y, |a, b| a * b).gauss(true);
        // Summed in two halves of rows, as the embedder's two threads do.
        let mid = (mx.height / 2) * mx.width;
        let mut total = [0.0, 0.0];
        for i in 0..mx.data.len() {
            let (a, b) = (mx.data[i], my.data[i]);
            total[usize::from(i >= mid)] += ((2.0 * a * b + C1)
                * (2.0 * (xy.data[i] - a * b) + C2))
                / ((a * a + b * b + C1) * ((xx.data[i] - a * a) + (yy.data[i] - b * b) + C2));
        }
        let want = (total[0] + total[1]) / mx.data.len() as f64;
        assert_eq!(Reference::new(&x).ssim(&y).to_bits(), want.to_bits());
    }

    /// The windowed means against a direct sum over each 11×11 window.
    #[test]
    fn the_valid_gaussian_is_the_windowed_sum() {
        let x = plane(23, 17, 3);
        let g = x.gauss(true);
        assert_eq!((g.width, g.height), (13, 7));
        let taps: Vec<f64> = (-5i32..=5)
            .map(|k| (-f64::from(k * k) / 4.5).exp())
            .collect();
        let total: f64 = taps.iter().sum();
        for y in 0..7 {
            for xx in 0..13 {
                let mut want = 0.0;
                for (i, ti) in taps.iter().enumerate() {
                    for (j, tj) in taps.iter().enumerate() {
                        want += ti * tj * x.data[(y + i) * 23 + xx + j];
                    }
                }
                want /= total * total;
                assert!((g.data[y * 13 + xx] - want).abs() < 1e-9);
            }
        }
    }
}
