//! Inpainting against diffusers' `StableDiffusionInpaintPipeline` (SD 1.x,
//! references recorded by `tools/golden/inpaint.py`) and
//! `StableDiffusionXLInpaintPipeline` (SDXL, `tools/golden/inpaint_sdxl.py`),
//! and again `StableDiffusionInpaintPipeline` on the SD 2.x architecture
//! (v-prediction, `tools/golden/inpaint_sd2.py`), plus the properties the
//! references cannot show: what is kept stays kept on the pixel models,
//! masks are per request (SD 1.x, SD 2.x and SDXL), and bad masks are
//! refused.
//!
//! Fixtures: `tiny-sd1`, `tiny-sd2` and `tiny-sdxl` (4-channel UNets:
//! latent blending), and `tiny-sd1-inpaint`, `tiny-sd2-inpaint` and
//! `tiny-sdxl-inpaint`, which store only a 9-channel inpainting UNet each;
//! such a model is assembled in a temporary folder from a copy of
//! `tiny-sd1` (or `tiny-sd2`, `tiny-sdxl`) with that UNet in place of its
//! own. Two images per run, each with its own mask (image 0
//! repaints its left half, image 1 its top half and the one bottom-right
//! pixel), guidance 5 with a negative prompt, 4 steps.
//!
//! Covered, for SD 1.x (`inpaint`), SD 2.x (`inpaint-sd2`, v-prediction)
//! and SDXL (`inpaint-sdxl`, time ids from the requested size, no aesthetic
//! score): latent blending at strength
//! 0.75 and 1 with Euler and at 0.75 with DPM++ 2M (SD 1.x also Heun and
//! DDIM); the 9-channel UNet at strength 0.75 and 1; text to image on the
//! 9-channel UNet (diffusers with a white mask at strength 1).
//!
//! Tolerance: at most 1 level of 255 per 8-bit channel against the
//! reference images, from the reference's own random draws replayed in the
//! engine's order (initial noise, init image posterior, masked image
//! posterior).

mod common;

use std::path::Path;

use common::*;
use easel_core::{SamplerKind, Size};
use easel_engine::candle_core::{DType, Device, IndexOp, Tensor};
use easel_engine::sampling::ReplayNoise;
use easel_engine::{CancelToken, ImageRequest, Mask, Model, Progress, RgbImage};

/// The SD 1.x references.
const GOLDEN: &str = "inpaint";
/// The SDXL references.
const GOLDEN_SDXL: &str = "inpaint-sdxl";
/// The SD 2.x references (v-prediction).
const GOLDEN_SD2: &str = "inpaint-sd2";

/// `tiny-sd1` with the 9-channel UNet of `tiny-sd1-inpaint`, in a
/// temporary folder (kept alive by the returned guard).
fn inpainting_model() -> (tempfile::TempDir, Model) {
    inpainting_model_of("tiny-sd1", "tiny-sd1-inpaint")
}

/// Fixture `base` with the UNet of fixture `unet_only`, in a temporary
/// folder (kept alive by the returned guard).
fn inpainting_model_of(base: &str, unet_only: &str) -> (tempfile::TempDir, Model) {
    let dir = copy_fixture(base);
    let unet = dir.path().join("unet");
    std::fs::remove_dir_all(&unet).unwrap();
    std::fs::create_dir(&unet).unwrap();
    let from = fixture(unet_only).join("unet");
    for file in ["config.json", "diffusion_pytorch_model.safetensors"] {
        std::fs::copy(from.join(file), unet.join(file)).unwrap();
    }
    let model = Model::load(dir.path(), &opts()).unwrap();
    (dir, model)
}

/// The SD 1.x reference masks, one per image.
fn masks() -> Vec<Mask> {
    masks_of(GOLDEN)
}

/// The reference masks of the references `name`, one per image.
fn masks_of(name: &str) -> Vec<Mask> {
    let g = golden(name);
    let m = &g["masks"]; // [2, 1, H, W] in {0, 1}
    let side = meta(name)["size"].as_u64().unwrap() as u32;
    (0..2)
        .map(|i| {
            let v: Vec<f32> = m.i(i).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            Mask::from_f32(side, side, v).unwrap()
        })
        .collect()
}

/// The SD 1.x reference's two requests: init image and strength (if any),
/// masks (if any), sampler.
fn requests(
    strength: Option<f32>,
    masks: Option<Vec<Mask>>,
    sampler: SamplerKind,
) -> Vec<ImageRequest> {
    requests_of(GOLDEN, strength, masks, sampler)
}

