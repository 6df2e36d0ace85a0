//! The U (blue-difference) channel the watermark lives in, computed exactly
//! as OpenCV's 8-bit `cvtColor(..., COLOR_BGR2YUV)` does, and a way to
//! change a pixel's U by a given amount while staying inside the RGB cube.

/// OpenCV's fixed-point colour constants (`yuv_shift` = 14): BT.601 luma
/// weights and the YUV (not YCbCr) blue-difference scale 0.492111.
/// Checked against OpenCV 5.0 on all 2^24 colours (Y and U agree
/// everywhere), see `tools/watermark/reference.py`.
const SHIFT: i32 = 14;
const R2Y: i32 = 4899;
const G2Y: i32 = 9617;
const B2Y: i32 = 1868;
const B2U: i32 = 8061;
const HALF: i32 = 1 << (SHIFT - 1);

/// OpenCV's 8-bit U of one RGB pixel, in 17..=239.
pub(crate) fn u_of(r: u8, g: u8, b: u8) -> i32 {
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    let y = (r * R2Y + g * G2Y + b * B2Y + HALF) >> SHIFT;
    ((b - y) * B2U + (128 << SHIFT) + HALF) >> SHIFT
}

/// The U plane of packed RGB pixels, as f64 for the transforms.
pub(crate) fn u_plane(pixels: &[u8]) -> Vec<f64> {
    pixels
        .chunks_exact(3)
        .map(|p| f64::from(u_of(p[0], p[1], p[2])))
        .collect()
}

/// ∂U/∂(R, G, B) of the linear transform: 0.492 × (B − Y).
const U_GRADIENT: [f64; 3] = [-0.492111 * 0.299, -0.492111 * 0.587, 0.492111 * 0.886];

/// The change of (R, G, B) per unit of U that keeps Y and V fixed: only
/// the chroma moves, which the eye notices least. It is the reference's
/// change too (it edits U in YUV space and converts back).
const CHROMA_ONLY: [f64; 3] = [0.0, -0.114 / 0.587 / 0.492111, 1.0 / 0.492111];

/// Moves `rgb` (0..=255 floats) so that its U rises by `delta`, preferring
/// a chroma-only change. Where that would leave the RGB cube (white or
/// saturated pixels: raising U on white needs B above 255), the shortfall
/// is made up along U's gradient over the channels that can still move,
/// which darkens such pixels slightly instead of losing the mark there.
pub(crate) fn shift_u(rgb: [f64; 3], delta: f64) -> [f64; 3] {
    let mut out: [f64; 3] =
        std::array::from_fn(|c| (rgb[c] + delta * CHROMA_ONLY[c]).clamp(0.0, 255.0));
    for _ in 0..2 {
        let achieved: f64 = (0..3).map(|c| (out[c] - rgb[c]) * U_GRADIENT[c]).sum();
        let shortfall = delta - achieved;
        if shortfall.abs() < 1e-6 {
            break;
        }
        // A channel is free when moving it in the direction that raises U
        // by `shortfall` keeps it inside 0..=255.
        let free: [bool; 3] = std::array::from_fn(|c| {
            let step = shortfall * U_GRADIENT[c];
            (step > 0.0 && out[c] < 255.0) || (step < 0.0 && out[c] > 0.0)
        });
        let norm: f64 = (0..3)
            .filter(|&c| free[c])
            .map(|c| U_GRADIENT[c] * U_GRADIENT[c])
            .sum();
        if norm == 0.0 {
            break;
        }
        for c in (0..3).filter(|&c| free[c]) {
            out[c] = (out[c] + shortfall * U_GRADIENT[c] / norm).clamp(0.0, 255.0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u_float(rgb: [f64; 3]) -> f64 {
        (0..3).map(|c| rgb[c] * U_GRADIENT[c]).sum()
    }

    #[test]
    fn u_of_matches_known_opencv_values() {
        // cv2.cvtColor on these BGR pixels gives these U values.
        assert_eq!(u_of(255, 255, 255), 128);
        assert_eq!(u_of(0, 0, 0), 128);
        assert_eq!(u_of(0, 0, 255), 239);
        assert_eq!(u_of(255, 255, 0), 17);
    }

    #[test]
    fn shift_u_keeps_luma_where_it_can() {
        let rgb = [120.0, 90.0, 60.0];
        let out = shift_u(rgb, 3.0);
        assert!((u_float(out) - u_float(rgb) - 3.0).abs() < 1e-9);
        let luma = |p: [f64; 3]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
        assert!((luma(out) - luma(rgb)).abs() < 1e-9);
    }

    #[test]
    fn shift_u_reaches_its_target_on_white_both_ways() {
        for delta in [2.0, -2.0] {
            let out = shift_u([255.0; 3], delta);
            assert!(
                (u_float(out) - u_float([255.0; 3]) - delta).abs() < 1e-9,
                "{delta}: {out:?}"
            );
            assert!(out.iter().all(|v| (0.0..=255.0).contains(v)));
        }
    }
}
