//! The JPEG round trip of the open_nsfw reference, without the file: what
//! Pillow's `save(format="JPEG")` then `open` does to the pixels with
//! libjpeg-turbo's defaults (quality 75, 4:2:0 chroma, the integer "islow"
//! DCT, fancy upsampling), computed directly.
//!
//! The network was trained on decoded JPEGs and its scores move by a few
//! percent without the round trip, so the reference keeps it. Entropy coding
//! is lossless, so only the lossy stages are reproduced, each with
//! libjpeg-turbo's integer arithmetic: RGB->YCbCr (`jccolor.c`), 2x2 chroma
//! averaging with alternating bias (`jcsample.c` `h2v2_downsample`), the
//! forward DCT (`jfdctint.c`), quantisation by reciprocal multiplication
//! (`jcdctmgr.c` `compute_reciprocal`/`quantize`, 16-bit `DCTELEM` as in SIMD
//! builds), the inverse DCT (`jidctint.c` `jpeg_idct_islow`), triangle
//! chroma upsampling (`jdsample.c` `h2v2_fancy_upsample`) and YCbCr->RGB
//! (`jdcolor.c`). Sources: libjpeg-turbo at
//! <https://github.com/libjpeg-turbo/libjpeg-turbo/tree/8a99315b/src>.
//! The fixtures from `tools/policy/nsfw_reference.py` (Pillow 13.0 with
//! libjpeg-turbo 3.2) match this bit for bit.

use easel_core::RgbImage;

/// libjpeg's standard luminance table (ITU T.81 Annex K), natural order.
const LUMINANCE: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/// libjpeg's standard chrominance table, natural order.
const CHROMINANCE: [u16; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];

/// Pillow's default JPEG quality (libjpeg's `jpeg_set_defaults`).
const QUALITY: u32 = 75;

/// A table scaled to [`QUALITY`] as `jpeg_set_quality(.., force_baseline)`.
fn scaled(table: &[u16; 64]) -> [i32; 64] {
    let scale = if QUALITY < 50 {
        5000 / QUALITY
    } else {
        200 - QUALITY * 2
    };
    table.map(|q| ((u32::from(q) * scale + 50) / 100).clamp(1, 255) as i32)
}

/// Fixed point with 16 fractional bits, as `FIX` in `jccolor.c`/`jdcolor.c`.
const fn fix16(x: f64) -> i32 {
    (x * 65536.0 + 0.5) as i32
}

/// Fixed point with 13 fractional bits (`CONST_BITS`) of the DCTs.
const F0_298: i32 = 2446;
const F0_390: i32 = 3196;
const F0_541: i32 = 4433;
const F0_765: i32 = 6270;
const F0_899: i32 = 7373;
const F1_175: i32 = 9633;
const F1_501: i32 = 12299;
const F1_847: i32 = 15137;
const F1_961: i32 = 16069;
const F2_053: i32 = 16819;
const F2_562: i32 = 20995;
const F3_072: i32 = 25172;

/// libjpeg's `DESCALE`: shift right by `n`, rounding half up.
fn descale(x: i32, n: u32) -> i32 {
    (x + (1 << (n - 1))) >> n
}

/// One 8-point pass of `jpeg_fdct_islow` over `d[at(0)]..d[at(7)]`.
fn fdct_pass(d: &mut [i32; 64], at: impl Fn(usize) -> usize, first: bool) {
    let v = |i: usize| d[at(i)];
    let (tmp0, tmp7) = (v(0) + v(7), v(0) - v(7));
    let (tmp1, tmp6) = (v(1) + v(6), v(1) - v(6));
    let (tmp2, tmp5) = (v(2) + v(5), v(2) - v(5));
    let (tmp3, tmp4) = (v(3) + v(4), v(3) - v(4));
    let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
    let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);
    // Rows keep PASS1_BITS (2) extra bits; columns remove them.
    let shift = if first { 13 - 2 } else { 13 + 2 };
    let (o0, o4) = if first {
        ((tmp10 + tmp11) << 2, (tmp10 - tmp11) << 2)
    } else {
        (descale(tmp10 + tmp11, 2), descale(tmp10 - tmp11, 2))
    };
    let z1 = (tmp12 + tmp13) * F0_541;
    let o2 = descale(z1 + tmp13 * F0_765, shift);
    let o6 = descale(z1 - tmp12 * F1_847, shift);

    let (z1, z2, z3, z4) = (tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7);
    let z5 = (z3 + z4) * F1_175;
    let (tmp4, tmp5, tmp6, tmp7) = (tmp4 * F0_298, tmp5 * F2_053, tmp6 * F3_072, tmp7 * F1_501);
    let (z1, z2) = (-z1 * F0_899, -z2 * F2_562);
    let (z3, z4) = (-z3 * F1_961 + z5, -z4 * F0_390 + z5);
    let o7 = descale(tmp4 + z1 + z3, shift);
    let o5 = descale(tmp5 + z2 + z4, shift);
    let o3 = descale(tmp6 + z2 + z3, shift);
    let o1 = descale(tmp7 + z1 + z4, shift);
    for (i, o) in [o0, o1, o2, o3, o4, o5, o6, o7].into_iter().enumerate() {
        d[at(i)] = o;
    }
}

