//! Inpainting: repainting the masked part of an init image, as diffusers
//! 0.42.1's `StableDiffusionInpaintPipeline` does
//! (`pipelines/stable_diffusion/pipeline_stable_diffusion_inpaint.py`),
//! in one of two ways chosen by the UNet.
//!
//! **The mask.** A request's [`Mask`] is binarised at 0.5 at full size
//! (diffusers' mask processor, `VaeImageProcessor(do_binarize=True)`: 1
//! repaints, 0 keeps), then brought to latent size by nearest-neighbour
//! sampling as `torch.nn.functional.interpolate(mask, size=(h, w))` does in
//! its default `nearest` mode: latent pixel (y, x) takes the full-size
//! pixel (y·f, x·f), f the VAE's factor (an exact integer ratio, so
//! PyTorch's `floor(dst · in/out)` is `dst · f`). A pixel-space model's
//! "latents" are the pixels: f = 1, the mask at full size. A request of
//! the batch without a mask repaints everything (a mask of ones).
//!
//! **Ordinary UNets** (latent channels in, e.g. 4; and the pixel-space
//! model): latent blending ([`Blend`]). After every sampler step but the
//! last, `x ← (1 − m)·noised(x₀, σ_next) + m·x`, and after the last,
//! `x ← (1 − m)·x₀ + m·x`, with x₀ the init image's latents (the same
//! posterior sample the start was made from) and m the latent-size mask.
//! diffusers' `noised` is `scheduler.add_noise(image_latents, noise,
//! timesteps[i + 1])`, with `noise` the draw the initial latents were made
//! from. Mapped to our sigmas: once a step has run, diffusers' schedulers
//! take the noise level of `add_noise` from their `step_index` (the
//! `begin_index` is set by `get_timesteps`), which is the next step's
//! level σ_{i+1}; the k-diffusion schedulers (Euler, Euler ancestral,
//! Heun) add `noise·σ` to x₀, which is our scaling as is, and the
//! variance-preserving ones (DDIM, DPM++ 2M, LCM) compute
//! `√ᾱ·x₀ + √(1 − ᾱ)·noise`, which is `(x₀ + σ·noise)/√(σ² + 1)` with
//! σ = √((1 − ᾱ)/ᾱ), i.e. x₀ + σ·noise once in our scaling
//! (x = x_vp·√(σ² + 1)). So in every case `noised(x₀, σ) = x₀ + σ·noise` at the σ the
//! sampler's x has just reached, handed to the hook by
//! [`crate::sampling::sample_with`] (Heun's Euler point included, which
//! diffusers' Heun returns as a step of its own). The last blend, with the
//! clean x₀, is applied to what the sampler returns, after DDIM's and DPM++
//! 2M's conversion back to the variance-preserving latent, as diffusers
//! blends the latent its last step returned.
//!
//! **Inpainting UNets** (`in_channels = 2·latent + 1`: 9 for SD 1.x/2.x
//! and SDXL inpainting; [`crate::ModelInfo::inpainting`]): the UNet takes
//! `cat([scaled x, mask, masked-image latents])` on the channel axis
//! ([`Inpaint::Condition`]; the mask at latent size, as above), and no
//! blending is done. The masked image is the init image in [-1, 1] with
//! every repainted pixel set to 0 (`init_image * (mask < 0.5)`),
//! VAE-encoded as diffusers' `_encode_vae_image` does: a *sample* of the
//! posterior (`retrieve_latents`' default `sample_mode="sample"`), drawn
//! from the image's own noise source, times the scaling factor. A request
//! without a mask is repainted whole (mask of ones, an all-zero masked
//! image), and so is a text-to-image request on such a model: that is
//! exactly diffusers' inpainting pipeline given a white mask at strength 1,
//! whose result does not depend on the init image.
//!
//! **Start.** At strength 1, diffusers' inpainting pipeline starts a
//! masked request from pure noise, `noise · init_noise_sigma` (the
//! text-to-image start), not from `add_noise(x₀, noise, t₀)` as its
//! image-to-image pipeline does; an inpainting UNet at strength 1 does not
//! encode the init image at all. Below strength 1 both start from
//! x₀ + σ₀·noise. Requests without a mask on an ordinary UNet keep the
//! image-to-image start.
//!
//! **Draws** (row i of the noise source, in order): the initial noise;
//! the init image's posterior sample (latent models, unless an inpainting
//! UNet runs at strength 1); the masked image's posterior sample
//! (inpainting UNets only, for every request of the batch). So an image's
//! draws depend on its model and its own request, never on its batch.

use candle_core::{Device, Tensor};
use easel_core::Mask;

use crate::error::Result;
use crate::request::ImageRequest;

/// What inpainting adds to a batch's sampling.
pub(crate) enum Inpaint {
    /// An ordinary UNet: blend the kept region back in after each step.
    Blend(Blend),
    /// An inpainting UNet: `[B, 1 + C, h, w]` extra input channels (the
    /// mask, then the masked image's latents), appended to the scaled x.
    Condition(Tensor),
}

/// Latent blending for an ordinary UNet (see the module docs).
pub(crate) struct Blend {
    /// m: 1 where repainted, `[B, 1, h, w]`.
    repaint: Tensor,
    /// 1 − m.
    keep: Tensor,
    /// The init image's latents x₀, `[B, C, h, w]`.
    init: Tensor,
    /// The initial noise, `[B, C, h, w]`.
    noise: Tensor,
}

