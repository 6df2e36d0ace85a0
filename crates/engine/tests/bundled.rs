//! The bundled model (`models/easel-emoji`, issue 7) loads through the
//! ordinary diffusers loader and generates, reproducibly.

mod common;

use std::path::Path;
use std::time::Instant;

use easel_engine::{Architecture, CancelToken, Model};

#[test]
fn the_bundled_model_loads_through_the_standard_loader_and_generates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/easel-emoji");
    if !dir.join("model_index.json").exists() {
        eprintln!("skipped: {} is absent", dir.display());
        return;
    }
    let start = Instant::now();
    let model = Model::load(&dir, &common::opts()).unwrap();
    let loaded = start.elapsed();
    let info = model.info().clone();
    assert_eq!(info.architecture, Architecture::Pixel);
    let mut r = common::request(
        "a red apple",
        42,
        info.default_size.width,
        info.default_steps,
    );
    r.sampler = None;
    r.guidance_scale = info.default_guidance;
    let start = Instant::now();
    let a = model
        .generate(&[r.clone()], &mut (), &CancelToken::new())
        .unwrap();
    let took = start.elapsed();
    let b = model.generate(&[r], &mut (), &CancelToken::new()).unwrap();
    assert_eq!(a[0].image, b[0].image);
    assert_eq!(a[0].sampler, info.default_sampler);
    eprintln!(
        "easel-emoji: loaded in {loaded:?}; {}x{} image, {} steps, guidance {}, {}: {took:?}",
        info.default_size.width,
        info.default_size.height,
        info.default_steps,
        info.default_guidance,
        info.default_sampler
    );
}
