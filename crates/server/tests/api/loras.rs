//! LoRA adapters through the API: the `loras` extension and `<lora:…>`
//! prompt tags, the pool entry of a combination, the records, and the
//! refusals. The LoRAs are written here for the fixture's pixel UNet (its
//! `conv_out`, so every pixel sees the update), in the PEFT layout.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::*;

/// Writes a safetensors file of f32 tensors (name, shape), filled with a
/// fixed pseudo-random pattern in [-0.5, 0.5).
fn write_safetensors(path: &Path, tensors: &[(&str, &[usize])]) {
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    let mut state = 0x2545_f491_u32;
    for (name, shape) in tensors {
        let count: usize = shape.iter().product();
        let start = data.len();
        for _ in 0..count {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let v = (state as f32 / u32::MAX as f32) - 0.5;
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            name.to_string(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut text = serde_json::to_vec(&Value::Object(header)).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

/// A folder with `grain` (a rank-2 LoRA of the pixel UNet's `conv_out`)
/// and `foreign` (a LoRA of a layer the fixture does not have).
fn lora_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_safetensors(
        &dir.path().join("grain.safetensors"),
        &[
            ("unet.conv_out.lora_A.weight", &[2, 16, 3, 3]),
            ("unet.conv_out.lora_B.weight", &[3, 2, 1, 1]),
        ],
    );
    write_safetensors(
        &dir.path().join("foreign.safetensors"),
        &[
            ("unet.no_such_block.proj.lora_A.weight", &[2, 16]),
            ("unet.no_such_block.proj.lora_B.weight", &[16, 2]),
        ],
    );
    dir
}

async fn spawn_with_loras(dir: &Path) -> TestApp {
    let dir: PathBuf = dir.to_path_buf();
    spawn_app_with(move |c| c.pool.lora_dir = Some(dir)).await
}

/// The PNG of a successful generation, and its decoded RGB samples.
async fn image(app: &TestApp, body: &Value) -> (Vec<u8>, Vec<u8>) {
    let r = app.generate(body).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let png = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(png.clone()))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (png, buf)
}

fn with_loras(prompt: &str, loras: Value) -> Value {
    let mut body = small_request(prompt);
    body["loras"] = loras;
    body
}

fn text_chunk(png: &[u8], key: &str) -> String {
    easel_media::read_png_text(png)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no `{key}` chunk"))
        .1
}

#[tokio::test]
async fn a_lora_changes_the_pixels_and_its_hash_is_recorded() {
    let dir = lora_dir();
    let app = spawn_with_loras(dir.path()).await;
    let (_, base) = image(&app, &small_request("a cat")).await;
    let (png, lora) = image(
        &app,
        &with_loras("a cat", json!([{"name": "grain", "weight": 0.8}])),
    )
    .await;
    assert_ne!(base, lora, "the LoRA changed nothing");

    let hash = easel_engine::LoraAdapter::open(&dir.path().join("grain.safetensors"))
        .unwrap()
        .hash()
        .to_string();
    let record: Value = serde_json::from_str(&text_chunk(&png, "easel")).unwrap();
    assert_eq!(
        record["loras"],
        json!([{"name": "grain", "weight": 0.8, "hash": hash}]),
        "{record}"
    );
    assert_eq!(record["prompt"], "a cat");
    let parameters = text_chunk(&png, "parameters");
    let short = &hash["sha256:".len().."sha256:".len() + 10];
    assert!(
        parameters.starts_with("a cat <lora:grain:0.8>\n"),
        "{parameters}"
    );
    assert!(
        parameters.ends_with(&format!(", Lora hashes: \"grain: {short}\"")),
        "{parameters}"
    );
}

#[tokio::test]
async fn a_prompt_tag_is_the_loras_field_and_weight_zero_is_the_base_model() {
    let dir = lora_dir();
    let app = spawn_with_loras(dir.path()).await;
    let (_, field) = image(
        &app,
        &with_loras("a cat", json!([{"name": "grain", "weight": 0.8}])),
    )
    .await;
    let (png, tag) = image(&app, &small_request("a cat <lora:grain:0.8>")).await;
    assert_eq!(tag, field, "the tag and the field differ");
    let record: Value = serde_json::from_str(&text_chunk(&png, "easel")).unwrap();
    assert_eq!(record["prompt"], "a cat", "the tag was not taken out");

    let (_, base) = image(&app, &small_request("a cat")).await;
    let (png, zero) = image(&app, &small_request("a cat <lora:grain:0>")).await;
    assert_eq!(zero, base, "weight 0 is the base model");
    let record: Value = serde_json::from_str(&text_chunk(&png, "easel")).unwrap();
    assert!(record.get("loras").is_none(), "{record}");
}

#[tokio::test]
async fn the_pool_keeps_a_lora_combination_as_its_own_entry_with_its_memory() {
    let dir = lora_dir();
    let app = spawn_with_loras(dir.path()).await;
    image(
        &app,
        &with_loras("a cat", json!([{"name": "grain", "weight": 0.5}])),
    )
    .await;
    let list: Value = app.get("/v1/loras").await.json().await.unwrap();
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["foreign", "grain"], "{list}");
    let pool = list["pool"].as_array().unwrap();
    assert_eq!(pool.len(), 1, "{list}");
    let entry = &pool[0];
    // The model's pool name: the job runs on the version it was accepted for.
    let model = entry["model"].as_str().unwrap();
    assert!(model.starts_with(&format!("{MODEL}@blake3:")), "{entry}");
    assert_eq!(entry["state"], "ready");
    assert_eq!(entry["loras"][0]["name"], "grain");
    assert_eq!(entry["loras"][0]["weight"], 0.5);
    let models: Value = app.get("/v1/models").await.json().await.unwrap();
    let base = &models["data"][0];
    assert!(entry["memory_bytes"].as_u64().unwrap() > 0, "{entry}");
    assert_eq!(entry["memory_bytes"], base["memory_bytes"], "{entry}");
    assert_eq!(
        models["data"].as_array().unwrap().len(),
        1,
        "a combination is no configured model: {models}"
    );

    let sd: Value = app.get("/sdapi/v1/loras").await.json().await.unwrap();
    assert_eq!(sd[1]["name"], "grain", "{sd}");
    assert_eq!(sd[1]["alias"], "grain");
    assert!(
        sd[1]["path"]
            .as_str()
            .unwrap()
            .ends_with("grain.safetensors")
    );
    assert_eq!(sd[1]["metadata"], json!({}));

    // Kohya's training metadata comes from the header, JSON values parsed.
    let header = json!({"__metadata__": {
        "ss_network_dim": "2",
        "ss_tag_frequency": "{\"set\": {\"cat\": 3}}",
    }});
    let text = serde_json::to_vec(&header).unwrap();
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&text);
    let tagged =
        std::path::Path::new(sd[1]["path"].as_str().unwrap()).with_file_name("tagged.safetensors");
    std::fs::write(&tagged, bytes).unwrap();
    let sd: Value = app.get("/sdapi/v1/loras").await.json().await.unwrap();
    let listed = sd
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "tagged")
        .unwrap_or_else(|| panic!("{sd}"));
    assert_eq!(listed["metadata"]["ss_network_dim"], "2", "{listed}");
    assert_eq!(
        listed["metadata"]["ss_tag_frequency"]["set"]["cat"], 3,
        "{listed}"
    );
}

