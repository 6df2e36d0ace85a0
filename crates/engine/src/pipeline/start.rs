//! The initial state of a run: where the sampler starts, and what
//! inpainting adds to the loop.
//!
//! Text-to-image starts from `noise · init_noise_sigma`; image-to-image
//! from `x₀ + σ₀·noise`, x₀ the init image's latents (a VAE posterior
//! sample for latent models, the pixels for pixel models). Inpainting
//! changes the start at strength 1 and adds a [`Inpaint`] (see `inpaint`).

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::model::Model;
use crate::preview;
use crate::request::{ImageRequest, RgbImage};
use crate::sampling::{self, NoiseSource, Plan};

use super::BatchKey;
use super::inpaint::{self, Blend, Inpaint};

/// Where a run starts.
pub(crate) struct Start {
    /// The sampler's starting point `[B, C, h, w]` (k-diffusion scaling).
    pub x_init: Tensor,
    /// What inpainting adds to the loop, if anything.
    pub inpaint: Option<Inpaint>,
}

/// The start of a batch, drawing from `noise` in the order the pipeline's
/// module docs give.
pub(crate) fn start(
    model: &Model,
    requests: &[ImageRequest],
    key: &BatchKey,
    plan: &Plan,
    noise: &mut dyn NoiseSource,
) -> Result<Start> {
    let b = requests.len();
    let scale = model.vae.as_ref().map_or(1, |v| v.config.scale_factor());
    // The latent channels (an inpainting UNet takes more than it makes).
    let channels = model.unet.config.out_channels;
    let (height, width) = (key.height as usize, key.width as usize);
    let shape = [channels, height / scale, width / scale];
    let init_noise = noise.sample(&shape)?;
    let inpainting_unet = model.info().inpainting;
    let masked = inpainting_unet || inpaint::any_mask(requests);
    let pixels = match key.strength {
        None => None,
        Some(_) => {
            let images: Vec<&RgbImage> = requests
                .iter()
                .map(|r| &r.init_image.as_ref().expect("checked: all img2img").0)
                .collect();
            Some(preview::from_rgb(&images, &model.device)?)
        }
    };
    // An inpainting UNet at strength 1 starts from pure noise and never
    // looks at the init image's latents (see `inpaint`).
    let x0 = match &pixels {
        Some(p) if !(inpainting_unet && key.strength == Some(1.0)) => {
            Some(encode_sample(model, p, key, noise)?)
        }
        _ => None,
    };
    // diffusers' inpainting starts a masked request (every request on an
    // inpainting UNet) at strength 1 from pure noise, scaled by the full
    // plan's `init_noise_sigma` as text-to-image is.
    let pure_start = match key.strength {
        Some(s) if s == 1.0 && masked => {
            let full = sampling::plan(&model.scheduler, key.sampler, key.schedule, key.steps)?;
            Some((&init_noise * full.init_noise_sigma)?)
        }
        _ => None,
    };
    let x_init = match (&x0, pure_start) {
        // Text-to-image.
        (None, None) => (&init_noise * plan.init_noise_sigma)?,
        // An inpainting UNet at strength 1.
        (None, Some(pure)) => pure,
        (Some(x0), pure) => {
            let x = (x0 + (&init_noise * plan.sigmas[0])?)?;
            match pure {
                None => x,
                Some(pure) => {
                    let rows: Vec<bool> = requests
                        .iter()
                        .map(|r| inpainting_unet || r.mask.is_some())
                        .collect();
                    inpaint::replace_rows(x, &pure, &rows)?
                }
            }
        }
    };
    let inpaint = if inpainting_unet {
        let full = inpaint::masks(requests, width, height, 1, &model.device)?;
        let masked_pixels = match &pixels {
            Some(p) => inpaint::masked_pixels(p, &full)?,
            None => Tensor::zeros((b, 3, height, width), DType::F32, &model.device)?,
        };
        let latents = encode_sample(model, &masked_pixels, key, noise)?;
        let small = inpaint::masks(requests, width, height, scale, &model.device)?;
        Some(Inpaint::Condition(Tensor::cat(&[&small, &latents], 1)?))
    } else if masked {
        let small = inpaint::masks(requests, width, height, scale, &model.device)?;
        let x0 = x0
            .clone()
            .expect("an ordinary UNet always encodes the init image");
        Some(Inpaint::Blend(Blend::new(small, x0, init_noise.clone())?))
    } else {
        None
    };

    Ok(Start { x_init, inpaint })
}

/// The init image's latents: for a latent model the VAE posterior's sample
/// (one draw per image from `noise`), scaled, encoded in calls of at most
/// `vae::ACTIVATION_BUDGET_BYTES` of activations; for a pixel model the
/// pixels themselves (no draw).
fn encode_sample(
    model: &Model,
    pixels: &Tensor,
    key: &BatchKey,
    noise: &mut dyn NoiseSource,
) -> Result<Tensor> {
    let Some(vae) = &model.vae else {
        return Ok(pixels.clone());
    };
    let b = pixels.dims()[0];
    let per_call = vae.encode_images_per_call(key.height as usize, key.width as usize);
    let mut means = Vec::with_capacity(b);
    let mut stds = Vec::with_capacity(b);
    for start in (0..b).step_by(per_call) {
        let chunk = pixels.narrow(0, start, per_call.min(b - start))?;
        let (m, s) = vae.encode(&chunk)?;
        means.push(m);
        stds.push(s);
    }
    let (mean, std) = (Tensor::cat(&means, 0)?, Tensor::cat(&stds, 0)?);
    let eps = noise.sample(&mean.dims()[1..])?;
    Ok((mean + (std * eps)?)?)
}
