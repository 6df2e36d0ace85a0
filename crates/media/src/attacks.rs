//! What happens to images in the wild, for measuring the watermark
//! (`easel bench watermark` and the watermark tests): re-encoding (JPEG,
//! lossy WebP), resizing, cropping, brightness and contrast, as Pillow and
//! the usual image pipelines do them; and PSNR/SSIM, what the mark costs.

use easel_core::RgbImage;
use image::imageops::FilterType;

/// One named transformation of an image; `rng` draws crop positions.
pub struct Attack {
    /// The name printed in the table.
    pub name: &'static str,
    /// The transformation.
    pub apply: fn(&RgbImage, &mut u64) -> RgbImage,
}

fn buffer(image: &RgbImage) -> image::RgbImage {
    image::RgbImage::from_raw(image.width, image.height, image.pixels.clone())
        .expect("a well-formed image")
}

fn from_buffer(b: image::RgbImage) -> RgbImage {
    RgbImage {
        width: b.width(),
        height: b.height(),
        pixels: b.into_raw(),
    }
}

/// JPEG at `quality` (4:2:0, the `image` crate's encoder), decoded again.
pub fn jpeg(image: &RgbImage, quality: u8) -> RgbImage {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(
            &image.pixels,
            image.width,
            image.height,
            image::ExtendedColorType::Rgb8,
        )
        .expect("JPEG encodes");
    from_buffer(
        image::load_from_memory_with_format(&out, image::ImageFormat::Jpeg)
            .expect("JPEG decodes")
            .to_rgb8(),
    )
}

/// Lossy WebP at `quality` (libwebp, its default method and filters, as
/// `cwebp -q` and Pillow do), decoded again with the decoder the server
/// uses for uploads.
pub fn webp(image: &RgbImage, quality: f32) -> RgbImage {
    let encoded = webp::Encoder::from_rgb(&image.pixels, image.width, image.height).encode(quality);
    from_buffer(
        image::load_from_memory_with_format(&encoded, image::ImageFormat::WebP)
            .expect("WebP decodes")
            .to_rgb8(),
    )
}

/// Resized by `factor` with `filter` (Triangle = bilinear, CatmullRom =
/// bicubic).
pub fn resize(image: &RgbImage, factor: f64, filter: FilterType) -> RgbImage {
    let w = ((f64::from(image.width) * factor).round() as u32).max(1);
    let h = ((f64::from(image.height) * factor).round() as u32).max(1);
    from_buffer(image::imageops::resize(&buffer(image), w, h, filter))
}

/// The `w`×`h` window at (x, y).
pub fn crop(image: &RgbImage, x: u32, y: u32, w: u32, h: u32) -> RgbImage {
    from_buffer(image::imageops::crop_imm(&buffer(image), x, y, w, h).to_image())
}

/// A draw in [0, n) from an LCG.
pub fn draw(rng: &mut u64, n: u32) -> u32 {
    *rng = rng
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*rng >> 33) % u64::from(n.max(1))) as u32
}

/// The `k`-th synthetic unmarked picture of a false-positive pool, 256×256:
/// uniform noise, a flat colour or a colour gradient (`k` mod 3), drawn
/// from `rng`; with its kind's name. `easel bench watermark` and the
/// `watermark_fp` example build their pools with it.
pub fn synthetic(rng: &mut u64, k: usize) -> (RgbImage, &'static str) {
    let side = 256u32;
    let mut pixels = Vec::with_capacity((side * side * 3) as usize);
    let base = [draw(rng, 256), draw(rng, 256), draw(rng, 256)];
    for y in 0..side {
        for x in 0..side {
            for (c, &b) in base.iter().enumerate() {
                let v = match k % 3 {
                    0 => draw(rng, 256),
                    1 => b,
                    _ => (b + x * (c as u32 + 1) / 2 + y / 3) % 256,
                };
                pixels.push(v as u8);
            }
        }
    }
    let image = RgbImage {
        width: side,
        height: side,
        pixels,
    };
    (image, ["noise", "flat", "gradient"][k % 3])
}

/// Pillow's `ImageEnhance.Brightness`: every channel times `factor`.
pub fn brightness(image: &RgbImage, factor: f64) -> RgbImage {
    map(image, |v, _| v * factor)
}

