//! Inpainting masks from uploads, in each API's convention, checked and
//! brought to the output size.
//!
//! - OpenAI (`/v1/images/edits`, field `mask`): a PNG with an alpha
//!   channel, the size of the image; its **transparent** pixels are
//!   redrawn.
//! - AUTOMATIC1111 (`/sdapi/v1/img2img`, field `mask`): an image the size
//!   of the initial image; **white** is redrawn (black with
//!   `inpainting_mask_invert: 1`); its alpha channel is used instead when
//!   it has transparent pixels, as the web UI does; `mask_blur` blurs it
//!   (a Gaussian of that standard deviation in pixels) before the engine
//!   binarises it at one half.
//!
//! A mask of another size than its image, or an OpenAI mask without
//! transparency, is 400 `invalid_mask` naming the field; nothing is stored.

use easel_core::{Mask, Region, RgbImage, Size};

use crate::error::ApiError;
use crate::state::AppState;

/// An upload decoded at its own size, with its alpha channel.
pub struct Upload {
    /// The pixels (transparency composited onto white).
    pub image: RgbImage,
    /// The alpha channel, when the file has one.
    pub alpha: Option<Vec<u8>>,
}

/// Decodes an untrusted upload under the server's limits.
pub fn decode(state: &AppState, bytes: &[u8]) -> Result<Upload, ApiError> {
    let limits = easel_media::DecodeLimits {
        max_pixels: state.config.limits.max_upload_pixels,
        max_bytes: state.config.server.body_limit_bytes,
        ..Default::default()
    };
    let (image, alpha) = easel_media::decode_untrusted_with_alpha(bytes, &limits)
        .map_err(crate::error::from_media_error)?;
    Ok(Upload { image, alpha })
}

/// `image` at `size` (unchanged when it already is).
pub fn fit(image: RgbImage, size: Size) -> Result<RgbImage, ApiError> {
    if (image.width, image.height) == (size.width, size.height) {
        return Ok(image);
    }
    easel_media::resize(&image, size.width, size.height).map_err(crate::error::from_media_error)
}

fn same_size(field: &'static str, mask: &RgbImage, image: &RgbImage) -> Result<(), ApiError> {
    if (mask.width, mask.height) != (image.width, image.height) {
        return Err(ApiError::invalid(
            "invalid_mask",
            field,
            format!(
                "{field} is {}x{}, but the image is {}x{}: they must be the same size",
                mask.width, mask.height, image.width, image.height
            ),
        ));
    }
    Ok(())
}

/// An OpenAI mask for `image` (both at their uploaded size), at `size`.
pub fn openai(mask: Upload, image: &RgbImage, size: Size) -> Result<Mask, ApiError> {
    same_size("mask", &mask.image, image)?;
    let Some(alpha) = mask.alpha else {
        return Err(ApiError::invalid(
            "invalid_mask",
            "mask",
            "mask must have an alpha channel: its transparent pixels mark what to edit",
        ));
    };
    let redraw: Vec<u8> = alpha.iter().map(|a| 255 - a).collect();
    to_mask(grey(mask.image.width, mask.image.height, &redraw), size)
}

/// How the web UI treats its mask.
#[derive(Debug, Clone, Copy, Default)]
pub struct A1111Mask {
    /// Black is redrawn instead of white.
    pub invert: bool,
    /// Gaussian blur, standard deviation in pixels, across and down.
    pub blur: (f32, f32),
}

