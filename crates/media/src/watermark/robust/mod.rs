//! easelmark v1: the robust watermark (`docs/watermark.md`, and the
//! reference implementation and specification in
//! `tools/watermark/robust/`).
//!
//! # Layout
//! - `keys`: the SHA-256 tables (cell layout, sync chips, whitening).
//! - `bch`: BCH(127, 64) with ordered-statistics soft decoding and a
//!   rank-sum acceptance.
//! - `tile`: the 64×64 periodic tile of sync and code cells.
//! - `plane`: luma, box means, SSIM's Gaussian, windows, and the split
//!   of the embedder's work on two threads.
//! - `embed`: the masked embedding, into the channels with headroom.
//! - `calibrate`: rendering the output, and its strength calibrated on
//!   its measured SSIM.
//! - `ssim`: the SSIM that calibration measures.
//! - `detect`: scale search, sync correlation, cell reading, decoding.

mod bch;
mod calibrate;
mod detect;
mod embed;
mod keys;
mod plane;
mod ssim;
mod tile;

pub(crate) use detect::{Found, MIN_SIDE};

/// Marks packed RGB `pixels` with `message` (payload ‖ CRC-16) in place.
pub(crate) fn embed(pixels: &mut [u8], width: usize, height: usize, message: u64) {
    embed::embed(pixels, width, height, message);
}

/// Reads the mark of packed RGB `pixels`; `accept` checks a decoded
/// message (the CRC) and turns it into a value.
pub(crate) fn detect<V>(
    pixels: &[u8],
    width: usize,
    height: usize,
    accept: impl Fn(u64) -> Option<V>,
) -> Option<Found<V>> {
    detect::detect(&plane::Plane::luma(pixels, width, height), accept)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 256×256 emoji-like picture: a white background, a filled disc and
    /// a darker outline, each source pixel an 8×8 square.
    fn emoji(seed: u32) -> Vec<u8> {
        let mut px = vec![255u8; 256 * 256 * 3];
        let (cx, cy) = (14.0 + f64::from(seed % 5), 15.0 + f64::from(seed % 3));
        for y in 0..256usize {
            for x in 0..256usize {
                let (sx, sy) = ((x / 8) as f64, (y / 8) as f64);
                let d = ((sx - cx).powi(2) + (sy - cy).powi(2)).sqrt();
                let c: [u8; 3] = if d < 9.0 {
                    [240, 190 - (seed * 20 % 120) as u8, 40]
                } else if d < 10.5 {
                    [90, 60, 20]
                } else {
                    continue;
                };
                px[3 * (y * 256 + x)..][..3].copy_from_slice(&c);
            }
        }
        px
    }

    /// The reference's test picture (SPEC.md §5): a gradient with a white
    /// and a black corner square.
    fn test_picture() -> Vec<u8> {
        let mut px = Vec::with_capacity(256 * 256 * 3);
        for y in 0..256u32 {
            for x in 0..256u32 {
                let c = if y < 64 && x < 64 {
                    [255, 255, 255]
                } else if y >= 192 && x >= 192 {
                    [0, 0, 0]
                } else {
                    [(64 + x / 2) as u8, (64 + y / 2) as u8, 128]
                };
                px.extend_from_slice(&c);
            }
        }
        px
    }

    /// The second test picture (SPEC.md §5): the first with four patches
    /// of saturated or dark colour, where the channel-aware headroom
    /// works.
    fn test_picture_ch() -> Vec<u8> {
        let mut px = test_picture();
        let mut paint = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, c: [u8; 3]| {
            for y in rows {
                for x in cols.clone() {
                    px[3 * (y * 256 + x)..3 * (y * 256 + x) + 3].copy_from_slice(&c);
                }
            }
        };
        paint(0..64, 192..256, [255, 40, 40]);
        paint(192..256, 0..64, [250, 215, 30]);
        paint(96..160, 96..160, [255, 0, 0]);
        paint(96..160, 0..64, [4, 60, 120]);
        px
    }

    /// Marks `px` with the test message; Σ|Δ|, ΣΔ, max|Δ| and the SHA-256
    /// of the output.
    fn mark_and_measure(px: &mut [u8]) -> ((i64, i64, i64), String) {
        let original = px.to_vec();
        embed(px, 256, 256, TEST_MESSAGE);
        let diff: Vec<i64> = px
            .iter()
            .zip(&original)
            .map(|(&a, &b)| i64::from(a) - i64::from(b))
            .collect();
        let abs: i64 = diff.iter().map(|d| d.abs()).sum();
        let sum: i64 = diff.iter().sum();
        let max = diff.iter().map(|d| d.abs()).max().unwrap();
        let sha: String = {
            use sha2::Digest;
            sha2::Sha256::digest(&*px)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        ((abs, sum, max), sha)
    }

    const TEST_MESSAGE: u64 = 0x1234_dead_beef_de6b;

    /// The reference's embed and detect test vectors (SPEC.md §5),
    /// bit-exact with the reference (same f64 operations in the same
    /// order); the sums say how far a mismatch is.
    #[test]
    fn the_reference_test_pictures_are_marked_and_read_alike() {
        let mut px = test_picture();
        let (sums, sha) = mark_and_measure(&mut px);
        assert_eq!(sums, (175_260, -4_338, 4));
        assert_eq!(
            sha,
            "8fcb36a7cc79ad5cf5c2fa5d74172c2b90bed417dcf22743bf76c3e14cf5d8e7"
        );
        let found = detect(&px, 256, 256, |m| (m == TEST_MESSAGE).then_some(m)).unwrap();
        assert_eq!(found.bit_errors, 0);
        assert!((found.scale - 0.9983).abs() < 1e-3, "{found:?}");
        assert!((found.sync_z - 13.59).abs() < 0.05, "{found:?}");

        let mut px = test_picture_ch();
        let (sums, sha) = mark_and_measure(&mut px);
        assert_eq!(sums, (246_878, -4_888, 6));
        assert_eq!(
            sha,
            "a1cf729099e6b02aa6315b1c55cf9c9995ae69a7aeb92618126ecbb91ebef96b"
        );
        let found = detect(&px, 256, 256, |m| (m == TEST_MESSAGE).then_some(m)).unwrap();
        assert_eq!(found.bit_errors, 0);
        assert!((found.sync_z - 12.99).abs() < 0.05, "{found:?}");
    }

    #[test]
    fn a_mark_reads_back_at_scale_one_and_an_unmarked_image_does_not() {
        for seed in 0..3 {
            let mut px = emoji(seed);
            assert!(detect(&px, 256, 256, Some).is_none());
            let message = 0x1234_dead_beef_0000 | u64::from(seed);
            embed(&mut px, 256, 256, message);
            let found = detect(&px, 256, 256, |m| (m == message).then_some(m)).unwrap();
            assert_eq!(found.value, message);
            assert!((found.scale - 1.0).abs() < 0.02, "{found:?}");
        }
    }
}