/// The two requests of the references `name` (see [`requests`]).
fn requests_of(
    name: &str,
    strength: Option<f32>,
    masks: Option<Vec<Mask>>,
    sampler: SamplerKind,
) -> Vec<ImageRequest> {
    let m = meta(name);
    let side = m["size"].as_u64().unwrap() as u32;
    let steps = m["steps"].as_u64().unwrap() as u32;
    let mut masks = masks.map(Vec::into_iter);
    m["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let mut r = request(p.as_str().unwrap(), 11, side, steps);
            r.negative_prompt = m["negative_prompt"].as_str().unwrap().into();
            r.guidance_scale = m["guidance_scale"].as_f64().unwrap() as f32;
            r.sampler = Some(sampler);
            r.init_image = strength.map(|s| (gradient(side), s));
            r.mask = masks.as_mut().and_then(Iterator::next);
            r
        })
        .collect()
}

/// `[3, H, W]` of an image's bytes as f32.
fn levels(img: &RgbImage) -> Tensor {
    Tensor::from_vec(
        img.pixels.clone(),
        (img.height as usize, img.width as usize, 3),
        &Device::Cpu,
    )
    .unwrap()
    .permute((2, 0, 1))
    .unwrap()
    .to_dtype(DType::F32)
    .unwrap()
}

/// Runs `requests` on `model` with the draws `keys` of SD 1.x run `run`
/// replayed in order, and checks the images against the reference within
/// 1 level; returns the number of progress reports.
fn check(model: &Model, run: &str, requests: &[ImageRequest], keys: &[&str]) -> u32 {
    check_of(GOLDEN, model, run, requests, keys)
}

/// [`check`] against run `run` of the references `name`.
fn check_of(name: &str, model: &Model, run: &str, requests: &[ImageRequest], keys: &[&str]) -> u32 {
    let g = golden(name);
    let mut noise = ReplayNoise::new(keys.iter().map(|k| g[&format!("{run}_{k}")].clone()));
    let mut steps = 0;
    let mut sink = |_: Progress| steps += 1;
    let images = model
        .generate_with_noise(requests, &mut noise, &mut sink, &CancelToken::new())
        .unwrap_or_else(|e| panic!("{run}: {e}"));
    assert_eq!(noise.remaining(), 0, "{run}: draws left over");
    for (i, img) in images.iter().enumerate() {
        let want = (g[&format!("{run}_image")].i(i).unwrap() * 255.0)
            .unwrap()
            .round()
            .unwrap();
        let diff = max_abs_diff(&levels(&img.image), &want);
        assert!(diff <= 1.0, "{run}: image {i} differs by {diff} levels");
    }
    steps
}

fn check_blend(run: &str, strength: f32, sampler: SamplerKind, model: &Model) {
    check_blend_of(GOLDEN, run, strength, sampler, model);
}

fn check_blend_of(name: &str, run: &str, strength: f32, sampler: SamplerKind, model: &Model) {
    let reqs = requests_of(name, Some(strength), Some(masks_of(name)), sampler);
    check_of(name, model, run, &reqs, &["noise", "image_eps"]);
}

#[test]
fn masked_img2img_on_a_latent_model_matches_diffusers_latent_blending() {
    let model = load("tiny-sd1");
    assert!(!model.info().inpainting);
    check_blend("blend_s075", 0.75, SamplerKind::Euler, &model);
}

#[test]
fn masked_img2img_at_strength_1_starts_from_pure_noise_as_diffusers() {
    check_blend("blend_s1", 1.0, SamplerKind::Euler, &load("tiny-sd1"));
}

#[test]
fn latent_blending_matches_diffusers_with_heun_dpmpp_2m_and_ddim() {
    let model = load("tiny-sd1");
    check_blend("blend_heun_s075", 0.75, SamplerKind::Heun, &model);
    check_blend("blend_dpmpp_2m_s075", 0.75, SamplerKind::DpmPp2m, &model);
    // diffusers' DDIM with set_alpha_to_one=False ends above σ = 0: the
    // last blend then applies to the variance-preserving latent.
    let dir = copy_fixture("tiny-sd1");
    edit_json(&dir.path().join("scheduler/scheduler_config.json"), |v| {
        v["set_alpha_to_one"] = false.into();
        v["clip_sample"] = false.into();
    });
    let ddim = Model::load(dir.path(), &opts()).unwrap();
    check_blend("blend_ddim_s075", 0.75, SamplerKind::Ddim, &ddim);
}

#[test]
fn an_inpainting_unet_matches_diffusers_with_its_mask_and_masked_image_inputs() {
    let (_dir, model) = inpainting_model();
    assert!(model.info().inpainting);
    let reqs = requests(Some(0.75), Some(masks()), SamplerKind::Euler);
    let steps = check(
        &model,
        "cond_s075",
        &reqs,
        &["noise", "image_eps", "masked_eps"],
    );
    assert_eq!(steps, 3, "strength 0.75 of 4 steps");
}