/// An AUTOMATIC1111 mask for `image` (both at their uploaded size), at `size`.
pub fn a1111(mask: Upload, image: &RgbImage, size: Size, how: A1111Mask) -> Result<Mask, ApiError> {
    same_size("mask", &mask.image, image)?;
    let (w, h) = (mask.image.width, mask.image.height);
    let mut values: Vec<u8> = match mask.alpha.filter(|a| a.iter().any(|&v| v != 255)) {
        Some(alpha) => alpha,
        None => mask
            .image
            .pixels
            .chunks_exact(3)
            .map(|p| {
                // ITU-R 601 luma, as an 8-bit greyscale conversion does.
                let l =
                    (299 * u32::from(p[0]) + 587 * u32::from(p[1]) + 114 * u32::from(p[2]) + 500)
                        / 1000;
                l as u8
            })
            .collect(),
    };
    if how.invert {
        values.iter_mut().for_each(|v| *v = 255 - *v);
    }
    let values = blur(&values, w as usize, h as usize, how.blur);
    to_mask(grey(w, h, &values), size)
}

fn grey(width: u32, height: u32, values: &[u8]) -> RgbImage {
    RgbImage {
        width,
        height,
        pixels: values.iter().flat_map(|&v| [v, v, v]).collect(),
    }
}

fn to_mask(grey: RgbImage, size: Size) -> Result<Mask, ApiError> {
    let grey = fit(grey, size)?;
    let values: Vec<u8> = grey.pixels.chunks_exact(3).map(|p| p[0]).collect();
    Mask::from_u8(grey.width, grey.height, &values)
        .map_err(|e| ApiError::invalid("invalid_mask", "mask", e.to_string()))
}

/// A separable Gaussian blur (σ across, σ down; 0 leaves that axis),
/// edges clamped.
fn blur(values: &[u8], w: usize, h: usize, (sx, sy): (f32, f32)) -> Vec<u8> {
    let mut data: Vec<f32> = values.iter().map(|&v| f32::from(v)).collect();
    if sx > 0.0 {
        data = blur_axis(&data, w, h, sx, true);
    }
    if sy > 0.0 {
        data = blur_axis(&data, w, h, sy, false);
    }
    data.iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect()
}

fn blur_axis(data: &[f32], w: usize, h: usize, sigma: f32, across: bool) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i as f32).powi(2) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let mut out = vec![0.0; data.len()];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (k, weight) in kernel.iter().enumerate() {
                let d = k as isize - radius;
                let (sx, sy) = if across {
                    ((x as isize + d).clamp(0, w as isize - 1) as usize, y)
                } else {
                    (x, (y as isize + d).clamp(0, h as isize - 1) as usize)
                };
                acc += weight * data[sy * w + sx];
            }
            out[y * w + x] = acc / total;
        }
    }
    out
}

/// The web UI's `inpainting_fill: 0` ("fill"): the part to redraw is first
/// painted with the colours around it, so the model starts from the
/// surroundings rather than from what was there. Each masked pixel takes
/// the mean of the kept pixels within a square window, the smallest of
/// 3, 9, 33, 129 and 513 pixels across that holds any.
pub fn fill(image: &RgbImage, mask: &Mask) -> RgbImage {
    let (w, h) = (image.width as usize, image.height as usize);
    let keep: Vec<bool> = (0..w * h).map(|i| !mask.repaints(i)).collect();
    // Summed-area tables of the kept pixels' colours and count.
    let mut sums = vec![[0u64; 4]; (w + 1) * (h + 1)];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let mut cell = [0u64; 4];
            if keep[i] {
                for (c, slot) in cell.iter_mut().take(3).enumerate() {
                    *slot = u64::from(image.pixels[3 * i + c]);
                }
                cell[3] = 1;
            }
            let at = |yy: usize, xx: usize| sums[yy * (w + 1) + xx];
            let (up, left, diag) = (at(y, x + 1), at(y + 1, x), at(y, x));
            let mut total = [0u64; 4];
            for c in 0..4 {
                total[c] = cell[c] + up[c] + left[c] - diag[c];
            }
            sums[(y + 1) * (w + 1) + x + 1] = total;
        }
    }
    let window = |x: usize, y: usize, r: usize| {
        let (x0, y0) = (x.saturating_sub(r), y.saturating_sub(r));
        let (x1, y1) = ((x + r + 1).min(w), (y + r + 1).min(h));
        let at = |yy: usize, xx: usize| sums[yy * (w + 1) + xx];
        std::array::from_fn::<u64, 4, _>(|c| {
            at(y1, x1)[c] + at(y0, x0)[c] - at(y0, x1)[c] - at(y1, x0)[c]
        })
    };
    let mut out = image.clone();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if keep[i] {
                continue;
            }
            for r in [1usize, 4, 16, 64, 256] {
                let t = window(x, y, r);
                let count = t[3];
                let mean = |colour: u64| (colour + count / 2).checked_div(count);
                if let (Some(r), Some(g), Some(b)) = (mean(t[0]), mean(t[1]), mean(t[2])) {
                    out.pixels[3 * i..3 * i + 3].copy_from_slice(&[r as u8, g as u8, b as u8]);
                    break;
                }
            }
        }
    }
    out
}