/// One 8-point pass of `jpeg_idct_islow` reading `input(i)`, returning the
/// eight outputs descaled by `shift`.
fn idct_pass(input: impl Fn(usize) -> i32, shift: u32) -> [i32; 8] {
    let (z2, z3) = (input(2), input(6));
    let z1 = (z2 + z3) * F0_541;
    let tmp2 = z1 - z3 * F1_847;
    let tmp3 = z1 + z2 * F0_765;
    let tmp0 = (input(0) + input(4)) << 13;
    let tmp1 = (input(0) - input(4)) << 13;
    let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
    let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);

    let (t0, t1, t2, t3) = (input(7), input(5), input(3), input(1));
    let (z1, z2, z3, z4) = (t0 + t3, t1 + t2, t0 + t2, t1 + t3);
    let z5 = (z3 + z4) * F1_175;
    let (z1, z2) = (-z1 * F0_899, -z2 * F2_562);
    let (z3, z4) = (-z3 * F1_961 + z5, -z4 * F0_390 + z5);
    let t0 = t0 * F0_298 + z1 + z3;
    let t1 = t1 * F2_053 + z2 + z4;
    let t2 = t2 * F3_072 + z2 + z3;
    let t3 = t3 * F1_501 + z1 + z4;
    [
        descale(tmp10 + t3, shift),
        descale(tmp11 + t2, shift),
        descale(tmp12 + t1, shift),
        descale(tmp13 + t0, shift),
        descale(tmp13 - t0, shift),
        descale(tmp12 - t1, shift),
        descale(tmp11 - t2, shift),
        descale(tmp10 - t3, shift),
    ]
}

/// Quantises one DCT output (scaled by 8) the way libjpeg-turbo's SIMD
/// builds do: multiply by a 16-bit reciprocal of `8 * q` after adding a
/// rounding correction (`compute_reciprocal` then `quantize`).
fn quantize(x: i32, q: i32) -> i32 {
    let divisor = (q << 3) as u32;
    let b = 31 - divisor.leading_zeros();
    let mut r = 16 + b;
    let mut reciprocal = (1u32 << r) / divisor;
    let remainder = (1u32 << r) % divisor;
    let mut correction = divisor / 2;
    if remainder == 0 {
        reciprocal >>= 1;
        r -= 1;
    } else if remainder <= divisor / 2 {
        correction += 1;
    } else {
        reciprocal += 1;
    }
    let magnitude = ((x.unsigned_abs() + correction) * reciprocal) >> r;
    if x < 0 {
        -(magnitude as i32)
    } else {
        magnitude as i32
    }
}

/// Compresses and decompresses one plane (width and height multiples of 8)
/// with the quantisation table `q`, in place.
fn round_trip_plane(plane: &mut [u8], width: usize, q: &[i32; 64]) {
    let height = plane.len() / width;
    for by in (0..height).step_by(8) {
        for bx in (0..width).step_by(8) {
            let mut block = [0i32; 64];
            for (i, v) in block.iter_mut().enumerate() {
                *v = i32::from(plane[(by + i / 8) * width + bx + i % 8]) - 128;
            }
            for row in 0..8 {
                fdct_pass(&mut block, |i| row * 8 + i, true);
            }
            for col in 0..8 {
                fdct_pass(&mut block, |i| i * 8 + col, false);
            }
            // Quantise, then dequantise as the decoder does.
            for (v, &qv) in block.iter_mut().zip(q) {
                *v = quantize(*v, qv) * qv;
            }
            // Columns first, keeping PASS1_BITS; then rows, removing them and
            // the DCT's factor of 8.
            let mut work = [0i32; 64];
            for col in 0..8 {
                let out = idct_pass(|i| block[i * 8 + col], 13 - 2);
                for (i, o) in out.into_iter().enumerate() {
                    work[i * 8 + col] = o;
                }
            }
            for row in 0..8 {
                let out = idct_pass(|i| work[row * 8 + i], 13 + 2 + 3);
                for (i, o) in out.into_iter().enumerate() {
                    plane[(by + row) * width + bx + i] = (o + 128).clamp(0, 255) as u8;
                }
            }
        }
    }
}

/// 2x2 averaging with the bias alternating 1, 2 along each row
/// (`h2v2_downsample`).
fn downsample(plane: &[u8], width: usize) -> Vec<u8> {
    let height = plane.len() / width;
    let mut out = Vec::with_capacity(plane.len() / 4);
    for y in (0..height).step_by(2) {
        for x in (0..width).step_by(2) {
            let p = |dy: usize, dx: usize| u32::from(plane[(y + dy) * width + x + dx]);
            let bias = if (x / 2) % 2 == 0 { 1 } else { 2 };
            out.push(((p(0, 0) + p(0, 1) + p(1, 0) + p(1, 1) + bias) >> 2) as u8);
        }
    }
    out
}