#[test]
fn an_inpainting_unet_at_strength_1_skips_the_init_image_latents_as_diffusers() {
    let (_dir, model) = inpainting_model();
    let reqs = requests(Some(1.0), Some(masks()), SamplerKind::Euler);
    check(&model, "cond_s1", &reqs, &["noise", "masked_eps"]);
}

#[test]
fn text_to_image_on_an_inpainting_unet_is_diffusers_with_a_white_mask() {
    let (_dir, model) = inpainting_model();
    let t2i = requests(None, None, SamplerKind::Euler);
    assert_eq!(
        check(&model, "cond_white_s1", &t2i, &["noise", "masked_eps"]),
        4
    );
    // An init image without a mask repaints everything too.
    let unmasked = requests(Some(1.0), None, SamplerKind::Euler);
    check(&model, "cond_white_s1", &unmasked, &["noise", "masked_eps"]);
}

#[test]
fn sdxl_latent_blending_matches_diffusers_sdxl_inpaint_pipeline() {
    let model = load("tiny-sdxl");
    assert!(!model.info().inpainting);
    check_blend_of(GOLDEN_SDXL, "blend_s075", 0.75, SamplerKind::Euler, &model);
    check_blend_of(GOLDEN_SDXL, "blend_s1", 1.0, SamplerKind::Euler, &model);
    check_blend_of(
        GOLDEN_SDXL,
        "blend_dpmpp_2m_s075",
        0.75,
        SamplerKind::DpmPp2m,
        &model,
    );
}

#[test]
fn an_sdxl_inpainting_unet_matches_diffusers_with_its_mask_and_masked_image_inputs() {
    let (_dir, model) = inpainting_model_of("tiny-sdxl", "tiny-sdxl-inpaint");
    assert!(model.info().inpainting);
    let sdxl = |strength, masks| requests_of(GOLDEN_SDXL, strength, masks, SamplerKind::Euler);
    let reqs = sdxl(Some(0.75), Some(masks_of(GOLDEN_SDXL)));
    let keys = ["noise", "image_eps", "masked_eps"];
    let steps = check_of(GOLDEN_SDXL, &model, "cond_s075", &reqs, &keys);
    assert_eq!(steps, 3, "strength 0.75 of 4 steps");
    let reqs = sdxl(Some(1.0), Some(masks_of(GOLDEN_SDXL)));
    check_of(
        GOLDEN_SDXL,
        &model,
        "cond_s1",
        &reqs,
        &["noise", "masked_eps"],
    );
    // Text to image: diffusers with a white mask at strength 1.
    let t2i = sdxl(None, None);
    check_of(
        GOLDEN_SDXL,
        &model,
        "cond_white_s1",
        &t2i,
        &["noise", "masked_eps"],
    );
}

#[test]
fn sd2_latent_blending_matches_diffusers_with_v_prediction() {
    let model = load("tiny-sd2");
    assert!(!model.info().inpainting);
    check_blend_of(GOLDEN_SD2, "blend_s075", 0.75, SamplerKind::Euler, &model);
    check_blend_of(GOLDEN_SD2, "blend_s1", 1.0, SamplerKind::Euler, &model);
    check_blend_of(
        GOLDEN_SD2,
        "blend_dpmpp_2m_s075",
        0.75,
        SamplerKind::DpmPp2m,
        &model,
    );
}

#[test]
fn an_sd2_inpainting_unet_matches_diffusers_with_its_mask_and_masked_image_inputs() {
    let (_dir, model) = inpainting_model_of("tiny-sd2", "tiny-sd2-inpaint");
    assert!(model.info().inpainting);
    let sd2 = |strength, masks| requests_of(GOLDEN_SD2, strength, masks, SamplerKind::Euler);
    let reqs = sd2(Some(0.75), Some(masks_of(GOLDEN_SD2)));
    let keys = ["noise", "image_eps", "masked_eps"];
    let steps = check_of(GOLDEN_SD2, &model, "cond_s075", &reqs, &keys);
    assert_eq!(steps, 3, "strength 0.75 of 4 steps");
    let reqs = sd2(Some(1.0), Some(masks_of(GOLDEN_SD2)));
    check_of(
        GOLDEN_SD2,
        &model,
        "cond_s1",
        &reqs,
        &["noise", "masked_eps"],
    );
    // Text to image: diffusers with a white mask at strength 1.
    let t2i = sd2(None, None);
    check_of(
        GOLDEN_SD2,
        &model,
        "cond_white_s1",
        &t2i,
        &["noise", "masked_eps"],
    );
}

