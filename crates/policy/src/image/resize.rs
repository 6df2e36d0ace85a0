//! Pillow's `Image.resize(..., resample=BILINEAR)` for 8-bit RGB, bit for bit.
//!
//! The open_nsfw reference resizes with Pillow, whose "bilinear" filter is a
//! triangle filter stretched by the scale factor when shrinking (so it
//! averages, unlike a plain two-tap interpolation), with coefficients in
//! 22-bit fixed point and a horizontal pass, rounded to 8 bits, before the
//! vertical one. Matching that exactly keeps our tensor identical to the
//! reference's. Ported from Pillow's `src/libImaging/Resample.c`
//! (`precompute_coeffs`, `normalize_coeffs_8bpc`, `ImagingResampleInner`) at
//! <https://github.com/python-pillow/Pillow/blob/01f132fb086af790cbd67cfb0ad9aaac607ef567/src/libImaging/Resample.c>.

use easel_core::RgbImage;

/// Fixed-point precision of the coefficients: 32 bits less 8 for the sample
/// and 2 for overflow, as in Pillow.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// One output sample's taps: the first input index and the integer weights.
struct Taps {
    start: usize,
    weights: Vec<i32>,
}

/// The triangle filter with support 1 (Pillow's `bilinear_filter`).
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Taps for resampling `in_size` samples to `out_size` (Pillow's
/// `precompute_coeffs` followed by `normalize_coeffs_8bpc`, over the whole
/// input: box = (0, in_size)).
fn taps(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's support (1.0) times the scale
    let inverse = 1.0 / filter_scale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero; negative values clamp to 0 anyway.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let raw: Vec<f64> = (xmin..xmax)
                .map(|x| triangle((x as f64 - center + 0.5) * inverse))
                .collect();
            let total: f64 = raw.iter().sum();
            let one = f64::from(1u32 << PRECISION_BITS);
            let weights = raw
                .into_iter()
                .map(|w| if total != 0.0 { w / total } else { w })
                .map(|w| {
                    if w < 0.0 {
                        (-0.5 + w * one) as i32
                    } else {
                        (0.5 + w * one) as i32
                    }
                })
                .collect();
            Taps {
                start: xmin,
                weights,
            }
        })
        .collect()
}

/// Pillow's `clip8`: drop the fraction and clamp to a byte.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes `image` (non-empty) to `width` x `height` exactly as Pillow's
/// bilinear `resize` does for an RGB image.
pub(crate) fn resize_bilinear(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    let (in_w, in_h) = (image.width as usize, image.height as usize);
    let rounding = 1i32 << (PRECISION_BITS - 1);
    let vertical = taps(in_h, height);

    // Horizontal pass over the rows the vertical pass will read.
    let (rows, first_row) = if width != in_w {
        let first = vertical[0].start;
        let last = vertical[height - 1].start + vertical[height - 1].weights.len();
        let horizontal = taps(in_w, width);
        let mut out = vec![0u8; (last - first) * width * 3];
        for (row, out_row) in out.chunks_exact_mut(width * 3).enumerate() {
            let src = &image.pixels[(first + row) * in_w * 3..(first + row + 1) * in_w * 3];
            for (xx, t) in horizontal.iter().enumerate() {
                for c in 0..3 {
                    let mut acc = rounding;
                    for (i, &k) in t.weights.iter().enumerate() {
                        acc += i32::from(src[(t.start + i) * 3 + c]) * k;
                    }
                    out_row[xx * 3 + c] = clip8(acc);
                }
            }
        }
        (out, first)
    } else {
        (image.pixels.clone(), 0)
    };

    if height == in_h {
        return RgbImage {
            width: width as u32,
            height: height as u32,
            pixels: rows,
        };
    }
    let stride = width * 3;
    let mut out = vec![0u8; height * stride];
    for (yy, t) in vertical.iter().enumerate() {
        let start = t.start - first_row;
        for x in 0..stride {
            let mut acc = rounding;
            for (i, &k) in t.weights.iter().enumerate() {
                acc += i32::from(rows[(start + i) * stride + x]) * k;
            }
            out[yy * stride + x] = clip8(acc);
        }
    }
    RgbImage {
        width: width as u32,
        height: height as u32,
        pixels: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resizing_to_the_same_size_is_the_identity() {
        let pixels: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let image = RgbImage {
            width: 5,
            height: 4,
            pixels: pixels.clone(),
        };
        assert_eq!(resize_bilinear(&image, 5, 4).pixels, pixels);
    }

    #[test]
    fn a_flat_image_stays_flat_at_any_size() {
        let image = RgbImage {
            width: 3,
            height: 7,
            pixels: [10, 200, 99].repeat(21),
        };
        for (w, h) in [(256, 256), (1, 1), (2, 9)] {
            let out = resize_bilinear(&image, w, h);
            assert_eq!(out.pixels, [10, 200, 99].repeat(w * h), "{w}x{h}");
        }
    }

    #[test]
    fn shrinking_by_two_averages_pairs() {
        // At scale 2 the triangle spans two input pixels each side of the
        // centre; at the edges the taps are cut and renormalised.
        let row = [0u8, 0, 0, 80, 80, 80, 160, 160, 160, 240, 240, 240];
        let image = RgbImage {
            width: 4,
            height: 1,
            pixels: row.to_vec(),
        };
        let out = resize_bilinear(&image, 2, 1);
        // Left edge: taps 0,1,2 with weights 3/7, 3/7, 1/7 -> (0*3+80*3+160)/7 = 57.1
        assert_eq!(out.pixels[0], 57);
        // Right edge: taps 1,2,3 with 1/7, 3/7, 3/7 -> (80+480+720)/7 = 182.9
        assert_eq!(out.pixels[3], 183);
    }
}
