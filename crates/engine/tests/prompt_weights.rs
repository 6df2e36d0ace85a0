//! AUTOMATIC1111 prompt syntax against the reference recorded by
//! `tools/golden/prompt_weights.py` (transformers' CLIPTextModel on the
//! tiny fixtures), plus the rules around it.
//!
//! Tolerances: the parse is exact (text, and each weight as the `f32` of
//! the reference's `f64` product); the conditioning tensors (weighted,
//! mean-restored, chunked, padded) within 1e-4 absolute, the golden text
//! tolerance (values are O(1)). A prompt without syntax that fits one chunk
//! is encoded bit for bit as the plain path (diffusers' encoding) encodes it.

mod common;

use common::*;
use easel_core::{PromptPart, parse_prompt};
use easel_engine::candle_core::Tensor;
use easel_engine::{CancelToken, EngineError, ImageRequest};
use serde_json::Value;

const TOL: f32 = 1e-4;
const NAME: &str = "prompt-weights";

/// `(text, weight)`, a break as `("BREAK", NaN)`.
fn parts_of(value: &Value) -> Vec<(String, f32)> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|p| match p {
            Value::String(s) if s == "BREAK" => (s.clone(), f32::NAN),
            Value::Array(a) => (
                a[0].as_str().unwrap().to_string(),
                a[1].as_f64().unwrap() as f32,
            ),
            other => panic!("unexpected part {other}"),
        })
        .collect()
}

fn parsed(prompt: &str) -> Vec<(String, f32)> {
    parse_prompt(prompt)
        .unwrap()
        .into_iter()
        .map(|p| match p {
            PromptPart::Text(s) => (s.text, s.weight),
            PromptPart::Break => ("BREAK".to_string(), f32::NAN),
        })
        .collect()
}

fn same_parts(a: &[(String, f32)], b: &[(String, f32)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.0 == y.0 && (x.1.to_bits() == y.1.to_bits() || (x.1.is_nan() && y.1.is_nan()))
        })
}

