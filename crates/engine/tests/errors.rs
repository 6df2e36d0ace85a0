//! One test per failure the engine must report as a typed error (issue 2,
//! point 3), plus the warning for an over-long prompt. Broken models are
//! made at test time from copies of the fixtures.

mod common;

use common::*;
use easel_core::Size;
use easel_engine::{CancelToken, DeviceChoice, EngineError, LoadOptions, Model};

fn load_err(dir: &std::path::Path) -> EngineError {
    match Model::load(dir, &opts()) {
        Ok(_) => panic!("{} loaded but should not", dir.display()),
        Err(e) => e,
    }
}

const UNET_WEIGHTS: &str = "unet/diffusion_pytorch_model.safetensors";

#[test]
fn a_missing_folder_is_a_missing_file() {
    let e = load_err(std::path::Path::new("/nonexistent/easel-model"));
    assert!(matches!(e, EngineError::MissingFile { .. }), "{e}");
}

#[test]
fn a_folder_without_model_index_is_a_missing_file_naming_it() {
    let dir = copy_fixture("tiny-pixel");
    std::fs::remove_file(dir.path().join("model_index.json")).unwrap();
    let e = load_err(dir.path());
    assert!(e.to_string().contains("model_index.json"), "{e}");
    assert_eq!(e.code(), "model_file_missing");
}

#[test]
fn missing_unet_weights_are_a_missing_file() {
    let dir = copy_fixture("tiny-pixel");
    std::fs::remove_file(dir.path().join(UNET_WEIGHTS)).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, EngineError::MissingFile { .. }), "{e}");
}

#[test]
fn a_missing_tokenizer_is_a_missing_file() {
    let dir = copy_fixture("tiny-sd1");
    std::fs::remove_file(dir.path().join("tokenizer/merges.txt")).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, EngineError::MissingFile { .. }), "{e}");
}

#[test]
fn an_unsupported_unet_block_is_an_unknown_architecture() {
    let dir = copy_fixture("tiny-pixel");
    edit_json(&dir.path().join("unet/config.json"), |v| {
        v["down_block_types"][0] = "AttnDownBlock2D".into();
    });
    let e = load_err(dir.path());
    assert!(matches!(e, EngineError::UnknownArchitecture { .. }), "{e}");
    assert!(e.to_string().contains("AttnDownBlock2D"), "{e}");
}

#[test]
fn an_unsupported_added_embedding_is_an_unknown_architecture_not_a_wrong_image() {
    let dir = copy_fixture("tiny-sdxl");
    edit_json(&dir.path().join("unet/config.json"), |v| {
        v["addition_embed_type"] = "image".into();
    });
    let e = load_err(dir.path());
    assert!(matches!(e, EngineError::UnknownArchitecture { .. }), "{e}");
}

#[test]
fn an_unknown_text_encoder_is_an_unknown_architecture() {
    let dir = copy_fixture("tiny-pixel");
    edit_json(&dir.path().join("text_encoder/config.json"), |v| {
        v["model_type"] = "t5".into();
        v["architectures"] = serde_json::json!(["T5EncoderModel"]);
    });
    let e = load_err(dir.path());
    assert!(matches!(e, EngineError::UnknownArchitecture { .. }), "{e}");
}

#[test]
fn a_weight_with_the_wrong_shape_names_the_tensor_and_both_shapes() {
    let dir = copy_fixture("tiny-pixel");
    edit_safetensors_header(&dir.path().join(UNET_WEIGHTS), |h| {
        h["conv_in.weight"]["shape"] = serde_json::json!([16, 27, 1, 1]);
    });
    match load_err(dir.path()) {
        EngineError::ShapeMismatch {
            tensor,
            expected,
            found,
            ..
        } => {
            assert_eq!(tensor, "conv_in.weight");
            assert_eq!(expected, vec![16, 3, 3, 3]);
            assert_eq!(found, vec![16, 27, 1, 1]);
        }
        e => panic!("expected a shape mismatch, got {e}"),
    }
}

#[test]
fn a_weight_in_an_unsupported_dtype_is_named() {
    let dir = copy_fixture("tiny-pixel");
    edit_safetensors_header(&dir.path().join(UNET_WEIGHTS), |h| {
        h["conv_in.weight"]["dtype"] = "I32".into();
    });
    match load_err(dir.path()) {
        EngineError::UnsupportedDtype { tensor, dtype, .. } => {
            assert_eq!(tensor, "conv_in.weight");
            assert_eq!(dtype, "i32");
        }
        e => panic!("expected an unsupported dtype, got {e}"),
    }
}

