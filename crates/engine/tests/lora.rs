//! LoRA adapters against diffusers: the tiny-sd1 fixture with a PEFT LoRA
//! (saved by diffusers, alpha from its metadata), a kohya LoRA (alpha ≠
//! rank, 1×1 and 3×3 convolutions) and both combined, recorded by
//! `tools/golden/lora.py` with diffusers' `load_lora_weights` and
//! `set_adapters`.
//!
//! Tolerances (absolute, f32 against PyTorch f32), as in `golden.rs`:
//! - text embeddings: 1e-4;
//! - one UNet call (on the base golden's inputs): 1e-3, `golden.rs`'s UNet
//!   tolerance (set when the engine's GEGLU used the tanh-approximated
//!   GELU; with the fused exact-erf GEGLU the base UNet is within 2.7e-6
//!   of diffusers on this fixture);
//! - the LoRA's own effect, the 1e-4: the engine's output with the
//!   LoRA minus its base output, against diffusers' output with the LoRA
//!   minus diffusers' base output (`golden/tiny-sd1.safetensors`:
//!   `unet_out` and `text_emb[:2]`, recorded by `make_models.py` on exactly
//!   the same `unet_x`, timestep 500 and context as the LoRA references).
//!   Whatever error the base model has is common to both terms and
//!   cancels; what is left is the error of the LoRA merge. The LoRAs move
//!   the UNet output by 0.78 to 0.83, so a merge off by 0.1 % of a weight
//!   fails (0.801 for 0.8 is 1.1e-3).
//!
//! Measured on the CPU (x86-64): with the LoRA, text 1.2e-6 to 1.4e-6 and
//! UNet 2.3e-6 to 2.6e-6 absolute; the LoRA's effect, text 1.9e-6 to
//! 2.9e-6 and UNet 3.1e-6 (kohya, both) to 3.9e-6 (peft).
//!
//! Weight 0 must leave the model bit for bit the base model, and a LoRA
//! that does not fit must fail with its error code before anything is
//! applied.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use common::*;
use easel_engine::candle_core::{Device, IndexOp, Tensor};
use easel_engine::{
    EngineError, LoadOptions, LoraAdapter, LoraComponent, LoraLayout, LoraSet, Model,
};

const TEXT_TOL: f32 = 1e-4;
const UNET_TOL: f32 = 1e-3;
/// The LoRA's own effect (output with it minus output without), engine
/// against diffusers: the 1e-4.
const DELTA_TOL: f32 = 1e-4;

fn lora_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/loras")
        .join(format!("tiny-sd1-{name}.safetensors"))
}

fn adapter(name: &str) -> Arc<LoraAdapter> {
    Arc::new(LoraAdapter::open(&lora_path(name)).unwrap_or_else(|e| panic!("{name}: {e}")))
}

fn load_with(set: LoraSet) -> Result<Model, EngineError> {
    Model::load(
        &fixture("tiny-sd1"),
        &LoadOptions {
            loras: set,
            ..opts()
        },
    )
}

/// Text embeddings of the golden prompts and the UNet on the base golden's inputs.
fn outputs(model: &Model) -> (Tensor, Tensor) {
    let base = golden("tiny-sd1");
    let prompts = ["a red apple", "grinning face with big eyes"];
    let emb = model.encode_prompts(&prompts).unwrap();
    let ctx = base["text_emb"].i(0..2).unwrap();
    let unet = model.unet_forward(&base["unet_x"], 500.0, &ctx).unwrap();
    (emb, unet)
}

/// The base model's outputs, computed once for all the cases.
fn base_outputs() -> &'static (Tensor, Tensor) {
    static BASE: OnceLock<(Tensor, Tensor)> = OnceLock::new();
    BASE.get_or_init(|| outputs(&load("tiny-sd1")))
}

