//! The largest singular value of a 4×4 block and its singular vectors.
//!
//! The reference takes `numpy.linalg.svd(cv2.dct(block))` and moves the
//! first singular value. The orthonormal 2-D DCT is `C·B·Cᵀ` with `C`
//! orthogonal, so it has the same singular values as `B`, and moving the
//! first one by `Δ` and inverting the DCT adds `Δ·u·vᵀ` to `B`, where `u`
//! and `v` are `B`'s own first singular vectors. The DCT therefore changes
//! nothing but rounding, and this module works on the block directly
//! (the unit test below checks the equivalence against a 4×4 DCT).

/// A 4×4 block, row-major.
pub(crate) type Block = [[f64; 4]; 4];

/// `(σ₁, u, v)` with `B·v = σ₁·u`, from the eigen-decomposition of the
/// symmetric `BᵀB` by cyclic Jacobi rotations (exact to rounding for a
/// 4×4 matrix in a few sweeps; no iteration count to tune).
pub(crate) fn largest_singular(block: &Block) -> (f64, [f64; 4], [f64; 4]) {
    let mut a = [[0.0; 4]; 4];
    for (i, row) in a.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = (0..4).map(|k| block[k][i] * block[k][j]).sum();
        }
    }
    let mut vectors = [[0.0; 4]; 4];
    for (i, row) in vectors.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for _sweep in 0..30 {
        let off: f64 = (0..4)
            .flat_map(|p| (p + 1..4).map(move |q| (p, q)))
            .map(|(p, q)| a[p][q] * a[p][q])
            .sum();
        let scale: f64 = (0..4).map(|i| a[i][i] * a[i][i]).sum();
        if off <= scale * 1e-30 {
            break;
        }
        for p in 0..3 {
            for q in p + 1..4 {
                if a[p][q] == 0.0 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (row_p, row_q) = (a[p], a[q]);
                a[p] = std::array::from_fn(|k| c * row_p[k] - s * row_q[k]);
                a[q] = std::array::from_fn(|k| s * row_p[k] + c * row_q[k]);
                for row in vectors.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    let top = (0..4).fold(0, |best, i| if a[i][i] > a[best][best] { i } else { best });
    let v: [f64; 4] = std::array::from_fn(|i| vectors[i][top]);
    let sigma = a[top][top].max(0.0).sqrt();
    if sigma < 1e-9 {
        // A zero block: any unit vectors do; the uniform ones spread a
        // change evenly.
        return (0.0, [0.5; 4], [0.5; 4]);
    }
    let u: [f64; 4] =
        std::array::from_fn(|i| (0..4).map(|j| block[i][j] * v[j]).sum::<f64>() / sigma);
    (sigma, u, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenCV's orthonormal DCT-II matrix for n = 4.
    fn dct_matrix() -> Block {
        std::array::from_fn(|k| {
            std::array::from_fn(|n| {
                let alpha = if k == 0 { 0.5 } else { (0.5f64).sqrt() };
                alpha * (std::f64::consts::PI * (2 * n + 1) as f64 * k as f64 / 8.0).cos()
            })
        })
    }

    fn mul(a: &Block, b: &Block) -> Block {
        std::array::from_fn(|i| std::array::from_fn(|j| (0..4).map(|k| a[i][k] * b[k][j]).sum()))
    }

    fn transpose(a: &Block) -> Block {
        std::array::from_fn(|i| std::array::from_fn(|j| a[j][i]))
    }

    fn sample() -> Block {
        [
            [260.0, 255.5, 251.0, 240.0],
            [262.0, 250.0, 244.5, 230.0],
            [259.0, 248.0, 241.0, 228.5],
            [270.0, 249.0, 239.0, 225.0],
        ]
    }

    #[test]
    fn singular_triple_satisfies_its_definition() {
        let block = sample();
        let (sigma, u, v) = largest_singular(&block);
        let norm = |x: [f64; 4]| x.iter().map(|a| a * a).sum::<f64>().sqrt();
        assert!((norm(u) - 1.0).abs() < 1e-12 && (norm(v) - 1.0).abs() < 1e-12);
        // Bᵀu = σv as well, and σ is the largest: ‖B‖_F² ≥ σ² > ‖B‖_F²/4.
        for j in 0..4 {
            let btu: f64 = (0..4).map(|i| block[i][j] * u[i]).sum();
            assert!((btu - sigma * v[j]).abs() < 1e-9);
        }
        let frobenius: f64 = block.iter().flatten().map(|a| a * a).sum();
        assert!(sigma * sigma <= frobenius + 1e-6 && sigma * sigma > frobenius / 4.0);
    }

    #[test]
    fn the_dct_changes_neither_the_singular_value_nor_the_edit() {
        let block = sample();
        let c = dct_matrix();
        let dct = mul(&mul(&c, &block), &transpose(&c));
        let (sigma, u, v) = largest_singular(&block);
        let (sigma_dct, u_dct, v_dct) = largest_singular(&dct);
        assert!((sigma - sigma_dct).abs() < 1e-9);
        // Adding Δ·u·vᵀ in the DCT domain and inverting equals adding it here.
        let delta = 7.5;
        let edit_dct: Block = std::array::from_fn(|i| {
            std::array::from_fn(|j| dct[i][j] + delta * u_dct[i] * v_dct[j])
        });
        let back = mul(&mul(&transpose(&c), &edit_dct), &c);
        for i in 0..4 {
            for j in 0..4 {
                assert!((back[i][j] - block[i][j] - delta * u[i] * v[j]).abs() < 1e-9);
            }
        }
    }
}