fn case_prompt(meta: &Value, name: &str) -> String {
    meta["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()["prompt"]
        .as_str()
        .unwrap()
        .to_string()
}

fn names(meta: &Value, key: &str) -> Vec<String> {
    meta[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_parser_matches_the_reference_on_every_case() {
    let meta = meta(NAME);
    let cases = meta["cases"].as_array().unwrap().iter();
    let mut n = 0;
    for case in cases.chain(meta["parse_only"].as_array().unwrap()) {
        let prompt = case["prompt"].as_str().unwrap();
        let (got, want) = (parsed(prompt), parts_of(&case["parts"]));
        assert!(same_parts(&got, &want), "{prompt:?}: {got:?} vs {want:?}");
        n += 1;
    }
    assert!(n > 40, "{n} cases");
}

#[test]
fn sd1_weighted_chunked_conditioning_matches_the_reference() {
    let model = load("tiny-sd1");
    let (meta, g) = (meta(NAME), golden(NAME));
    for case in meta["cases"].as_array().unwrap() {
        let (name, prompt) = (
            case["name"].as_str().unwrap(),
            case["prompt"].as_str().unwrap(),
        );
        let (got, pooled) = model.condition_prompts(&[prompt], None).unwrap();
        assert!(pooled.is_none());
        let diff = max_abs_diff(&got, &g[&format!("sd1.{name}")]);
        eprintln!("sd1 {name}: {diff:e}");
        assert!(diff < TOL, "{name}: differs by {diff}");
    }
}

#[test]
fn sd1_clip_skip_2_matches_the_reference() {
    let model = load("tiny-sd1");
    let (meta, g) = (meta(NAME), golden(NAME));
    for name in names(&meta, "skip2") {
        let prompt = case_prompt(&meta, &name);
        let (got, _) = model.condition_prompts(&[&prompt], Some(2)).unwrap();
        let diff = max_abs_diff(&got, &g[&format!("sd1.{name}.skip2")]);
        eprintln!("sd1 {name} clip skip 2: {diff:e}");
        assert!(diff < TOL, "{name} at clip skip 2: differs by {diff}");
        let (last, _) = model.condition_prompts(&[&prompt], Some(1)).unwrap();
        assert!(
            max_abs_diff(&got, &last) > 1e-2,
            "clip skip 2 changed nothing"
        );
    }
}

#[test]
fn a_batch_is_padded_to_one_chunk_count_with_empty_prompt_chunks() {
    let model = load("tiny-sd1");
    let (meta, g) = (meta(NAME), golden(NAME));
    let prompts = names(&meta, "sd1_batch");
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let (got, _) = model.condition_prompts(&refs, None).unwrap();
    assert_eq!(got.dims()[1], 2 * 77);
    let diff = max_abs_diff(&got, &g["sd1.batch"]);
    eprintln!("sd1 batch: {diff:e}");
    assert!(diff < TOL, "batch differs by {diff}");
}

#[test]
fn sdxl_weighted_conditioning_and_first_chunk_pooling_match_the_reference() {
    let model = load("tiny-sdxl");
    let (meta, g) = (meta(NAME), golden(NAME));
    for name in names(&meta, "sdxl_cases") {
        let prompt = case_prompt(&meta, &name);
        let (got, pooled) = model.condition_prompts(&[&prompt], None).unwrap();
        let diff = max_abs_diff(&got, &g[&format!("sdxl.{name}")]);
        eprintln!("sdxl {name}: {diff:e}");
        assert!(diff < TOL, "{name}: differs by {diff}");
        let diff = max_abs_diff(&pooled.unwrap(), &g[&format!("sdxl.{name}.pooled")]);
        assert!(diff < TOL, "{name} pooled: differs by {diff}");
    }
}

fn identical(a: &Tensor, b: &Tensor) -> bool {
    let v = |t: &Tensor| -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    };
    a.dims() == b.dims() && v(a) == v(b)
}

#[test]
fn a_prompt_without_syntax_is_encoded_bit_for_bit_as_the_plain_path() {
    let prompts = ["a red apple", "grinning face with big eyes", ""];
    for name in ["tiny-sd1", "tiny-sd2", "tiny-sdxl", "tiny-pixel"] {
        let model = load(name);
        let plain = model.encode_prompts(&prompts).unwrap();
        let (weighted, pooled) = model.condition_prompts(&prompts, None).unwrap();
        assert!(identical(&plain, &weighted), "{name}: embeddings differ");
        if let Some(pooled) = pooled {
            let plain = model.pooled_prompts(&prompts).unwrap().unwrap();
            assert!(identical(&plain, &pooled), "{name}: pooled differs");
        }
    }
}

#[test]
fn bert_applies_weights_treats_break_as_a_space_and_does_not_chunk() {
    let model = load("tiny-pixel");
    let enc = |p: &str| model.condition_prompts(&[p], None).unwrap().0;
    let plain = enc("a red apple");
    assert!(identical(&plain, &enc("a (red:1) apple")));
    assert!(identical(&enc("a red apple"), &enc("a red BREAK apple")));
    let weighted = enc("a (red:1.5) apple");
    assert_eq!(weighted.dims(), plain.dims());
    assert!(
        max_abs_diff(&weighted, &plain) > 1e-3,
        "the weight changed nothing"
    );
    let long = vec!["apple"; 100].join(" ");
    assert_eq!(enc(&long).dims(), plain.dims(), "BERT is not chunked");
}

fn generate(name: &str, requests: &[ImageRequest]) -> Result<Vec<Vec<String>>, EngineError> {
    let model = load(name);
    let images = model.generate(requests, &mut (), &CancelToken::new())?;
    Ok(images.into_iter().map(|i| i.warnings).collect())
}

#[test]
fn clip_skip_outside_one_to_the_layer_count_is_rejected_with_a_stable_code() {
    for (name, bad) in [("tiny-sd1", 0), ("tiny-sd1", 3), ("tiny-pixel", 13)] {
        let mut r = request("a red apple", 1, 16, 1);
        r.clip_skip = Some(bad);
        let e = generate(name, &[r]).unwrap_err();
        assert_eq!(e.code(), "invalid_clip_skip", "{name} {bad}: {e}");
        assert!(e.is_bad_request());
    }
    let e = load("tiny-sd1")
        .condition_prompts(&["a"], Some(3))
        .unwrap_err();
    assert!(e.to_string().contains("between 1 and 2"), "{e}");
    assert!(e.to_string().contains("2 layers"), "{e}");
}

#[test]
fn clip_skip_on_a_model_that_ignores_it_gives_a_warning() {
    for name in ["tiny-sd2", "tiny-sdxl", "tiny-pixel"] {
        let mut r = request("a red apple", 1, 16, 1);
        r.clip_skip = Some(2);
        let w = generate(name, &[r]).unwrap();
        assert_eq!(w[0].len(), 1, "{name}: {w:?}");
        assert!(w[0][0].contains("clip_skip 2 is ignored"), "{name}: {w:?}");
    }
    let mut r = request("a red apple", 1, 16, 1);
    r.clip_skip = Some(2);
    assert!(generate("tiny-sd1", &[r]).unwrap()[0].is_empty());
}

#[test]
fn requests_with_different_clip_skips_cannot_share_a_batch() {
    let a = request("a", 1, 16, 1);
    let mut b = request("b", 2, 16, 1);
    b.clip_skip = Some(2);
    let e = generate("tiny-sd1", &[a, b]).unwrap_err();
    assert_eq!(e.code(), "incompatible_batch", "{e}");
}

#[test]
fn a_malformed_or_out_of_range_weight_is_a_bad_request() {
    for prompt in ["a (red:1.2.3) apple", "a (red:11) apple"] {
        let e = generate("tiny-pixel", &[request(prompt, 1, 16, 1)]).unwrap_err();
        assert_eq!(e.code(), "invalid_prompt_weight", "{prompt}: {e}");
        assert!(e.is_bad_request());
    }
}

#[test]
fn a_guided_batch_with_long_and_short_prompts_runs_and_cuts_past_eight_chunks() {
    let mut long = request(&vec!["red"; 700].join(" "), 1, 16, 1);
    long.negative_prompt = "blurry BREAK dark".into();
    let short = request("a (red) apple", 2, 16, 1);
    let w = generate("tiny-sd1", &[long.clone(), short.clone()]).unwrap();
    assert_eq!(w[0].len(), 1, "{w:?}");
    assert!(
        w[0][0].contains("truncated to 8 chunks of 75 tokens"),
        "{w:?}"
    );
    assert!(w[1].is_empty(), "{w:?}");
    // SDXL: both encoders padded alike; the empty negative stays zero.
    long.negative_prompt.clear();
    generate("tiny-sdxl", &[long, short]).unwrap();
}