/// The region "only masked" inpainting generates (the web UI's
/// `inpaint_full_res`): the bounding box of the mask's nonzero pixels,
/// `padding` pixels wider on each side, then grown on its short side to
/// the output's aspect ratio (shifted, not cut, at the image's edges), all
/// within the image. An empty mask gives the whole image.
pub fn only_masked_region(mask: &Mask, padding: u32, size: Size) -> Region {
    let (w, h) = (mask.width(), mask.height());
    let values = mask.values();
    let (mut left, mut top, mut right, mut bottom) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if values[(y * w + x) as usize] > 0.5 / 255.0 {
                left = left.min(x);
                right = right.max(x + 1);
                top = top.min(y);
                bottom = bottom.max(y + 1);
            }
        }
    }
    if right == 0 {
        return Region {
            x: 0,
            y: 0,
            width: w,
            height: h,
        };
    }
    let (mut x0, mut x1) = (left.saturating_sub(padding), (right + padding).min(w));
    let (mut y0, mut y1) = (top.saturating_sub(padding), (bottom + padding).min(h));
    // Grow the short side to the output's aspect ratio, centred.
    let target = f64::from(size.width) / f64::from(size.height);
    let (rw, rh) = (f64::from(x1 - x0), f64::from(y1 - y0));
    if rw / rh > target {
        let want = ((rw / target).round() as u32).min(h);
        (y0, y1) = widen(y0, y1, want, h);
    } else {
        let want = ((rh * target).round() as u32).min(w);
        (x0, x1) = widen(x0, x1, want, w);
    }
    Region {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    }
}