fn check(case: &str, set: LoraSet) {
    let model = load_with(set).unwrap();
    let g = golden("tiny-sd1-lora");
    let (emb, unet) = outputs(&model);
    let (ref_emb, ref_unet) = (
        &g[&format!("{case}_text_emb")],
        &g[&format!("{case}_unet_out")],
    );
    let text = max_abs_diff(&emb, ref_emb);
    let net = max_abs_diff(&unet, ref_unet);

    // The LoRA's effect: (engine with − engine without) against
    // (diffusers with − diffusers without), the latter from the base golden.
    let base = golden("tiny-sd1");
    let (base_emb, base_unet) = base_outputs();
    let ref_base_emb = base["text_emb"].i(0..2).unwrap();
    let delta = |with: &Tensor, without: &Tensor| (with - without).unwrap();
    let text_delta = max_abs_diff(&delta(&emb, base_emb), &delta(ref_emb, &ref_base_emb));
    let net_delta = max_abs_diff(
        &delta(&unet, base_unet),
        &delta(ref_unet, &base["unet_out"]),
    );
    // How far the LoRA moves the reference: a delta check is only worth
    // something if the effect is far larger than its tolerance.
    let effect = max_abs_diff(ref_unet, &base["unet_out"]);
    let base_err = max_abs_diff(base_unet, &base["unet_out"]);
    eprintln!(
        "{case}: text {text:e}, UNet {net:e} (base UNet {base_err:e}); LoRA effect: \
         text {text_delta:e}, UNet {net_delta:e} (the LoRA moves the UNet by {effect:e})"
    );
    assert!(text < TEXT_TOL, "{case}: text embeddings differ by {text}");
    assert!(net < UNET_TOL, "{case}: UNet output differs by {net}");
    assert!(
        effect > 100.0 * DELTA_TOL,
        "{case}: the LoRA moves the UNet by only {effect}"
    );
    assert!(
        text_delta < DELTA_TOL,
        "{case}: the LoRA's effect on the text embeddings differs by {text_delta}"
    );
    assert!(
        net_delta < DELTA_TOL,
        "{case}: the LoRA's effect on the UNet output differs by {net_delta}"
    );
}

#[test]
fn a_peft_lora_at_0_8_matches_diffusers() {
    check("peft", LoraSet::new().with(adapter("peft"), 0.8));
}

#[test]
fn a_kohya_lora_at_0_8_matches_diffusers() {
    check("kohya", LoraSet::new().with(adapter("kohya"), 0.8));
}

#[test]
fn two_loras_combined_match_diffusers() {
    check(
        "both",
        LoraSet::new()
            .with(adapter("peft"), 0.8)
            .with(adapter("kohya"), 0.5),
    );
}

#[test]
fn weight_zero_gives_the_base_model_bit_for_bit() {
    let base = load("tiny-sd1");
    let zero = load_with(
        LoraSet::new()
            .with(adapter("peft"), 0.0)
            .with(adapter("kohya"), 0.0),
    )
    .unwrap();
    let (a, b) = (outputs(&base), outputs(&zero));
    let bits = |t: &Tensor| -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f32::to_bits)
            .collect()
    };
    assert_eq!(bits(&a.0), bits(&b.0), "text embeddings");
    assert_eq!(bits(&a.1), bits(&b.1), "UNet output");
    assert_eq!(zero.info().content_hash, base.info().content_hash);
}

#[test]
fn a_merged_model_holds_the_weights_once_and_names_its_loras() {
    let base = load("tiny-sd1");
    let set = LoraSet::new().with(adapter("kohya"), 0.8);
    let model = load_with(set.clone()).unwrap();
    assert_eq!(model.info().weight_bytes, base.info().weight_bytes);
    assert_eq!(model.loras().fingerprint(), set.fingerprint());
    assert!(base.loras().is_empty());
    assert_eq!(base.loras().fingerprint(), "");
}

#[test]
fn an_adapter_reports_its_name_hash_layout_components_and_ranks() {
    let kohya = adapter("kohya");
    assert_eq!(kohya.name(), "tiny-sd1-kohya");
    assert_eq!(kohya.layout(), LoraLayout::Kohya);
    assert_eq!(
        kohya.components(),
        [LoraComponent::Unet, LoraComponent::TextEncoder]
    );
    assert_eq!(kohya.ranks(), [2]);
    assert_eq!(kohya.module_count(), 15);
    // `sha256sum` of the fixture (regenerating it changes this).
    assert_eq!(kohya.hash(), KOHYA_SHA256);

    let peft = adapter("peft");
    assert_eq!(peft.layout(), LoraLayout::Peft);
    assert_eq!(peft.ranks(), [4]);
    assert!(peft.hash().starts_with("sha256:") && peft.hash().len() == 7 + 64);
    assert_ne!(peft.hash(), kohya.hash());
    assert_eq!(
        LoraSet::new()
            .with(kohya.clone(), 0.5)
            .with(peft.clone(), 1.0)
            .fingerprint(),
        format!("{}*0.5+{}*1", kohya.hash(), peft.hash())
    );
}

