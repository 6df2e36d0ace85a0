//! Conversions between tensors and RGB images, and cheap previews.
//!
//! Pixels follow diffusers' `VaeImageProcessor`: a tensor in [-1, 1] becomes
//! bytes by `round(clamp(x / 2 + 0.5, 0, 1) * 255)`, and bytes become a
//! tensor by `x / 255 * 2 - 1`.
//!
//! A preview of a latent model's current x̂₀ estimate skips the VAE: each
//! latent pixel is mapped to RGB by a fixed linear map, at latent
//! resolution (1/8 of the image side for SD). The coefficients for
//! Stable Diffusion's and SDXL's 4-channel latent spaces are the
//! least-squares fits published with ComfyUI (`latent_formats.py`,
//! `SD15.latent_rgb_factors` and `SDXL.latent_rgb_factors`/`_bias`,
//! <https://github.com/comfyanonymous/ComfyUI/blob/v0.3.10/comfy/latent_formats.py#L30>).
//! A pixel-space model's preview is its x̂₀ itself.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;
use crate::request::RgbImage;

/// SD 1.x/2.x latent channel → RGB coefficients (rows: latent channels).
const SD_LATENT_RGB: [[f32; 3]; 4] = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
];

/// SDXL latent channel → RGB coefficients, and the bias added after.
const SDXL_LATENT_RGB: [[f32; 3]; 4] = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
];
const SDXL_LATENT_BIAS: [f32; 3] = [0.1084, -0.0175, -0.0011];

/// Which preview mapping a model's x̂₀ needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PreviewKind {
    /// Pixel-space model: x̂₀ is the picture.
    Pixels,
    /// SD 1.x/2.x latents.
    SdLatent,
    /// SDXL latents.
    SdxlLatent,
}

/// `[B, 3, H, W]` in [-1, 1] to one image per batch entry.
pub(crate) fn to_rgb(xs: &Tensor) -> Result<Vec<RgbImage>> {
    let (b, c, h, w) = xs.dims4()?;
    debug_assert_eq!(c, 3);
    let bytes = ((xs.to_dtype(DType::F32)? / 2.0)? + 0.5)?
        .clamp(0f32, 1f32)?
        .affine(255.0, 0.0)?
        .round()?
        .to_dtype(DType::U8)?
        .permute((0, 2, 3, 1))?
        .contiguous()?
        .to_device(&Device::Cpu)?;
    let flat = bytes.flatten_all()?.to_vec1::<u8>()?;
    let per = h * w * 3;
    Ok((0..b)
        .map(|i| RgbImage {
            width: w as u32,
            height: h as u32,
            pixels: flat[i * per..(i + 1) * per].to_vec(),
        })
        .collect())
}

/// Images of equal size to `[B, 3, H, W]` in [-1, 1].
pub(crate) fn from_rgb(images: &[&RgbImage], device: &Device) -> Result<Tensor> {
    let (w, h) = (images[0].width as usize, images[0].height as usize);
    let mut data = Vec::with_capacity(images.len() * w * h * 3);
    for img in images {
        data.extend(img.pixels.iter().map(|&p| p as f32 / 255.0 * 2.0 - 1.0));
    }
    Ok(Tensor::from_vec(data, (images.len(), h, w, 3), device)?
        .permute((0, 3, 1, 2))?
        .contiguous()?)
}

/// A preview of an x̂₀ estimate: pixels for pixel models, the linear
/// latent → RGB map for 4-channel latents, the first three channels (or a
/// grey copy of the first) otherwise.
pub(crate) fn preview(x0: &Tensor, kind: PreviewKind) -> Result<Vec<RgbImage>> {
    let (_, c, _, _) = x0.dims4()?;
    if kind == PreviewKind::Pixels && c == 3 {
        return to_rgb(x0);
    }
    let rgb = if c == 4 {
        let (factors, bias) = match kind {
            PreviewKind::SdxlLatent => (SDXL_LATENT_RGB, SDXL_LATENT_BIAS),
            _ => (SD_LATENT_RGB, [0.0; 3]),
        };
        let m = Tensor::new(&factors, x0.device())?; // [4, 3]
        let bias = Tensor::new(&bias, x0.device())?;
        // [B,4,H,W] -> [B,H,W,4] x [4,3] -> [B,H,W,3] -> [B,3,H,W]
        x0.permute((0, 2, 3, 1))?
            .contiguous()?
            .broadcast_matmul(&m)?
            .broadcast_add(&bias)?
            .permute((0, 3, 1, 2))?
    } else if c >= 3 {
        x0.narrow(1, 0, 3)?
    } else {
        x0.narrow(1, 0, 1)?.repeat((1, 3, 1, 1))?
    };
    to_rgb(&rgb.contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_round_trip_through_tensors_as_diffusers_converts_them() {
        let img = RgbImage {
            width: 2,
            height: 1,
            pixels: vec![0, 128, 255, 1, 2, 3],
        };
        let t = from_rgb(&[&img], &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[1, 3, 1, 2]);
        assert_eq!(to_rgb(&t).unwrap()[0], img);
    }

    #[test]
    fn a_latent_preview_has_latent_resolution() {
        let z = Tensor::zeros((2, 4, 3, 5), DType::F32, &Device::Cpu).unwrap();
        let p = preview(&z, PreviewKind::SdLatent).unwrap();
        assert_eq!((p.len(), p[0].width, p[0].height), (2, 5, 3));
        assert!(p[0].pixels.iter().all(|&v| v == 128));
    }
}