/// Each image's pixels: (repainted, kept), as (the largest difference from
/// the init image, over the pixels of each kind).
fn kept_and_repainted(img: &RgbImage, init: &RgbImage, mask: &Mask) -> (u8, u8) {
    let (mut repainted, mut kept) = (0u8, 0u8);
    for (i, (a, b)) in img.pixels.chunks(3).zip(init.pixels.chunks(3)).enumerate() {
        let d = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        if mask.repaints(i) {
            repainted = repainted.max(d);
        } else {
            kept = kept.max(d);
        }
    }
    (repainted, kept)
}

/// Left half repainted.
fn left_half(side: u32) -> Mask {
    let v: Vec<u8> = (0..side * side)
        .map(|i| if i % side < side / 2 { 255 } else { 0 })
        .collect();
    Mask::from_u8(side, side, &v).unwrap()
}

fn check_pixel_model_keeps_the_unmasked_pixels(dir: &Path) {
    let model = Model::load(dir, &opts()).unwrap();
    let info = model.info().clone();
    let side = info.default_size.width;
    let init = gradient(side);
    let mask = left_half(side);
    let mut r = request("a red apple", 3, side, info.default_steps);
    r.sampler = None;
    r.guidance_scale = info.default_guidance;
    r.init_image = Some((init.clone(), 0.8));
    r.mask = Some(mask.clone());
    let out = model.generate(&[r], &mut (), &CancelToken::new()).unwrap();
    let (repainted, kept) = kept_and_repainted(&out[0].image, &init, &mask);
    assert!(kept <= 1, "{}: kept pixels moved by {kept}", info.name);
    assert!(
        repainted > 20,
        "{}: repainted pixels moved by only {repainted}",
        info.name
    );
}

#[test]
fn the_pixel_model_keeps_the_unmasked_pixels_of_the_init_image() {
    check_pixel_model_keeps_the_unmasked_pixels(&fixture("tiny-pixel"));
}

#[test]
fn the_bundled_model_keeps_the_unmasked_pixels_of_the_init_image() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/easel-emoji");
    if !dir.join("model_index.json").exists() {
        eprintln!("skipped: {} is absent", dir.display());
        return;
    }
    check_pixel_model_keeps_the_unmasked_pixels(&dir);
}

#[test]
fn masked_and_unmasked_requests_share_a_batch_and_match_each_alone() {
    let (_dir, inpainting) = inpainting_model();
    let (_dir_2, inpainting_2) = inpainting_model_of("tiny-sd2", "tiny-sd2-inpaint");
    let (_dir_xl, inpainting_xl) = inpainting_model_of("tiny-sdxl", "tiny-sdxl-inpaint");
    for (name, model) in [
        ("tiny-sd1", &load("tiny-sd1")),
        ("tiny-sd1-inpaint", &inpainting),
        ("tiny-sd2", &load("tiny-sd2")),
        ("tiny-sd2-inpaint", &inpainting_2),
        ("tiny-sdxl", &load("tiny-sdxl")),
        ("tiny-sdxl-inpaint", &inpainting_xl),
    ] {
        let mut reqs = requests(Some(0.75), Some(masks()), SamplerKind::Euler);
        reqs[1].mask = None;
        let batch = model.generate(&reqs, &mut (), &CancelToken::new()).unwrap();
        for (i, r) in reqs.iter().enumerate() {
            let alone = model
                .generate(std::slice::from_ref(r), &mut (), &CancelToken::new())
                .unwrap();
            let diff = max_abs_diff(&levels(&batch[i].image), &levels(&alone[0].image));
            assert!(
                diff <= 1.0,
                "{name}: image {i} in a batch differs by {diff}"
            );
        }
    }
}

#[test]
fn a_mask_without_an_init_image_is_refused() {
    let model = load("tiny-pixel");
    let mut r = request("a", 1, 16, 4);
    r.mask = Some(left_half(16));
    let e = model
        .generate(&[r], &mut (), &CancelToken::new())
        .unwrap_err();
    assert_eq!(e.code(), "mask_without_init_image");
    assert!(e.is_bad_request());
}

#[test]
fn a_mask_of_another_size_is_refused() {
    let model = load("tiny-pixel");
    let mut r = request("a", 1, 16, 4);
    r.init_image = Some((gradient(16), 0.5));
    r.mask = Some(left_half(8));
    let e = model
        .generate(&[r.clone()], &mut (), &CancelToken::new())
        .unwrap_err();
    assert_eq!(e.code(), "invalid_mask");
    assert!(e.is_bad_request());
    r.size = Size {
        width: 8,
        height: 8,
    };
    r.init_image = Some((gradient(8), 0.5));
    r.mask = Some(left_half(16));
    let e = model
        .generate(&[r], &mut (), &CancelToken::new())
        .unwrap_err();
    assert_eq!(e.code(), "invalid_mask");
}