const KOHYA_SHA256: &str =
    "sha256:251fadb3068b2d426e51c4f4642ee1dacf12f51cbc42c995d0afaf7fda1c311e";

// ---------------------------------------------------------------- bad inputs

/// Writes a LoRA file of `tensors` (name → shape, filled with 0.01).
fn write_lora(dir: &Path, file: &str, tensors: &[(&str, &[usize])]) -> PathBuf {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(name, shape)| {
            let t = (Tensor::ones(*shape, easel_engine::candle_core::DType::F32, &Device::Cpu)
                .unwrap()
                * 0.01)
                .unwrap();
            (name.to_string(), t)
        })
        .collect();
    let path = dir.join(file);
    easel_engine::candle_core::safetensors::save(&map, &path).unwrap();
    path
}

fn open_error(path: &Path) -> EngineError {
    LoraAdapter::open(path).expect_err("the LoRA should be refused")
}

fn load_error(path: &Path) -> EngineError {
    let set = LoraSet::new().with(Arc::new(LoraAdapter::open(path).unwrap()), 1.0);
    load_with(set).err().expect("the load should fail")
}

const Q: &str = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";

#[test]
fn a_key_in_neither_layout_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let hada = format!("{Q}.hada_w1_a");
    let path = write_lora(dir.path(), "loha.safetensors", &[(&hada, &[2, 16])]);
    let err = open_error(&path);
    assert_eq!(err.code(), "lora_unknown_key");
    assert!(err.to_string().contains(&hada), "{err}");
}

#[test]
fn a_lora_for_another_architecture_is_refused_before_anything_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    // SDXL's LDM block names (translated for SDXL UNets only), and its
    // second text encoder.
    for (file, key) in [
        (
            "sgm",
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
        ),
        (
            "te2",
            "lora_te2_text_model_encoder_layers_0_self_attn_q_proj",
        ),
    ] {
        let down = format!("{key}.lora_down.weight");
        let up = format!("{key}.lora_up.weight");
        let path = write_lora(
            dir.path(),
            &format!("{file}.safetensors"),
            &[(&down, &[2, 32]), (&up, &[32, 2])],
        );
        let err = load_error(&path);
        assert_eq!(err.code(), "lora_unmatched_key", "{file}: {err}");
        assert!(err.to_string().contains(&down), "{err}");
    }
}

#[test]
fn an_update_of_the_wrong_shape_is_refused_naming_the_key_and_the_weight() {
    let dir = tempfile::tempdir().unwrap();
    let down = format!("{Q}.lora_down.weight");
    let up = format!("{Q}.lora_up.weight");
    // to_q is [16, 16]; this update is [16, 32].
    let path = write_lora(
        dir.path(),
        "wide.safetensors",
        &[(&down, &[2, 32]), (&up, &[16, 2])],
    );
    let err = load_error(&path);
    assert_eq!(err.code(), "lora_shape_mismatch");
    let msg = err.to_string();
    assert!(
        msg.contains(&down) && msg.contains("attn1.to_q.weight"),
        "{msg}"
    );
}

#[test]
fn a_file_that_is_not_safetensors_is_an_invalid_lora() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.safetensors");
    std::fs::write(&path, b"this is not a safetensors file at all").unwrap();
    assert_eq!(open_error(&path).code(), "lora_invalid");
    assert_eq!(
        open_error(&dir.path().join("absent.safetensors")).code(),
        "lora_not_found"
    );
}

#[test]
fn an_unpaired_down_and_mismatched_ranks_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let down = format!("{Q}.lora_down.weight");
    let up = format!("{Q}.lora_up.weight");
    let alone = write_lora(dir.path(), "alone.safetensors", &[(&down, &[2, 16])]);
    assert_eq!(open_error(&alone).code(), "lora_invalid");
    let ranks = write_lora(
        dir.path(),
        "ranks.safetensors",
        &[(&down, &[2, 16]), (&up, &[16, 3])],
    );
    assert_eq!(open_error(&ranks).code(), "lora_invalid");
}

#[test]
fn a_weight_that_is_not_finite_is_refused() {
    let set = LoraSet::new().with(adapter("kohya"), f32::NAN);
    assert_eq!(load_with(set).err().unwrap().code(), "lora_invalid_weight");
}

// ---------------------------------------------------------------- SDXL

