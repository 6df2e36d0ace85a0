//! "Only masked" inpainting (the AUTOMATIC1111 web UI's
//! `inpaint_full_res`): the engine sees only a region of the initial image
//! around the mask, scaled to the job's size, and its result is scaled back
//! and pasted into the initial image through the mask. A small masked area
//! thus gets the model's whole resolution, and the output keeps the
//! initial image's size. The region is chosen at the edge
//! ([`easel_core::GenerationParams::inpaint_area`]).

use easel_core::{Mask, Region, RgbImage, Size};
use easel_media::MediaError;

use crate::pipeline::InitInput;

/// The engine's initial image and mask for `area` of `init`, at `size`.
pub fn engine_input(
    init: &InitInput,
    area: Region,
    size: Size,
) -> Result<(RgbImage, Option<Mask>), MediaError> {
    let area = clamp(area, init.image.width, init.image.height);
    let image = easel_media::resize(&crop(&init.image, area), size.width, size.height)?;
    let mask = match &init.mask {
        None => None,
        Some(mask) => {
            let grey = crop(&grey_of(mask), area);
            let grey = easel_media::resize(&grey, size.width, size.height)?;
            let values: Vec<u8> = grey.pixels.chunks_exact(3).map(|p| p[0]).collect();
            Some(
                Mask::from_u8(size.width, size.height, &values).map_err(|e| {
                    MediaError::InvalidDimensions {
                        reason: e.to_string(),
                    }
                })?,
            )
        }
    };
    Ok((image, mask))
}

/// `generated` (the engine's output for `area`) scaled back to the area
/// and blended into the initial image by the mask: where the mask is 0 the
/// initial pixels stay exactly as they were.
pub fn paste(init: &InitInput, area: Region, generated: &RgbImage) -> Result<RgbImage, MediaError> {
    let area = clamp(area, init.image.width, init.image.height);
    let patch = easel_media::resize(generated, area.width, area.height)?;
    let mut out = init.image.clone();
    let w = out.width as usize;
    for y in 0..area.height as usize {
        for x in 0..area.width as usize {
            let (ox, oy) = (area.x as usize + x, area.y as usize + y);
            let m = init
                .mask
                .as_ref()
                .map_or(1.0, |mask| mask.values()[oy * w + ox]);
            if m <= 0.0 {
                continue;
            }
            let o = (oy * w + ox) * 3;
            let p = (y * area.width as usize + x) * 3;
            for c in 0..3 {
                let kept = f32::from(out.pixels[o + c]);
                let new = f32::from(patch.pixels[p + c]);
                out.pixels[o + c] = (kept + (new - kept) * m).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    Ok(out)
}

/// `area` within a `width`×`height` image, at least one pixel.
fn clamp(area: Region, width: u32, height: u32) -> Region {
    let x = area.x.min(width.saturating_sub(1));
    let y = area.y.min(height.saturating_sub(1));
    Region {
        x,
        y,
        width: area.width.clamp(1, width - x),
        height: area.height.clamp(1, height - y),
    }
}

fn crop(image: &RgbImage, area: Region) -> RgbImage {
    let mut pixels = Vec::with_capacity((area.width * area.height * 3) as usize);
    for y in area.y..area.y + area.height {
        let start = ((y * image.width + area.x) * 3) as usize;
        pixels.extend_from_slice(&image.pixels[start..start + (area.width * 3) as usize]);
    }
    RgbImage {
        width: area.width,
        height: area.height,
        pixels,
    }
}

fn grey_of(mask: &Mask) -> RgbImage {
    RgbImage {
        width: mask.width(),
        height: mask.height(),
        pixels: mask
            .values()
            .iter()
            .flat_map(|&v| {
                let g = (v * 255.0).round().clamp(0.0, 255.0) as u8;
                [g, g, g]
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32) -> RgbImage {
        RgbImage {
            width,
            height,
            pixels: (0..width * height)
                .flat_map(|i| [(i % 251) as u8, (i / width) as u8, 77])
                .collect(),
        }
    }

    /// 40×30, with a 6×4 block at (20, 10) to redraw.
    fn init() -> InitInput {
        let (w, h) = (40, 30);
        let values: Vec<u8> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                if (20..26).contains(&x) && (10..14).contains(&y) {
                    255
                } else {
                    0
                }
            })
            .collect();
        InitInput {
            image: gradient(w, h),
            mask: Some(Mask::from_u8(w, h, &values).unwrap()),
        }
    }

    const AREA: Region = Region {
        x: 16,
        y: 6,
        width: 16,
        height: 12,
    };

    #[test]
    fn the_engine_sees_the_area_at_the_jobs_size() {
        let size = Size {
            width: 32,
            height: 24,
        };
        let (image, mask) = engine_input(&init(), AREA, size).unwrap();
        assert_eq!((image.width, image.height), (32, 24));
        let mask = mask.unwrap();
        assert_eq!((mask.width(), mask.height()), (32, 24));
        // The block (20..26, 10..14) is (4..10, 4..8) of the area, twice
        // as large at the job's size.
        // (Lanczos rings a little at the block's edges; the engine
        // binarises the mask at one half.)
        assert!(mask.values()[12 * 32 + 12] > 0.9);
        assert!(mask.values()[2 * 32 + 2] < 0.05);
    }

    #[test]
    fn only_the_masked_pixels_change_when_pasted_back() {
        let init = init();
        let white = RgbImage {
            width: 32,
            height: 24,
            pixels: vec![255; 32 * 24 * 3],
        };
        let out = paste(&init, AREA, &white).unwrap();
        assert_eq!((out.width, out.height), (40, 30));
        for y in 0..30usize {
            for x in 0..40usize {
                let i = (y * 40 + x) * 3;
                let inside = (20..26).contains(&x) && (10..14).contains(&y);
                if inside {
                    assert_eq!(&out.pixels[i..i + 3], &[255, 255, 255], "({x}, {y})");
                } else {
                    assert_eq!(
                        &out.pixels[i..i + 3],
                        &init.image.pixels[i..i + 3],
                        "({x}, {y})"
                    );
                }
            }
        }
    }

    #[test]
    fn an_area_past_the_edge_is_clamped() {
        let area = clamp(
            Region {
                x: 35,
                y: 25,
                width: 20,
                height: 20,
            },
            40,
            30,
        );
        assert_eq!((area.x, area.y, area.width, area.height), (35, 25, 5, 5));
    }
}
