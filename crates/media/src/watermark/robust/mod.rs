//! easelmark v1: the robust watermark (`docs/watermark.md`, and the
//! reference implementation and specification in
//! `tools/watermark/robust/`).
//!
//! # Layout
//! - `keys`: the SHA-256 tables (cell layout, sync chips, whitening).
//! - `bch`: BCH(127, 64) with Chase-II soft decoding.
//! - `tile`: the 64×64 periodic tile of sync and code cells.
//! - `plane`: luma, box means, windows.
//! - `embed`: the masked additive embedding.
//! - `detect`: scale search, sync correlation, cell reading, decoding.

mod bch;
mod detect;
mod embed;
mod keys;
mod plane;
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

    /// The reference's embed and detect test vector (SPEC.md §5): a
    /// gradient with a white and a black corner square.
    #[test]
    fn the_reference_test_picture_is_marked_and_read_alike() {
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
        let original = px.clone();
        let message = 0x1234_dead_beef_de6b;
        embed(&mut px, 256, 256, message);
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
            sha2::Sha256::digest(&px)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        // Bit-exact with the reference (same f64 operations in the same
        // order); the sums say how far a mismatch is.
        assert_eq!((abs, sum, max), (265_314, -840, 5));
        assert_eq!(
            sha,
            "88a3d44f4c9e7d9108c72be0b44d2a1fd82ed13962058490dcb196822f0209a2"
        );
        let found = detect(&px, 256, 256, |m| (m == message).then_some(m)).unwrap();
        assert_eq!(found.bit_errors, 0);
        assert!((found.scale - 0.9983).abs() < 1e-3, "{found:?}");
        assert!((found.sync_z - 13.05).abs() < 0.05, "{found:?}");
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
