//! The semantic filter's embeddings against sentence-transformers: the
//! bundled MiniLM (`models/easel-emoji`) must give what
//! `SentenceTransformer("all-MiniLM-L6-v2").encode(..., normalize_embeddings=True)`
//! gives with the same (f16-rounded) weights. The fixture is written by
//! `tools/policy/prompt_reference.py`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use easel_policy::{Embedder, MiniLmEmbedder, PolicyError};
use serde::Deserialize;

/// Largest |difference| allowed per component against the f16 reference:
/// the same weights in f32 on both sides, so only summation order differs.
const SAME_WEIGHTS_TOLERANCE: f32 = 1e-5;
/// Smallest cosine allowed with the original f32 weights' embedding (the
/// f16 rounding of the shipped copy costs ~2e-4 per component).
const F32_MIN_COSINE: f32 = 0.9999;

#[derive(Deserialize)]
struct Golden {
    max_seq_length: usize,
    sentences: Vec<String>,
    tokens: Vec<usize>,
    f16: Vec<Vec<f32>>,
    f32: Vec<Vec<f32>>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden() -> Golden {
    let path = repo().join("crates/policy/tests/fixtures/prompt/minilm_golden.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn bundled() -> MiniLmEmbedder {
    MiniLmEmbedder::load(&repo().join("models/easel-emoji")).unwrap()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn bundled_minilm_matches_sentence_transformers() {
    let g = golden();
    assert_eq!(g.max_seq_length, 256);
    assert!(
        g.tokens.iter().any(|&t| t > 32),
        "the fixture has a sentence longer than the UNet's 32 tokens"
    );
    let e = bundled();
    assert_eq!(e.dim(), 384);
    let texts: Vec<&str> = g.sentences.iter().map(String::as_str).collect();
    let got = e.embed(&texts).unwrap();
    let mut worst: f32 = 0.0;
    for (i, row) in got.iter().enumerate() {
        let diff = row
            .iter()
            .zip(&g.f16[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        worst = worst.max(diff);
        assert!(
            diff <= SAME_WEIGHTS_TOLERANCE,
            "sentence {i} ({:?}): max |diff| {diff:e} vs the f16 reference",
            g.sentences[i]
        );
        let cos = dot(row, &g.f32[i]);
        assert!(cos >= F32_MIN_COSINE, "sentence {i}: cosine {cos} with f32");
        assert!((dot(row, row).sqrt() - 1.0).abs() < 1e-5);
    }
    eprintln!("max |diff| vs sentence-transformers (same weights): {worst:e}");
}

#[test]
fn one_at_a_time_equals_batched() {
    let g = golden();
    let e = bundled();
    let texts: Vec<&str> = g.sentences.iter().map(String::as_str).collect();
    let batch = e.embed(&texts).unwrap();
    for (i, t) in texts.iter().enumerate() {
        let one = e.embed(&[t]).unwrap();
        let diff = one[0]
            .iter()
            .zip(&batch[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-5, "padding leaked into sentence {i}: {diff:e}");
    }
}

#[test]
fn a_bare_sentence_transformers_folder_loads_too() {
    // The same weights laid out as a sentence-transformers folder.
    let dir = std::env::temp_dir().join(format!("easel-minilm-bare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let m = repo().join("models/easel-emoji");
    for (from, to) in [
        ("text_encoder/config.json", "config.json"),
        ("text_encoder/model.safetensors", "model.safetensors"),
        ("tokenizer/tokenizer.json", "tokenizer.json"),
    ] {
        std::fs::copy(m.join(from), dir.join(to)).unwrap();
    }
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        r#"{"max_seq_length": 256}"#,
    )
    .unwrap();
    let bare = MiniLmEmbedder::load(&dir).unwrap();
    let g = golden();
    let got = bare.embed(&[g.sentences[4].as_str()]).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let diff = got[0]
        .iter()
        .zip(&g.f16[4])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff <= SAME_WEIGHTS_TOLERANCE, "{diff:e}");
}

#[test]
fn a_missing_model_is_a_model_error_naming_the_folder() {
    let err = MiniLmEmbedder::load(Path::new("/nonexistent/minilm"))
        .err()
        .unwrap();
    assert_eq!(err.code(), "policy_model_unavailable");
    assert!(
        matches!(&err, PolicyError::Model { path, .. } if path.contains("/nonexistent/minilm"))
    );
    // A folder without a BERT encoder: the UNet's folder has a config but no text model.
    let err = MiniLmEmbedder::load(&repo().join("models/easel-emoji/unet"))
        .err()
        .unwrap();
    assert_eq!(err.code(), "policy_model_unavailable");
}

#[test]
fn embedding_one_prompt_takes_milliseconds() {
    let e = bundled();
    let prompt = "a golden retriever running on the beach at sunset";
    e.embed(&[prompt]).unwrap(); // warm-up
    let n = 20;
    let start = Instant::now();
    for _ in 0..n {
        e.embed(&[prompt]).unwrap();
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
    eprintln!("MiniLM: {ms:.1} ms per 12-token prompt (mean of {n}, this build profile)");
    // Generous: the budget is "a few ms" in release; a debug-ish test build
    // on a loaded 2-core machine must still stay well under a generation step.
    assert!(ms < 200.0, "{ms} ms per prompt");
}