/// `[lo, hi)` grown to `want` (at most `limit`) around its centre, shifted
/// back inside `[0, limit)` where it would cross an edge.
fn widen(lo: u32, hi: u32, want: u32, limit: u32) -> (u32, u32) {
    let have = hi - lo;
    if want <= have {
        return (lo, hi);
    }
    let grow = want - have;
    let lo = i64::from(lo) - i64::from(grow / 2);
    let mut hi = lo + i64::from(want);
    let mut lo = lo;
    if hi > i64::from(limit) {
        lo -= hi - i64::from(limit);
        hi = i64::from(limit);
    }
    if lo < 0 {
        hi -= lo;
        lo = 0;
    }
    (lo as u32, hi.min(i64::from(limit)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rgb(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> RgbImage {
        let f = &f;
        let pixels = (0..h)
            .flat_map(|y| (0..w).flat_map(move |x| f(x, y)))
            .collect::<Vec<_>>();
        RgbImage {
            width: w,
            height: h,
            pixels,
        }
    }

    #[test]
    fn openai_masks_redraw_transparent_pixels_and_need_alpha() {
        let image = rgb(8, 8, |_, _| [9, 9, 9]);
        let alpha: Vec<u8> = (0..64).map(|i| if i % 8 < 4 { 0 } else { 255 }).collect();
        let mask = openai(
            Upload {
                image: rgb(8, 8, |_, _| [0, 0, 0]),
                alpha: Some(alpha),
            },
            &image,
            Size::new(8, 8).unwrap(),
        )
        .unwrap();
        assert!(mask.repaints(0) && mask.repaints(3) && !mask.repaints(4) && !mask.repaints(7));
        let e = openai(
            Upload {
                image: rgb(8, 8, |_, _| [0, 0, 0]),
                alpha: None,
            },
            &image,
            Size::new(8, 8).unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "invalid_mask");
        let e = openai(
            Upload {
                image: rgb(2, 8, |_, _| [0, 0, 0]),
                alpha: Some(vec![0; 16]),
            },
            &image,
            Size::new(8, 8).unwrap(),
        )
        .unwrap_err();
        assert!(
            e.message().contains("2x8") && e.message().contains("8x8"),
            "{e}"
        );
    }

    #[test]
    fn a1111_masks_redraw_white_invert_and_blur() {
        let image = rgb(8, 8, |_, _| [9, 9, 9]);
        let white_left = || Upload {
            image: rgb(8, 8, |x, _| if x < 4 { [255; 3] } else { [0; 3] }),
            alpha: None,
        };
        let size = Size::new(8, 8).unwrap();
        let m = a1111(white_left(), &image, size, A1111Mask::default()).unwrap();
        assert!(m.repaints(0) && !m.repaints(7));
        let m = a1111(
            white_left(),
            &image,
            size,
            A1111Mask {
                invert: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!m.repaints(0) && m.repaints(7));
        let m = a1111(
            white_left(),
            &image,
            size,
            A1111Mask {
                blur: (2.0, 2.0),
                ..Default::default()
            },
        )
        .unwrap();
        let v = m.values();
        assert!(
            v[3] < 1.0 && v[3] > 0.5 && v[4] > 0.0 && v[4] < 0.5,
            "{:?}",
            &v[..8]
        );
    }

    #[test]
    fn fill_paints_the_masked_part_with_its_surroundings() {
        let image = rgb(8, 1, |x, _| if x < 4 { [200, 0, 0] } else { [0, 0, 0] });
        let mask = Mask::from_u8(8, 1, &[0, 0, 0, 0, 255, 255, 255, 255]).unwrap();
        let filled = fill(&image, &mask);
        assert_eq!(&filled.pixels[..12], &image.pixels[..12]);
        // The masked pixels took the kept red.
        assert_eq!(&filled.pixels[21..24], &[200, 0, 0]);
    }

    fn block_mask(w: u32, h: u32, xs: std::ops::Range<u32>, ys: std::ops::Range<u32>) -> Mask {
        let values: Vec<u8> = (0..w * h)
            .map(|i| {
                if xs.contains(&(i % w)) && ys.contains(&(i / w)) {
                    255
                } else {
                    0
                }
            })
            .collect();
        Mask::from_u8(w, h, &values).unwrap()
    }

    fn region(x: u32, y: u32, width: u32, height: u32) -> Region {
        Region {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn the_only_masked_region_pads_the_box_and_takes_the_outputs_shape() {
        let square = Size {
            width: 16,
            height: 16,
        };
        let mask = block_mask(40, 30, 20..26, 10..14);
        // Box 20..26 × 10..14, padded by 2: 18..28 × 8..16, then as tall as wide.
        assert_eq!(only_masked_region(&mask, 2, square), region(18, 7, 10, 10));
        // At an edge the region shifts inside instead of shrinking.
        let wide = Size {
            width: 16,
            height: 8,
        };
        let edge = block_mask(40, 30, 36..40, 10..20);
        assert_eq!(only_masked_region(&edge, 0, wide), region(20, 10, 20, 10));
        // Never larger than the image; an empty mask is the whole image.
        let big = block_mask(40, 30, 0..40, 0..30);
        assert_eq!(only_masked_region(&big, 50, square), region(0, 0, 40, 30));
        let empty = block_mask(40, 30, 0..0, 0..0);
        assert_eq!(only_masked_region(&empty, 4, square), region(0, 0, 40, 30));
    }
}
