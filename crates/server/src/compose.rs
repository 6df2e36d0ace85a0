//! Several input images of one edit (OpenAI's `image[]`, up to 16) as the
//! one initial image Stable Diffusion starts from: a grid of the images, in
//! the order sent, each cropped to its cell's shape around its centre and
//! scaled into it. Image-to-image then redraws the grid as one picture at
//! the request's `strength`, so every input shapes the result where it
//! sits; a lower strength keeps more of each. One image is used as it is.

use easel_core::{RgbImage, Size};

use crate::error::{ApiError, from_media_error};

/// Most input images of one edit (OpenAI's limit).
pub const MAX_EDIT_IMAGES: usize = 16;

/// Columns and rows of the grid for `n` images: as square as possible,
/// wider than tall.
pub fn grid(n: usize) -> (u32, u32) {
    let n = n.max(1) as u32;
    let cols = (1..=n).find(|c| c * c >= n).unwrap_or(n);
    (cols, n.div_ceil(cols))
}

/// The images as one picture at `size`: a grid of cells, left to right
/// then top to bottom; cells left over stay mid-grey.
pub fn collage(images: &[RgbImage], size: Size) -> Result<RgbImage, ApiError> {
    let (cols, rows) = grid(images.len());
    let (w, h) = (size.width, size.height);
    let mut out = RgbImage {
        width: w,
        height: h,
        pixels: vec![128; (w * h * 3) as usize],
    };
    for (i, image) in images.iter().enumerate() {
        let (col, row) = (i as u32 % cols, i as u32 / cols);
        // Cell edges by rounding, so the cells tile the picture exactly.
        let (x0, x1) = (col * w / cols, (col + 1) * w / cols);
        let (y0, y1) = (row * h / rows, (row + 1) * h / rows);
        let cell = cover(image, x1 - x0, y1 - y0)?;
        for y in 0..cell.height {
            let src = (y * cell.width * 3) as usize;
            let dst = (((y0 + y) * w + x0) * 3) as usize;
            let len = (cell.width * 3) as usize;
            out.pixels[dst..dst + len].copy_from_slice(&cell.pixels[src..src + len]);
        }
    }
    Ok(out)
}

/// `image` cropped around its centre to the shape of `width`×`height`,
/// then scaled to exactly that.
fn cover(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage, ApiError> {
    let (iw, ih) = (u64::from(image.width), u64::from(image.height));
    // The largest centred crop with the cell's aspect ratio.
    let (cw, ch) = if iw * u64::from(height) > ih * u64::from(width) {
        ((ih * u64::from(width) / u64::from(height)).max(1), ih)
    } else {
        (iw, (iw * u64::from(height) / u64::from(width)).max(1))
    };
    let (cx, cy) = ((iw - cw) / 2, (ih - ch) / 2);
    let mut crop = Vec::with_capacity((cw * ch * 3) as usize);
    for y in cy..cy + ch {
        let start = ((y * iw + cx) * 3) as usize;
        crop.extend_from_slice(&image.pixels[start..start + (cw * 3) as usize]);
    }
    let crop = RgbImage {
        width: cw as u32,
        height: ch as u32,
        pixels: crop,
    };
    if (crop.width, crop.height) == (width, height) {
        return Ok(crop);
    }
    easel_media::resize(&crop, width, height).map_err(from_media_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(width: u32, height: u32, rgb: [u8; 3]) -> RgbImage {
        RgbImage {
            width,
            height,
            pixels: rgb.repeat((width * height) as usize),
        }
    }

    fn at(image: &RgbImage, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * image.width + x) * 3) as usize;
        [image.pixels[i], image.pixels[i + 1], image.pixels[i + 2]]
    }

    #[test]
    fn grids_are_as_square_as_possible() {
        assert_eq!(grid(1), (1, 1));
        assert_eq!(grid(2), (2, 1));
        assert_eq!(grid(3), (2, 2));
        assert_eq!(grid(4), (2, 2));
        assert_eq!(grid(5), (3, 2));
        assert_eq!(grid(16), (4, 4));
    }

    #[test]
    fn each_image_fills_its_cell_in_order() {
        let size = Size {
            width: 64,
            height: 48,
        };
        let images = [
            solid(10, 10, [255, 0, 0]),
            solid(30, 7, [0, 255, 0]),
            solid(5, 40, [0, 0, 255]),
        ];
        let out = collage(&images, size).unwrap();
        assert_eq!((out.width, out.height), (64, 48));
        // 2×2 cells of 32×24: red, green / blue, grey.
        assert_eq!(at(&out, 5, 5), [255, 0, 0]);
        assert_eq!(at(&out, 31, 23), [255, 0, 0]);
        assert_eq!(at(&out, 32, 0), [0, 255, 0]);
        assert_eq!(at(&out, 63, 23), [0, 255, 0]);
        assert_eq!(at(&out, 0, 24), [0, 0, 255]);
        assert_eq!(at(&out, 40, 40), [128, 128, 128]);
    }

    #[test]
    fn a_crop_keeps_the_centre() {
        // Left third black, middle white, right third black: cropped to a
        // square, the middle survives.
        let mut wide = solid(90, 30, [0, 0, 0]);
        for y in 0..30 {
            for x in 30..60 {
                let i = ((y * 90 + x) * 3) as usize;
                wide.pixels[i..i + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        let cell = cover(&wide, 30, 30).unwrap();
        assert!(cell.pixels.iter().all(|&p| p == 255));
    }
}
