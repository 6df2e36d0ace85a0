//! The scorers and the pHash against their reference implementations: the
//! bundled easel-emoji scorer and pHash against PyTorch/numpy
//! (`tools/emoji/scorer_golden.py`), the CLIP scorer against transformers'
//! `CLIPModel` on a tiny random-weight folder (`tools/emoji/make_tiny_clip.py`).

use std::path::{Path, PathBuf};

use easel_engine::RgbImage;
use easel_engine::model::DeviceChoice;
use easel_engine::score::{
    ClipScorer, EmojiScorer, PhashIndex, Scorer, ScorerKind, cosine, hamming, load_scorer, phash,
};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(rel: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/score")
        .join(rel);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn image_from_hex(hex: &str) -> RgbImage {
    let pixels: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(pixels.len(), 32 * 32 * 3);
    RgbImage {
        width: 32,
        height: 32,
        pixels,
    }
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The scorer's text embeddings of the golden prompts match the reference's
/// within `tol`; returns the prompts.
fn check_text_embeddings<'a>(scorer: &dyn Scorer, golden: &'a Value, tol: f32) -> Vec<&'a str> {
    let prompts: Vec<&str> = golden["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let texts = scorer.embed_texts(&prompts).unwrap();
    for (i, want) in golden["text_embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let d = max_abs_diff(&texts[i], &floats(want));
        assert!(d < tol, "text embedding of {:?}: max diff {d}", prompts[i]);
    }
    prompts
}

fn bundled_scorer_dir() -> Option<PathBuf> {
    let dir = root().join("models/easel-emoji/scorer");
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!("skipped: {} is absent", dir.display());
        None
    }
}

#[test]
fn the_emoji_scorer_matches_the_pytorch_reference_within_1e_3() {
    let Some(dir) = bundled_scorer_dir() else {
        return;
    };
    let golden = fixture("golden.json");
    let scorer = EmojiScorer::load(&dir, DeviceChoice::Cpu).unwrap();
    let prompts = check_text_embeddings(&scorer, &golden, 1e-3);
    let entries = golden["images"].as_array().unwrap();
    let images: Vec<RgbImage> = entries
        .iter()
        .map(|e| image_from_hex(e["rgb_hex"].as_str().unwrap()))
        .collect();
    let embedded = scorer.embed_images(&images).unwrap();
    for (i, e) in entries.iter().enumerate() {
        let name = e["name"].as_str().unwrap();
        let d = max_abs_diff(&embedded[i], &floats(&e["embedding"]));
        assert!(d < 1e-3, "image embedding of {name}: max diff {d}");
        for (j, want) in floats(&e["scores"]).iter().enumerate() {
            let got = scorer.score(&images[i], prompts[j]).unwrap();
            assert!(
                (got - want).abs() < 1e-3,
                "score({name}, {:?}) = {got}, reference {want}",
                prompts[j]
            );
        }
    }
}

#[test]
fn the_emoji_scorer_ranks_a_training_image_first_for_its_own_name() {
    let Some(dir) = bundled_scorer_dir() else {
        return;
    };
    let golden = fixture("golden.json");
    let scorer = load_scorer(&dir, DeviceChoice::Cpu).unwrap();
    assert_eq!(scorer.kind(), ScorerKind::EaselEmoji);
    assert_eq!(scorer.embed_dim(), 384);
    let names = ["red apple", "taco", "grinning face"];
    let texts = scorer.embed_texts(&names).unwrap();
    for e in golden["images"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let Some(own) = names.iter().position(|n| *n == name) else {
            continue;
        };
        let img = scorer
            .embed_images(&[image_from_hex(e["rgb_hex"].as_str().unwrap())])
            .unwrap();
        let scores: Vec<f32> = texts.iter().map(|t| cosine(&img[0], t)).collect();
        let best = (0..names.len())
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap();
        assert_eq!(best, own, "{name}: scores {scores:?}");
    }
}

#[test]
fn phash_matches_the_python_index_bit_for_bit() {
    let golden = fixture("golden.json");
    for e in golden["images"].as_array().unwrap() {
        let img = image_from_hex(e["rgb_hex"].as_str().unwrap());
        let want = u64::from_str_radix(e["phash"].as_str().unwrap(), 16).unwrap();
        let got = phash(&img);
        assert_eq!(
            got,
            want,
            "{}: {got:016x} vs {want:016x}",
            e["name"].as_str().unwrap()
        );
    }
}

#[test]
fn phash_of_a_2x_upscale_equals_phash_of_the_original() {
    let golden = fixture("golden.json");
    let img = image_from_hex(golden["images"][0]["rgb_hex"].as_str().unwrap());
    let mut big = Vec::with_capacity(64 * 64 * 3);
    for y in 0..64 {
        for x in 0..64 {
            let p = ((y / 2) * 32 + x / 2) * 3;
            big.extend_from_slice(&img.pixels[p..p + 3]);
        }
    }
    let big = RgbImage {
        width: 64,
        height: 64,
        pixels: big,
    };
    assert_eq!(phash(&big), phash(&img));
}