#[tokio::test]
async fn bad_loras_are_refused_with_their_code_and_nothing_is_stored() {
    let dir = lora_dir();
    let app = spawn_with_loras(dir.path()).await;
    let jobs = app.count_jobs().await;
    for (body, code, needle) in [
        (
            with_loras("a cat", json!([{"name": "nope"}])),
            "lora_not_found",
            "`nope`",
        ),
        (
            small_request("a cat <lora:nope:1>"),
            "lora_not_found",
            "foreign, grain",
        ),
        (
            with_loras("a cat", json!([{"name": "grain", "weight": 5}])),
            "invalid_lora_weight",
            "-4 to 4",
        ),
        (
            small_request("a cat <lora:grain:-4.5>"),
            "invalid_lora_weight",
            "`grain`",
        ),
        (
            small_request("a cat <lora:grain:abc>"),
            "invalid_lora_tag",
            "<lora:grain:abc>",
        ),
        (
            small_request("a cat <lora:grain:1"),
            "invalid_lora_tag",
            "closed",
        ),
    ] {
        let r = app.generate(&body).await;
        let got = assert_error(r, 400, code).await;
        let message = got["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    assert_eq!(
        app.count_jobs().await,
        jobs,
        "a refused request stored a job"
    );
}

#[tokio::test]
async fn a_lora_for_another_model_fails_the_job_as_a_bad_request() {
    let dir = lora_dir();
    let app = spawn_with_loras(dir.path()).await;
    let r = app
        .generate(&with_loras("a cat", json!([{"name": "foreign"}])))
        .await;
    let body = assert_error(r, 400, "lora_unmatched_key").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("no_such_block"), "{message}");
}

#[tokio::test]
async fn sdapi_tags_apply_and_disable_extra_networks_strips_them_only() {
    let dir = lora_dir();
    let app = spawn_with_loras(dir.path()).await;
    let txt2img = |prompt: &str, disable: bool| {
        json!({
            "prompt": prompt, "width": 16, "height": 16, "steps": 2, "seed": 7,
            "disable_extra_networks": disable,
        })
    };
    let first_image = |v: Value| -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(v["images"][0].as_str().unwrap())
            .unwrap()
    };
    let pixels = |png: &[u8]| -> Vec<u8> {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png.to_vec()))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        buf
    };
    let run = |body: Value| {
        let app = &app;
        async move {
            let r = app.post_json("/sdapi/v1/txt2img", &body).await;
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            assert_eq!(status, 200, "{v}");
            v
        }
    };
    let plain = pixels(&first_image(run(txt2img("a cat", false)).await));
    let tagged = run(txt2img("a cat <lora:grain:0.8>", false)).await;
    let info: Value = serde_json::from_str(tagged["info"].as_str().unwrap()).unwrap();
    let tagged = pixels(&first_image(tagged));
    let stripped = pixels(&first_image(
        run(txt2img("a cat <lora:grain:0.8>", true)).await,
    ));
    assert_ne!(tagged, plain, "the tag was not applied");
    assert_eq!(stripped, plain, "disable_extra_networks applied the tag");
    let infotext = info["infotexts"][0].as_str().unwrap();
    assert!(infotext.contains("Lora hashes: \"grain: "), "{infotext}");
}