#[test]
fn a_truncated_weights_file_is_corrupt() {
    let dir = copy_fixture("tiny-pixel");
    let path = dir.path().join(UNET_WEIGHTS);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, EngineError::CorruptWeights { .. }), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn a_garbage_weights_file_is_corrupt() {
    let dir = copy_fixture("tiny-pixel");
    std::fs::write(
        dir.path().join(UNET_WEIGHTS),
        b"this is not safetensors at all",
    )
    .unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, EngineError::CorruptWeights { .. }), "{e}");
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = copy_fixture("tiny-pixel");
    edit_safetensors_header(&dir.path().join(UNET_WEIGHTS), |h| {
        let v = h.as_object_mut().unwrap().remove("conv_out.bias").unwrap();
        h["renamed.bias"] = v;
    });
    match load_err(dir.path()) {
        EngineError::MissingTensor { tensor, .. } => assert_eq!(tensor, "conv_out.bias"),
        e => panic!("expected a missing tensor, got {e}"),
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn asking_for_cuda_without_the_feature_is_a_clear_error() {
    let opts = LoadOptions {
        device: DeviceChoice::Cuda(0),
        ..opts()
    };
    let e = Model::load(&fixture("tiny-pixel"), &opts).err().unwrap();
    assert!(matches!(e, EngineError::UnsupportedDevice { .. }), "{e}");
    assert!(e.to_string().contains("cuda"), "{e}");
}

fn generate_err(edit: impl FnOnce(&mut easel_engine::ImageRequest)) -> EngineError {
    let model = load("tiny-pixel");
    let mut r = request("a red apple", 1, 16, 2);
    edit(&mut r);
    match model.generate(&[r], &mut (), &CancelToken::new()) {
        Ok(_) => panic!("generation should have failed"),
        Err(e) => e,
    }
}

#[test]
fn a_size_that_is_not_a_multiple_of_8_is_rejected() {
    let e = generate_err(|r| {
        r.size = Size {
            width: 20,
            height: 16,
        }
    });
    assert!(
        matches!(e, EngineError::InvalidSize { width: 20, .. }),
        "{e}"
    );
    assert!(e.is_bad_request());
}

#[test]
fn a_size_beyond_the_models_limit_is_rejected() {
    let e = generate_err(|r| {
        r.size = Size {
            width: 2048,
            height: 16,
        }
    });
    assert!(matches!(e, EngineError::InvalidSize { .. }), "{e}");
    assert!(e.to_string().contains("at most"), "{e}");
}

#[test]
fn zero_steps_are_rejected() {
    let e = generate_err(|r| r.steps = 0);
    assert!(matches!(e, EngineError::ZeroSteps), "{e}");
}

#[test]
fn non_finite_guidance_is_rejected() {
    let e = generate_err(|r| r.guidance_scale = f32::NAN);
    assert!(matches!(e, EngineError::NonFiniteGuidance(_)), "{e}");
    let e = generate_err(|r| r.guidance_scale = f32::INFINITY);
    assert!(matches!(e, EngineError::NonFiniteGuidance(_)), "{e}");
}

#[test]
fn strength_outside_zero_to_one_is_rejected() {
    for s in [1.5f32, -0.1, f32::NAN] {
        let e = generate_err(|r| {
            let init = easel_engine::RgbImage {
                width: 16,
                height: 16,
                pixels: vec![128; 16 * 16 * 3],
            };
            r.init_image = Some((init, s));
        });
        assert!(matches!(e, EngineError::InvalidStrength(_)), "{s}: {e}");
    }
}

#[test]
fn an_empty_batch_is_rejected() {
    let model = load("tiny-pixel");
    let e = model
        .generate(&[], &mut (), &CancelToken::new())
        .unwrap_err();
    assert!(matches!(e, EngineError::EmptyBatch), "{e}");
}

#[test]
fn a_prompt_over_the_token_limit_is_truncated_with_a_warning() {
    let model = load("tiny-pixel");
    let long = vec!["apple"; 100].join(" ");
    let images = model
        .generate(&[request(&long, 1, 16, 1)], &mut (), &CancelToken::new())
        .unwrap();
    let w = &images[0].warnings;
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("truncated to the model's 32 tokens"), "{w:?}");
    let short = model
        .generate(&[request("apple", 1, 16, 1)], &mut (), &CancelToken::new())
        .unwrap();
    assert!(short[0].warnings.is_empty());
}