#[test]
fn a_training_image_is_flagged_as_a_near_copy_of_itself() {
    let path = root().join("models/easel-emoji/index/phash.json");
    if !path.is_file() {
        eprintln!("skipped: {} is absent", path.display());
        return;
    }
    let index = PhashIndex::load(&path).unwrap();
    assert!(index.entries.len() > 1000);
    let golden = fixture("golden.json");
    let apple = &golden["images"][0];
    assert_eq!(apple["name"], "red apple");
    let hash = phash(&image_from_hex(apple["rgb_hex"].as_str().unwrap()));
    let nearest = index.nearest(hash).unwrap();
    assert_eq!(nearest.distance, 0);
    assert!(nearest.near_copy);
    assert_eq!(hamming(index.entries[nearest.index].hash, hash), 0);
    // Seeded noise is nothing like an emoji.
    let noise = golden["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "noise")
        .unwrap();
    let far = index
        .nearest(phash(&image_from_hex(noise["rgb_hex"].as_str().unwrap())))
        .unwrap();
    assert!(!far.near_copy, "noise within {} bits", far.distance);
}

#[test]
fn the_clip_scorer_matches_transformers_on_a_tiny_random_clip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/score/tiny-clip");
    let golden = fixture("tiny-clip/golden.json");
    let tol = golden["tolerance"].as_f64().unwrap() as f32;
    let scorer = load_scorer(&dir, DeviceChoice::Cpu).unwrap();
    assert_eq!(scorer.kind(), ScorerKind::Clip);
    assert_eq!(scorer.embed_dim(), 16);
    check_text_embeddings(&*scorer, &golden, tol);
    for e in golden["images"].as_array().unwrap() {
        let img = image_from_hex(e["rgb_hex"].as_str().unwrap());
        let got = scorer.embed_images(&[img]).unwrap();
        let d = max_abs_diff(&got[0], &floats(&e["embedding"]));
        assert!(d < tol, "image embedding: max diff {d}");
    }
}

#[test]
fn a_clip_folder_with_another_activation_is_refused_before_loading_weights() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/score/tiny-clip");
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg: Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    cfg["vision_config"]["hidden_act"] = "gelu".into();
    std::fs::write(tmp.path().join("config.json"), cfg.to_string()).unwrap();
    let err = match ClipScorer::load(tmp.path(), DeviceChoice::Cpu) {
        Ok(_) => panic!("a gelu CLIP loaded"),
        Err(e) => e,
    };
    assert_eq!(err.code(), "invalid_model_config");
    assert!(err.to_string().contains("quick_gelu"), "{err}");
}

#[test]
fn a_bundled_model_image_ranks_its_prompt_in_the_scorer_top_5() {
    let Some(dir) = bundled_scorer_dir() else {
        return;
    };
    let model_dir = dir.parent().unwrap();
    let model = easel_engine::Model::load(model_dir, &Default::default()).unwrap();
    let info = model.info().clone();
    // The first prompt of `easel eval` with its seed (rank 1 of 100 there).
    let request = easel_engine::ImageRequest {
        prompt: "red apple".into(),
        negative_prompt: String::new(),
        size: info.default_size,
        steps: info.default_steps,
        guidance_scale: info.default_guidance,
        seed: 1000,
        sampler: None,
        schedule: easel_core::ScheduleKind::Default,
        init_image: None,
        mask: None,
        clip_skip: None,
    };
    let cancel = easel_engine::CancelToken::new();
    let a = model
        .generate(std::slice::from_ref(&request), &mut (), &cancel)
        .unwrap();
    let b = model.generate(&[request], &mut (), &cancel).unwrap();
    assert_eq!(a[0].image, b[0].image, "same seed, different pixels");

    let list = std::fs::read_to_string(model_dir.join("eval/prompts.txt")).unwrap();
    let names: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains('='))
        .collect();
    assert_eq!(names.len(), 100);
    let scorer = load_scorer(&dir, DeviceChoice::Cpu).unwrap();
    let image = &scorer.embed_images(&[a[0].image.clone()]).unwrap()[0];
    let scores: Vec<f32> = scorer
        .embed_texts(&names)
        .unwrap()
        .iter()
        .map(|t| cosine(image, t))
        .collect();
    let own = scores[names.iter().position(|n| *n == "red apple").unwrap()];
    let rank = scores.iter().filter(|&&s| s > own).count();
    assert!(rank < 5, "red apple ranks {rank} of 100");
    assert!((scorer.score(&a[0].image, "red apple").unwrap() - own).abs() < 1e-5);
}
