//! easelmark survives each family of transformations on a fixed set of
//! pictures: twelve outputs of the bundled model (`fixtures/outputs/`,
//! enlarged ×8 as the server does before marking) and the natural
//! pictures of `fixtures/natural/` at 256 pixels. Every read must name
//! the right image; a family may miss at most the number of images
//! stated with it, which is what easelmark v1 misses on this set today
//! (one of the natural pictures, a dense texture, is not read even
//! untouched): the bound catches a regression, and the benchmark's
//! table in `docs/watermark.md` has the rates on more images.

use std::path::Path;

use easel_core::RgbImage;
use easel_media::attacks::{self, brightness, contrast, crop, jpeg, resize, webp};
use easel_media::{DecodeLimits, WatermarkPayload, detect_watermark, embed_watermark};
use image::imageops::FilterType;

fn load(path: &Path) -> RgbImage {
    easel_media::decode_untrusted(&std::fs::read(path).unwrap(), &DecodeLimits::default()).unwrap()
}

fn fixtures(folder: &str) -> Vec<RgbImage> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(folder);
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

/// The marked pictures and their payloads.
fn marked() -> Vec<(RgbImage, WatermarkPayload)> {
    let outputs = fixtures("outputs")
        .into_iter()
        .map(|o| easel_media::upscale_for_watermark(&o).unwrap());
    let natural = fixtures("natural")
        .into_iter()
        .map(|n| easel_media::resize(&n, 256, 256).unwrap());
    outputs
        .chain(natural)
        .enumerate()
        .map(|(i, picture)| {
            let payload = WatermarkPayload {
                server: 0xe5e1,
                image: 0x1000 + i as u32,
            };
            (embed_watermark(&picture, payload).unwrap(), payload)
        })
        .collect()
}

/// Reads every attacked picture; the images missed. A wrong id fails.
fn missed(
    family: &str,
    images: &[(RgbImage, WatermarkPayload)],
    attack: impl Fn(&RgbImage, &mut u64) -> RgbImage,
) -> usize {
    let mut rng = 11;
    let mut missed = 0;
    for (image, payload) in images {
        match detect_watermark(&attack(image, &mut rng)) {
            Some(r) => assert_eq!(r.payload, *payload, "{family}: a wrong id"),
            None => missed += 1,
        }
    }
    eprintln!(
        "{family}: {} of {} read",
        images.len() - missed,
        images.len()
    );
    missed
}

/// A transformation; the `u64` draws crop positions.
type Transform = Box<dyn Fn(&RgbImage, &mut u64) -> RgbImage>;

#[test]
fn the_mark_survives_each_family_of_transformations() {
    let images = marked();
    assert_eq!(images.len(), 20);
    let families: Vec<(&str, usize, Transform)> = vec![
        ("none", 1, Box::new(|i, _| i.clone())),
        ("jpeg 70", 2, Box::new(|i, _| jpeg(i, 70))),
        ("jpeg 90", 1, Box::new(|i, _| jpeg(i, 90))),
        ("webp 75", 2, Box::new(|i, _| webp(i, 75.0))),
        (
            "resize 0.5 bilinear",
            2,
            Box::new(|i, _| resize(i, 0.5, FilterType::Triangle)),
        ),
        (
            "resize 2 bicubic",
            1,
            Box::new(|i, _| resize(i, 2.0, FilterType::CatmullRom)),
        ),
        (
            "crop 87 % at a random position",
            2,
            Box::new(|i, rng| {
                let side = (f64::from(i.width) * 0.87).round() as u32;
                let x = attacks::draw(rng, i.width - side + 1);
                let y = attacks::draw(rng, i.height - side + 1);
                crop(i, x, y, side, side)
            }),
        ),
        ("brightness +15 %", 1, Box::new(|i, _| brightness(i, 1.15))),
        ("contrast +15 %", 1, Box::new(|i, _| contrast(i, 1.15))),
        ("contrast -15 %", 1, Box::new(|i, _| contrast(i, 0.85))),
        (
            "resize 0.75 then jpeg 85",
            2,
            Box::new(|i, _| jpeg(&resize(i, 0.75, FilterType::CatmullRom), 85)),
        ),
    ];
    let mut failures = Vec::new();
    for (family, allowed, attack) in &families {
        let n = missed(family, &images, attack);
        if n > *allowed {
            failures.push(format!("{family}: missed {n} (at most {allowed})"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn unmarked_pictures_read_as_unmarked() {
    for picture in fixtures("outputs").iter().chain(&fixtures("natural")) {
        let picture =
            easel_media::upscale_for_watermark(picture).unwrap_or_else(|| picture.clone());
        assert_eq!(detect_watermark(&picture), None);
        assert_eq!(detect_watermark(&jpeg(&picture, 80)), None);
    }
}
