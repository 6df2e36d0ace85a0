//! Image preparation shared by the scorers and the pHash: area-average
//! resampling to a square input size and conversion to a normalised tensor.

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::request::RgbImage;

/// Resamples `img` to `size`×`size` by area averaging: each output pixel is
/// the mean of the source area it covers, weighted by overlap. For an exact
/// integer factor (64 → 32) this is PIL's `Image.BOX` filter, which made the
/// training images; an image already at `size` is returned unchanged.
pub(crate) fn resize_area(img: &RgbImage, size: u32) -> RgbImage {
    if img.width == size && img.height == size {
        return img.clone();
    }
    let (w, h) = (img.width as usize, img.height as usize);
    let n = size as usize;
    // Per output index: (first source index, weights of the covered sources).
    let spans = |src: usize| -> Vec<(usize, Vec<f64>)> {
        let scale = src as f64 / n as f64;
        (0..n)
            .map(|o| {
                let (a, b) = (o as f64 * scale, (o + 1) as f64 * scale);
                let first = a.floor() as usize;
                let last = (b.ceil() as usize).min(src);
                let weights = (first..last)
                    .map(|s| (b.min(s as f64 + 1.0) - a.max(s as f64)).max(0.0) / scale)
                    .collect();
                (first, weights)
            })
            .collect()
    };
    let (xs, ys) = (spans(w), spans(h));
    let mut out = Vec::with_capacity(n * n * 3);
    for (y0, wy) in &ys {
        for (x0, wx) in &xs {
            let mut acc = [0f64; 3];
            for (dy, fy) in wy.iter().enumerate() {
                for (dx, fx) in wx.iter().enumerate() {
                    let p = ((y0 + dy) * w + x0 + dx) * 3;
                    for (c, a) in acc.iter_mut().enumerate() {
                        *a += fy * fx * img.pixels[p + c] as f64;
                    }
                }
            }
            out.extend(acc.iter().map(|v| v.round().clamp(0.0, 255.0) as u8));
        }
    }
    RgbImage {
        width: size,
        height: size,
        pixels: out,
    }
}

/// Stacks square images of one size into `[N, 3, S, S]` with
/// `x = (v / 255 - mean[c]) / std[c]` per channel.
pub(crate) fn to_tensor(
    images: &[RgbImage],
    mean: [f32; 3],
    std: [f32; 3],
    device: &Device,
) -> Result<Tensor> {
    let s = images.first().map_or(0, |i| i.width as usize);
    let mut data = Vec::with_capacity(images.len() * 3 * s * s);
    for img in images {
        for c in 0..3 {
            data.extend(
                img.pixels
                    .iter()
                    .skip(c)
                    .step_by(3)
                    .map(|&v| (v as f32 / 255.0 - mean[c]) / std[c]),
            );
        }
    }
    Ok(Tensor::from_vec(data, (images.len(), 3, s, s), device)?)
}