impl Blend {
    /// The blend for masks at latent size `[B, 1, h, w]`.
    pub(crate) fn new(repaint: Tensor, init: Tensor, noise: Tensor) -> Result<Self> {
        let keep = repaint.affine(-1.0, 1.0)?;
        Ok(Self {
            repaint,
            keep,
            init,
            noise,
        })
    }

    /// After a step that brought x to noise level `sigma` (not the last):
    /// `(1 − m)·(x₀ + σ·noise) + m·x`.
    pub(crate) fn after_step(&self, x: Tensor, sigma: f64) -> Result<Tensor> {
        let noised = (&self.init + (&self.noise * sigma)?)?;
        self.mix(&noised, &x)
    }

    /// After the last step: `(1 − m)·x₀ + m·x`.
    pub(crate) fn finish(&self, x: &Tensor) -> Result<Tensor> {
        self.mix(&self.init, x)
    }

    fn mix(&self, kept: &Tensor, x: &Tensor) -> Result<Tensor> {
        Ok((kept.broadcast_mul(&self.keep)? + x.broadcast_mul(&self.repaint)?)?)
    }
}

/// Whether any request of the batch carries a mask.
pub(crate) fn any_mask(requests: &[ImageRequest]) -> bool {
    requests.iter().any(|r| r.mask.is_some())
}

/// Each request's binarised mask sampled every `factor` pixels, `[B, 1,
/// height/factor, width/factor]`: 1 repaints, 0 keeps; a request without a
/// mask repaints everything. `factor` 1 gives the full-size mask.
pub(crate) fn masks(
    requests: &[ImageRequest],
    width: usize,
    height: usize,
    factor: usize,
    device: &Device,
) -> Result<Tensor> {
    let (w, h) = (width / factor, height / factor);
    let mut data = Vec::with_capacity(requests.len() * w * h);
    for r in requests {
        match &r.mask {
            None => data.extend(std::iter::repeat_n(1f32, w * h)),
            Some(m) => data.extend(sampled(m, width, w, h, factor)),
        }
    }
    Ok(Tensor::from_vec(data, (requests.len(), 1, h, w), device)?)
}

/// Mask pixel (y·f, x·f) for each latent pixel (y, x), binarised.
fn sampled(
    mask: &Mask,
    width: usize,
    w: usize,
    h: usize,
    f: usize,
) -> impl Iterator<Item = f32> + '_ {
    (0..h).flat_map(move |y| {
        (0..w).map(move |x| {
            if mask.repaints(y * f * width + x * f) {
                1.0
            } else {
                0.0
            }
        })
    })
}

/// The pixels an inpainting UNet sees as its masked image: `pixels` (in
/// [-1, 1]) where kept, 0 where repainted (`full` is the full-size mask).
pub(crate) fn masked_pixels(pixels: &Tensor, full: &Tensor) -> Result<Tensor> {
    Ok(pixels.broadcast_mul(&full.affine(-1.0, 1.0)?)?)
}

/// Rows of `x` replaced by the same rows of `pure` where `use_pure[i]`.
pub(crate) fn replace_rows(x: Tensor, pure: &Tensor, use_pure: &[bool]) -> Result<Tensor> {
    if !use_pure.iter().any(|&p| p) {
        return Ok(x);
    }
    let rows: Vec<Tensor> = use_pure
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            if p {
                pure.narrow(0, i, 1)
            } else {
                x.narrow(0, i, 1)
            }
        })
        .collect::<candle_core::Result<_>>()?;
    Ok(Tensor::cat(&rows, 0)?)
}

#[cfg(test)]
mod tests {
    use easel_core::{SamplerKind, ScheduleKind, Size};

    use super::*;

    fn request(mask: Option<Mask>) -> ImageRequest {
        ImageRequest {
            prompt: String::new(),
            negative_prompt: String::new(),
            size: Size {
                width: 4,
                height: 4,
            },
            steps: 1,
            guidance_scale: 1.0,
            seed: 0,
            sampler: Some(SamplerKind::Euler),
            schedule: ScheduleKind::Default,
            init_image: None,
            mask,
            clip_skip: None,
        }
    }

    #[test]
    fn masks_sample_the_top_left_pixel_of_each_block_like_torch_nearest() {
        // Repaint the right half of a 4x4 mask, but with 100 (kept) in the
        // top-left of the top-right block and 200 (repainted) in the
        // bottom-right of the top-left block.
        let mut v = [[0u8, 0, 255, 255]; 4].concat();
        v[2] = 100;
        v[5] = 200;
        let m = Mask::from_u8(4, 4, &v).unwrap();
        let reqs = [request(Some(m)), request(None)];
        let t = masks(&reqs, 4, 4, 2, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[2, 1, 2, 2]);
        let got: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn blending_keeps_the_noised_init_outside_the_mask() {
        let dev = Device::Cpu;
        let repaint = Tensor::new(&[[[[1f32, 0.0]]]], &dev).unwrap();
        let init = Tensor::new(&[[[[10f32, 20.0]]]], &dev).unwrap();
        let noise = Tensor::new(&[[[[1f32, 2.0]]]], &dev).unwrap();
        let b = Blend::new(repaint, init, noise).unwrap();
        let x = Tensor::new(&[[[[-1f32, -2.0]]]], &dev).unwrap();
        let stepped: Vec<f32> = b
            .after_step(x.clone(), 0.5)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(stepped, [-1.0, 21.0]);
        let last: Vec<f32> = b
            .finish(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(last, [-1.0, 20.0]);
    }
}