/// Pillow's `ImageEnhance.Contrast`: blended with the flat grey of the
/// image's mean luma (rounded), by `factor`.
pub fn contrast(image: &RgbImage, factor: f64) -> RgbImage {
    let n = image.pixels.len() / 3;
    let mean = image
        .pixels
        .chunks_exact(3)
        .map(|p| {
            // Pillow's L conversion: (R·299 + G·587 + B·114) / 1000.
            (u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000
        })
        .map(f64::from)
        .sum::<f64>()
        / n as f64;
    let grey = (mean + 0.5).floor();
    map(image, |v, _| grey + factor * (v - grey))
}

fn map(image: &RgbImage, f: impl Fn(f64, usize) -> f64) -> RgbImage {
    RgbImage {
        width: image.width,
        height: image.height,
        pixels: image
            .pixels
            .iter()
            .enumerate()
            .map(|(i, &v)| f(f64::from(v), i).round().clamp(0.0, 255.0) as u8)
            .collect(),
    }
}

/// Every transformation of the benchmark, in the printed order.
pub fn all() -> Vec<Attack> {
    fn side(image: &RgbImage, f: f64) -> (u32, u32) {
        (
            (f64::from(image.width) * f).round() as u32,
            (f64::from(image.height) * f).round() as u32,
        )
    }
    vec![
        Attack {
            name: "none",
            apply: |i, _| i.clone(),
        },
        Attack {
            name: "jpeg70",
            apply: |i, _| jpeg(i, 70),
        },
        Attack {
            name: "jpeg80",
            apply: |i, _| jpeg(i, 80),
        },
        Attack {
            name: "jpeg90",
            apply: |i, _| jpeg(i, 90),
        },
        Attack {
            name: "jpeg95",
            apply: |i, _| jpeg(i, 95),
        },
        Attack {
            name: "webp75",
            apply: |i, _| webp(i, 75.0),
        },
        Attack {
            name: "webp90",
            apply: |i, _| webp(i, 90.0),
        },
        Attack {
            name: "resize0.5-bilinear",
            apply: |i, _| resize(i, 0.5, FilterType::Triangle),
        },
        Attack {
            name: "resize0.5-bicubic",
            apply: |i, _| resize(i, 0.5, FilterType::CatmullRom),
        },
        Attack {
            name: "resize0.75-bilinear",
            apply: |i, _| resize(i, 0.75, FilterType::Triangle),
        },
        Attack {
            name: "resize0.75-bicubic",
            apply: |i, _| resize(i, 0.75, FilterType::CatmullRom),
        },
        Attack {
            name: "resize1.5-bilinear",
            apply: |i, _| resize(i, 1.5, FilterType::Triangle),
        },
        Attack {
            name: "resize1.5-bicubic",
            apply: |i, _| resize(i, 1.5, FilterType::CatmullRom),
        },
        Attack {
            name: "resize2-bilinear",
            apply: |i, _| resize(i, 2.0, FilterType::Triangle),
        },
        Attack {
            name: "resize2-bicubic",
            apply: |i, _| resize(i, 2.0, FilterType::CatmullRom),
        },
        Attack {
            name: "crop87%-random",
            apply: |i, rng| {
                let (w, h) = side(i, 0.87);
                let x = draw(rng, i.width - w + 1);
                let y = draw(rng, i.height - h + 1);
                crop(i, x, y, w, h)
            },
        },
        Attack {
            name: "crop75%w-fullh",
            apply: |i, rng| {
                let w = (f64::from(i.width) * 0.75).round() as u32;
                let x = draw(rng, i.width - w + 1);
                crop(i, x, 0, w, i.height)
            },
        },
        Attack {
            name: "brightness+15%",
            apply: |i, _| brightness(i, 1.15),
        },
        Attack {
            name: "brightness-15%",
            apply: |i, _| brightness(i, 0.85),
        },
        Attack {
            name: "contrast+15%",
            apply: |i, _| contrast(i, 1.15),
        },
        Attack {
            name: "contrast-15%",
            apply: |i, _| contrast(i, 0.85),
        },
        Attack {
            name: "resize0.75+jpeg85",
            apply: |i, _| jpeg(&resize(i, 0.75, FilterType::CatmullRom), 85),
        },
    ]
}

fn luma(image: &RgbImage) -> Vec<f64> {
    image
        .pixels
        .chunks_exact(3)
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect()
}

/// PSNR in dB over the RGB samples.
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    let mse = a
        .pixels
        .iter()
        .zip(&b.pixels)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.pixels.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

/// The mean SSIM of the luma (Gaussian window 11×11, σ = 1.5; the usual
/// constants), over the windows that fit in the image.
pub fn ssim(a: &RgbImage, b: &RgbImage) -> f64 {
    let (w, h) = (a.width as usize, a.height as usize);
    let (x, y) = (luma(a), luma(b));
    let g: Vec<f64> = (0..11)
        .map(|i| (-((i as f64 - 5.0).powi(2)) / (2.0 * 1.5 * 1.5)).exp())
        .collect();
    let total: f64 = g.iter().sum();
    let g: Vec<f64> = g.iter().map(|v| v / total).collect();
    let blur = |p: &[f64]| -> Vec<f64> {
        // Valid windows only: (w−10)×(h−10) outputs.
        let (ow, oh) = (w - 10, h - 10);
        let mut rows = vec![0.0; ow * h];
        for yy in 0..h {
            for xx in 0..ow {
                rows[yy * ow + xx] = (0..11).map(|k| g[k] * p[yy * w + xx + k]).sum();
            }
        }
        let mut out = vec![0.0; ow * oh];
        for yy in 0..oh {
            for xx in 0..ow {
                out[yy * ow + xx] = (0..11).map(|k| g[k] * rows[(yy + k) * ow + xx]).sum();
            }
        }
        out
    };
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let mx = blur(&x);
    let my = blur(&y);
    let xx: Vec<f64> = x.iter().map(|v| v * v).collect();
    let yy: Vec<f64> = y.iter().map(|v| v * v).collect();
    let xy: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
    let (sxx, syy, sxy) = (blur(&xx), blur(&yy), blur(&xy));
    let n = mx.len();
    (0..n)
        .map(|i| {
            let (ux, uy) = (mx[i], my[i]);
            let (vx, vy, cxy) = (sxx[i] - ux * ux, syy[i] - uy * uy, sxy[i] - ux * uy);
            ((2.0 * ux * uy + c1) * (2.0 * cxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        })
        .sum::<f64>()
        / n as f64
}