/// Triangle ("fancy") 2x2 upsampling (`h2v2_fancy_upsample`): 9/16 of the
/// nearest sample, 3/16 of each neighbour, 1/16 of the diagonal, edges
/// replicated.
fn upsample(plane: &[u8], width: usize) -> Vec<u8> {
    let height = plane.len() / width;
    let mut out = vec![0u8; plane.len() * 4];
    let at = |y: usize, x: usize| i32::from(plane[y * width + x]);
    for y in 0..height {
        for v in 0..2 {
            // The next-nearest row: above for the upper output row, below for the lower.
            let other = if v == 0 {
                y.saturating_sub(1)
            } else {
                (y + 1).min(height - 1)
            };
            let sums: Vec<i32> = (0..width).map(|x| at(y, x) * 3 + at(other, x)).collect();
            let row = &mut out[(2 * y + v) * 2 * width..(2 * y + v + 1) * 2 * width];
            for x in 0..width {
                let this = sums[x];
                row[2 * x] = if x == 0 {
                    (this * 4 + 8) >> 4
                } else {
                    (this * 3 + sums[x - 1] + 8) >> 4
                } as u8;
                row[2 * x + 1] = if x == width - 1 {
                    (this * 4 + 7) >> 4
                } else {
                    (this * 3 + sums[x + 1] + 7) >> 4
                } as u8;
            }
        }
    }
    out
}

/// Returns `image` after Pillow's default JPEG encode and decode. Width and
/// height must be multiples of 16 (the pipeline only passes 256x256), so no
/// edge padding is needed.
pub(crate) fn round_trip(image: &RgbImage) -> RgbImage {
    let (width, height) = (image.width as usize, image.height as usize);
    debug_assert!(width % 16 == 0 && height % 16 == 0);
    let n = width * height;
    let (mut y, mut cb, mut cr) = (vec![0u8; n], vec![0u8; n], vec![0u8; n]);
    const HALF: i32 = 1 << 15;
    const CENTER: i32 = 128 << 16;
    for (i, px) in image.pixels.chunks_exact(3).enumerate() {
        let (r, g, b) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
        y[i] = ((fix16(0.299) * r + fix16(0.587) * g + fix16(0.114) * b + HALF) >> 16) as u8;
        cb[i] = ((-fix16(0.16874) * r - fix16(0.33126) * g + fix16(0.5) * b + CENTER + HALF - 1)
            >> 16) as u8;
        cr[i] = ((fix16(0.5) * r - fix16(0.41869) * g - fix16(0.08131) * b + CENTER + HALF - 1)
            >> 16) as u8;
    }
    let (luma, chroma) = (scaled(&LUMINANCE), scaled(&CHROMINANCE));
    round_trip_plane(&mut y, width, &luma);
    let mut chroma_planes = [downsample(&cb, width), downsample(&cr, width)];
    for plane in &mut chroma_planes {
        round_trip_plane(plane, width / 2, &chroma);
    }
    let [cb, cr] = chroma_planes.map(|p| upsample(&p, width / 2));

    let mut pixels = Vec::with_capacity(n * 3);
    for i in 0..n {
        let (l, x, z) = (
            i32::from(y[i]),
            i32::from(cb[i]) - 128,
            i32::from(cr[i]) - 128,
        );
        let red = (fix16(1.402) * z + HALF) >> 16;
        let blue = (fix16(1.772) * x + HALF) >> 16;
        let green = (-fix16(0.71414) * z - fix16(0.34414) * x + HALF) >> 16;
        for c in [l + red, l + green, l + blue] {
            pixels.push(c.clamp(0, 255) as u8);
        }
    }
    RgbImage {
        width: image.width,
        height: image.height,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_75_halves_the_standard_tables() {
        assert_eq!(scaled(&LUMINANCE)[..4], [8, 6, 5, 8]);
        assert_eq!(scaled(&CHROMINANCE)[63], 50);
    }

    #[test]
    fn reciprocal_quantisation_rounds_to_nearest() {
        // 8 * q = 64: 31/64 rounds to 0, 32/64 up to 1, symmetric for negatives.
        assert_eq!(quantize(31, 8), 0);
        assert_eq!(quantize(32, 8), 1);
        assert_eq!(quantize(-32, 8), -1);
        assert_eq!(quantize(1000, 5), 25);
    }

    #[test]
    fn a_mid_grey_image_survives_unchanged() {
        let image = RgbImage {
            width: 16,
            height: 16,
            pixels: vec![128; 16 * 16 * 3],
        };
        assert_eq!(round_trip(&image).pixels, image.pixels);
    }
}