/// A kohya LoRA of rank 2 on `modules` (`(kohya module, diffusers weight)`),
/// named by the first of each pair, with values from `seed`.
fn sdxl_lora(dir: &Path, file: &str, modules: &[(String, String)], seed: u64) -> PathBuf {
    let weights = easel_engine::candle_core::safetensors::load(
        fixture("tiny-sdxl").join("unet/diffusion_pytorch_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let mut rng = Lcg(seed);
    let mut map = HashMap::new();
    for (key, weight) in modules {
        let dims = weights[weight].dims().to_vec();
        let (down, up): (Vec<usize>, Vec<usize>) = match dims.as_slice() {
            [o, i] => (vec![2, *i], vec![*o, 2]),
            [o, i, kh, kw] => (vec![2, *i, *kh, *kw], vec![*o, 2, 1, 1]),
            _ => panic!("{weight} is {dims:?}"),
        };
        for (part, shape) in [("lora_down", down), ("lora_up", up)] {
            let n = shape.iter().product();
            let values: Vec<f32> = rng.vec(n).into_iter().map(|v| 0.2 * v).collect();
            let t = Tensor::from_vec(values, shape, &Device::Cpu).unwrap();
            map.insert(format!("lora_unet_{key}.{part}.weight"), t);
        }
    }
    let path = dir.join(file);
    easel_engine::candle_core::safetensors::save(&map, &path).unwrap();
    path
}

#[test]
fn kohya_sdxl_names_in_the_ldm_layout_patch_the_same_weights_as_diffusers_names() {
    // tiny-sdxl: 2 blocks of 1 layer, attention in down block 1 and up block 0.
    let modules = [
        ("conv_in", "input_blocks_0_0"),
        (
            "down_blocks.0.resnets.0.conv1",
            "input_blocks_1_0_in_layers_2",
        ),
        ("down_blocks.0.downsamplers.0.conv", "input_blocks_2_0_op"),
        (
            "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k",
            "input_blocks_3_1_transformer_blocks_1_attn2_to_k",
        ),
        (
            "down_blocks.1.resnets.0.conv_shortcut",
            "input_blocks_3_0_skip_connection",
        ),
        (
            "mid_block.resnets.1.time_emb_proj",
            "middle_block_2_emb_layers_1",
        ),
        ("mid_block.attentions.0.proj_in", "middle_block_1_proj_in"),
        (
            "up_blocks.0.attentions.1.proj_out",
            "output_blocks_1_1_proj_out",
        ),
        ("up_blocks.0.upsamplers.0.conv", "output_blocks_1_2_conv"),
        (
            "up_blocks.1.resnets.1.conv2",
            "output_blocks_3_0_out_layers_3",
        ),
        ("add_embedding.linear_1", "label_emb_0_0"),
        ("time_embedding.linear_2", "time_embed_2"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let flat: Vec<(String, String)> = modules
        .iter()
        .map(|(d, _)| (d.replace('.', "_"), format!("{d}.weight")))
        .collect();
    let ldm: Vec<(String, String)> = modules
        .iter()
        .map(|(d, s)| (s.to_string(), format!("{d}.weight")))
        .collect();
    let diffusers_named = sdxl_lora(dir.path(), "diffusers.safetensors", &flat, 5);
    let ldm_named = sdxl_lora(dir.path(), "ldm.safetensors", &ldm, 5);

    let g = golden("tiny-sdxl");
    let run = |lora: Option<&Path>| -> Vec<u32> {
        let mut set = LoraSet::new();
        if let Some(path) = lora {
            set.push(Arc::new(LoraAdapter::open(path).unwrap()), 0.7);
        }
        let opts = LoadOptions {
            loras: set,
            ..opts()
        };
        let model = Model::load(&fixture("tiny-sdxl"), &opts).unwrap();
        let ctx = g["text_emb"].i(0..2).unwrap();
        let pooled = g["pooled"].i(0..2).unwrap();
        let out = model
            .unet_forward_sdxl(&g["unet_x"], 500.0, &ctx, &pooled, &g["time_ids"])
            .unwrap();
        out.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f32::to_bits)
            .collect()
    };
    let (base, a, b) = (
        run(None),
        run(Some(&diffusers_named)),
        run(Some(&ldm_named)),
    );
    assert_ne!(base, a, "the LoRA changes the UNet");
    assert_eq!(a, b, "LDM names patch the same weights as diffusers names");
}
