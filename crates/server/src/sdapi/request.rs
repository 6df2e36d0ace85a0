//! The bodies of `POST /sdapi/v1/txt2img` and `/img2img`, walked field by
//! field into Easel's validated request.
//!
//! The web UI's API has some seventy fields, and its clients send most of
//! them on every call (`webuiapi` sends `eta`, `s_noise`, `hr_scale`, …
//! even when nobody set them). Each field is one of:
//! - **honoured**: prompt, negative prompt (their `<lora:NAME:WEIGHT>`
//!   tags apply LoRAs; with `disable_extra_networks: true` the tags are
//!   removed and not applied, as in the web UI), seed, sampler and scheduler,
//!   steps, CFG scale, size, batch size and iterations, the model
//!   (`override_settings.sd_model_checkpoint`), `send_images`, and for
//!   image-to-image the initial image, denoising strength and
//!   `include_init_images`;
//! - **inert**: a field at the value that turns its feature off
//!   (`enable_hr: false`, `restore_faces: false`, `s_churn: 0`, `styles: []`,
//!   …), or one that only matters when another is on (the `hr_*` fields
//!   without `enable_hr`, `s_tmin` without `s_churn`), as in the web UI.
//!   The saving flags (`save_images`, `do_not_save_samples`) are accepted
//!   either way: Easel stores every image with its record (docs/a1111.md);
//! - **refused**: any other value, and any unknown field, is 400
//!   `unsupported_parameter` naming the field. Nothing is silently ignored.

use serde_json::{Map, Value};

use easel_core::{SamplerKind, ScheduleKind, SeedRequest};

use crate::error::ApiError;
use crate::sdapi::names;

/// Which route a body came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/sdapi/v1/txt2img`.
    Txt2Img,
    /// `/sdapi/v1/img2img`.
    Img2Img,
}

/// Most iterations (`n_iter`) one request may ask for.
pub const MAX_ITERATIONS: i64 = 16;

/// A walked request, still in the web UI's terms.
#[derive(Debug, Clone)]
pub struct SdRequest {
    /// The prompt.
    pub prompt: String,
    /// The negative prompt.
    pub negative_prompt: String,
    /// The seed of the first image.
    pub seed: SeedRequest,
    /// The sampler, when named.
    pub sampler: Option<SamplerKind>,
    /// The schedule, when named (a scheduler, or an old combined sampler name).
    pub schedule: Option<ScheduleKind>,
    /// Images per job.
    pub batch_size: i64,
    /// Jobs, one after the other.
    pub n_iter: i64,
    /// Denoising steps, when given.
    pub steps: Option<i64>,
    /// Classifier-free guidance, when given.
    pub cfg_scale: Option<f64>,
    /// Output width, when given.
    pub width: Option<i64>,
    /// Output height, when given.
    pub height: Option<i64>,
    /// The model (`override_settings.sd_model_checkpoint`), when given.
    pub model: Option<String>,
    /// Clip skip (`override_settings.CLIP_stop_at_last_layers`), when given.
    pub clip_skip: Option<i64>,
    /// Whether the response carries the images.
    pub send_images: bool,
    /// Image-to-image: the initial image, base64 (a `data:` URL or bare).
    pub init_image: Option<String>,
    /// Image-to-image strength.
    pub denoising_strength: Option<f64>,
    /// Image-to-image: whether the response repeats the initial images.
    pub include_init_images: bool,
    /// A task id for `GET /sdapi/v1/progress` (`force_task_id`).
    pub task_id: Option<String>,
    /// Image-to-image: the inpainting mask, base64 (white: redraw).
    pub mask: Option<String>,
    /// How the mask is read (`mask_blur*`, `inpainting_mask_invert`).
    pub mask_options: crate::masks::A1111Mask,
    /// `inpainting_fill: 0`: paint the masked part with its surroundings
    /// first; `1`: start from the original pixels.
    pub fill: bool,
    /// `inpaint_full_res` ("only masked", the web UI API's default):
    /// only a region around the mask is generated, at the output size, and
    /// pasted back into the initial image, which keeps its own size.
    pub only_masked: bool,
    /// `inpaint_full_res_padding`: pixels of context around the mask's
    /// bounding box in that region, 0 (the API's default) to 256.
    pub only_masked_padding: u32,
    /// `disable_extra_networks`: the prompts' `<lora:…>` tags are removed
    /// but not applied.
    pub disable_extra_networks: bool,
}

/// Largest `inpaint_full_res_padding` accepted, in pixels (the web UI's
/// slider's end).
pub const MAX_ONLY_MASKED_PADDING: i64 = 256;

/// Largest `mask_blur` accepted, in pixels.
pub const MAX_MASK_BLUR: f64 = 64.0;

/// Walks `body` (a JSON object) for `route`.
pub fn parse(route: Route, body: &Value) -> Result<SdRequest, ApiError> {
    let Some(map) = body.as_object() else {
        return Err(ApiError::invalid(
            "invalid_body",
            "body",
            "the body must be a JSON object",
        ));
    };
    let mut r = SdRequest {
        prompt: String::new(),
        negative_prompt: String::new(),
        seed: SeedRequest::Random,
        sampler: None,
        schedule: None,
        batch_size: 1,
        n_iter: 1,
        steps: None,
        cfg_scale: None,
        width: None,
        height: None,
        model: None,
        clip_skip: None,
        send_images: true,
        init_image: None,
        denoising_strength: None,
        include_init_images: false,
        task_id: None,
        mask: None,
        mask_options: Default::default(),
        fill: true,
        only_masked: true,
        only_masked_padding: 0,
        disable_extra_networks: false,
    };
    let masked = route == Route::Img2Img && map.get("mask").is_some_and(|v| !v.is_null());
    let mut blur = None;
    let mut blur_xy = (None, None);
    let hires = map
        .get("enable_hr")
        .is_some_and(|v| v.as_bool() == Some(true));
    if hires {
        return Err(unsupported(
            "enable_hr",
            "high-resolution fix (a second pass) is not supported; generate at the final size",
        ));
    }
    let churn = map.get("s_churn").and_then(Value::as_f64).unwrap_or(0.0);
    let mut sampler_index = None;
    for (key, value) in map {
        let v = value;
        match key.as_str() {
            "prompt" => r.prompt = text(key, v)?,
            "negative_prompt" => r.negative_prompt = text(key, v)?,
            "seed" => r.seed = seed(v)?,
            "sampler_name" => {
                if let Some(name) = opt_text(key, v)? {
                    let (kind, schedule) = names::parse_sampler("sampler_name", &name)?;
                    r.sampler = Some(kind);
                    r.schedule = r.schedule.or(schedule);
                }
            }
            // Deprecated, and used only when `sampler_name` is absent.
            "sampler_index" => sampler_index = opt_text(key, v)?,
            "scheduler" => {
                if let Some(name) = opt_text(key, v)? {
                    r.schedule = Some(names::parse_scheduler("scheduler", &name)?);
                }
            }
            "batch_size" => r.batch_size = int(key, v)?.unwrap_or(1),
            "n_iter" => r.n_iter = int(key, v)?.unwrap_or(1),
            "steps" => r.steps = int(key, v)?,
            "cfg_scale" => r.cfg_scale = num(key, v)?,
            "width" => r.width = int(key, v)?,
            "height" => r.height = int(key, v)?,
            "send_images" => r.send_images = flag(key, v)?.unwrap_or(true),
            "override_settings" => overrides(v, &mut r)?,
            "force_task_id" => r.task_id = opt_text(key, v)?,
            // Inert at these values, as in the web UI.
            "override_settings_restore_afterwards"
            | "save_images"
            | "do_not_save_samples"
            | "do_not_save_grid" => {
                flag(key, v)?;
            }
            "disable_extra_networks" => {
                r.disable_extra_networks = flag(key, v)?.unwrap_or(false);
            }
            "restore_faces" | "tiling" => off(key, v)?,
            "styles" | "script_args" => empty_list(key, v)?,
            "alwayson_scripts" | "comments" => empty_object(key, v)?,
            "script_name" | "infotext" | "refiner_checkpoint" | "firstpass_image" => {
                if opt_text(key, v)?.is_some_and(|t| !t.is_empty()) {
                    return Err(unsupported(
                        key,
                        "scripts, infotext, refiners and first-pass images are not supported",
                    ));
                }
            }
            "refiner_switch_at" => zero_or(key, v, &[0.0])?,
            "subseed" => {
                int(key, v)?;
            }
            "subseed_strength" => zero_or(key, v, &[0.0])?,
            "seed_resize_from_h" | "seed_resize_from_w" => zero_or(key, v, &[0.0, -1.0])?,
            "eta" => eta(v)?,
            "s_churn" => zero_or(key, v, &[0.0])?,
            // Used only with `s_churn`.
            "s_tmin" | "s_tmax" | "s_noise" if churn == 0.0 => {
                num(key, v)?;
            }
            "s_min_uncond" => zero_or(key, v, &[0.0])?,
            // The high-resolution fix's fields, used only with `enable_hr`
            // (as `denoising_strength` is in text-to-image).
            "enable_hr" => {
                flag(key, v)?;
            }
            k if route == Route::Txt2Img
                && (k.starts_with("hr_")
                    || k.starts_with("firstphase_")
                    || k == "denoising_strength") => {}
            "denoising_strength" => r.denoising_strength = num(key, v)?,
            "init_images" if route == Route::Img2Img => r.init_image = init_images(v)?,
            "include_init_images" if route == Route::Img2Img => {
                r.include_init_images = flag(key, v)?.unwrap_or(false)
            }
            "resize_mode" if route == Route::Img2Img => zero_or(key, v, &[0.0])?,
            "image_cfg_scale" if route == Route::Img2Img => {
                num(key, v)?;
            }
            "initial_noise_multiplier" if route == Route::Img2Img => zero_or(key, v, &[1.0])?,
            "mask" if route == Route::Img2Img => r.mask = opt_text(key, v)?,
            // The mask's fields; without a mask they mean nothing, as in the web UI.
            "mask_blur"
            | "mask_blur_x"
            | "mask_blur_y"
            | "inpainting_fill"
            | "inpaint_full_res"
            | "inpaint_full_res_padding"
            | "inpainting_mask_invert"
            | "latent_mask"
                if route == Route::Img2Img && !masked => {}
            "mask_blur" if route == Route::Img2Img => blur = mask_blur(key, v)?,
            "mask_blur_x" if route == Route::Img2Img => blur_xy.0 = mask_blur(key, v)?,
            "mask_blur_y" if route == Route::Img2Img => blur_xy.1 = mask_blur(key, v)?,
            "inpainting_fill" if route == Route::Img2Img => match int(key, v)? {
                None | Some(1) => r.fill = false,
                Some(0) => r.fill = true,
                Some(other) => {
                    return Err(unsupported(
                        key,
                        &format!(
                            "{other} (latent noise or nothing) is not supported; use 0 (fill) or 1 (original)"
                        ),
                    ));
                }
            },
            "inpaint_full_res" if route == Route::Img2Img => {
                r.only_masked = flag(key, v)?.unwrap_or(true);
            }
            "inpaint_full_res_padding" if route == Route::Img2Img => {
                r.only_masked_padding = match int(key, v)? {
                    None => 0,
                    Some(p @ 0..=MAX_ONLY_MASKED_PADDING) => p as u32,
                    Some(_) => {
                        return Err(wrong_type(
                            key,
                            &format!("an integer from 0 to {MAX_ONLY_MASKED_PADDING}"),
                        ));
                    }
                };
            }
            "inpainting_mask_invert" if route == Route::Img2Img => {
                r.mask_options.invert = match int(key, v)? {
                    None | Some(0) => false,
                    Some(1) => true,
                    Some(_) => return Err(wrong_type(key, "0 or 1")),
                }
            }
            "latent_mask" if route == Route::Img2Img => {
                if !v.is_null() {
                    return Err(unsupported(key, "a separate latent mask is not supported"));
                }
            }
            other => {
                return Err(ApiError::invalid(
                    "unsupported_parameter",
                    "body",
                    format!(
                        "`{}` is not a field Easel's /sdapi/v1 understands (docs/a1111.md lists them)",
                        other.chars().take(60).collect::<String>()
                    ),
                ));
            }
        }
    }
    if r.sampler.is_none()
        && let Some(name) = sampler_index
    {
        let (kind, schedule) = names::parse_sampler("sampler_index", &name)?;
        r.sampler = Some(kind);
        r.schedule = r.schedule.or(schedule);
    }
    if masked {
        // The web UI's default blur is 4; `mask_blur_x`/`_y` override it per axis.
        let both = blur.unwrap_or(4.0);
        r.mask_options.blur = (blur_xy.0.unwrap_or(both), blur_xy.1.unwrap_or(both));
    }
    if !(1..=MAX_ITERATIONS).contains(&r.n_iter) {
        return Err(ApiError::invalid(
            "invalid_n_iter",
            "n_iter",
            format!(
                "n_iter must be between 1 and {MAX_ITERATIONS}, got {}",
                r.n_iter
            ),
        ));
    }
    if route == Route::Img2Img && r.init_image.is_none() {
        return Err(ApiError::invalid(
            "missing_image",
            "init_images",
            "init_images must hold one base64 image",
        ));
    }
    Ok(r)
}

fn unsupported(field: &str, why: &str) -> ApiError {
    ApiError::invalid("unsupported_parameter", "body", format!("`{field}`: {why}"))
}

fn wrong_type(field: &str, expected: &str) -> ApiError {
    ApiError::invalid(
        "invalid_parameter",
        "body",
        format!("`{field}` must be {expected}"),
    )
}

fn text(field: &str, v: &Value) -> Result<String, ApiError> {
    Ok(opt_text(field, v)?.unwrap_or_default())
}

fn opt_text(field: &str, v: &Value) -> Result<Option<String>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(wrong_type(field, "a string")),
    }
}

fn int(field: &str, v: &Value) -> Result<Option<i64>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            // 512.0 is an integer too.
            None => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| Some(f as i64))
                .ok_or_else(|| wrong_type(field, "an integer")),
        },
        _ => Err(wrong_type(field, "an integer")),
    }
}

fn num(field: &str, v: &Value) -> Result<Option<f64>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => Ok(n.as_f64()),
        _ => Err(wrong_type(field, "a number")),
    }
}

fn flag(field: &str, v: &Value) -> Result<Option<bool>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        _ => Err(wrong_type(field, "true or false")),
    }
}

/// A feature switch Easel does not have: only off.
fn off(field: &str, v: &Value) -> Result<(), ApiError> {
    if flag(field, v)? == Some(true) {
        return Err(unsupported(field, "this feature is not supported"));
    }
    Ok(())
}

/// A number whose only accepted values are `allowed` (or null).
fn zero_or(field: &str, v: &Value, allowed: &[f64]) -> Result<(), ApiError> {
    match num(field, v)? {
        Some(x) if !allowed.contains(&x) => Err(unsupported(
            field,
            &format!(
                "only {} is supported, got {x}",
                allowed
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        )),
        _ => Ok(()),
    }
}

fn empty_list(field: &str, v: &Value) -> Result<(), ApiError> {
    match v {
        Value::Null => Ok(()),
        Value::Array(a) if a.is_empty() => Ok(()),
        Value::Array(_) => Err(unsupported(
            field,
            "must be empty: styles and scripts are not supported",
        )),
        _ => Err(wrong_type(field, "a list")),
    }
}

fn empty_object(field: &str, v: &Value) -> Result<(), ApiError> {
    match v {
        Value::Null => Ok(()),
        Value::Object(o) if o.is_empty() => Ok(()),
        Value::Object(o) => Err(unsupported(
            field,
            &format!(
                "must be empty: `{}` is not supported",
                o.keys().next().map(String::as_str).unwrap_or_default()
            ),
        )),
        _ => Err(wrong_type(field, "an object")),
    }
}

/// `eta`: the web UI's default for its ancestral samplers is 1 and Easel's
/// samplers draw with exactly that (DDIM with 0); any other value would
/// change them.
fn eta(v: &Value) -> Result<(), ApiError> {
    zero_or("eta", v, &[0.0, 1.0])
}

/// A blur in pixels, 0 to [`MAX_MASK_BLUR`].
fn mask_blur(field: &str, v: &Value) -> Result<Option<f32>, ApiError> {
    match num(field, v)? {
        None => Ok(None),
        Some(b) if (0.0..=MAX_MASK_BLUR).contains(&b) => Ok(Some(b as f32)),
        Some(b) => Err(ApiError::invalid(
            "invalid_parameter",
            "body",
            format!("`{field}` must be between 0 and {MAX_MASK_BLUR} pixels, got {b}"),
        )),
    }
}

/// The seed: -1 (random) or 0 to 4294967295, as elsewhere.
fn seed(v: &Value) -> Result<SeedRequest, ApiError> {
    match v {
        Value::Null => Ok(SeedRequest::Random),
        other => Ok(other.to_string().parse()?),
    }
}

/// `override_settings`: the model and the clip skip can be overridden per
/// request.
fn overrides(v: &Value, r: &mut SdRequest) -> Result<(), ApiError> {
    let map: &Map<String, Value> = match v {
        Value::Null => return Ok(()),
        Value::Object(m) => m,
        _ => return Err(wrong_type("override_settings", "an object")),
    };
    for (key, value) in map {
        match key.as_str() {
            "sd_model_checkpoint" => {
                r.model = opt_text("override_settings.sd_model_checkpoint", value)?
            }
            "CLIP_stop_at_last_layers" => {
                r.clip_skip = int("override_settings.CLIP_stop_at_last_layers", value)?
            }
            other => {
                return Err(unsupported(
                    &format!(
                        "override_settings.{}",
                        other.chars().take(60).collect::<String>()
                    ),
                    "only sd_model_checkpoint and CLIP_stop_at_last_layers can be overridden",
                ));
            }
        }
    }
    Ok(())
}

/// `init_images`: exactly one image.
fn init_images(v: &Value) -> Result<Option<String>, ApiError> {
    let Value::Array(items) = v else {
        return Err(wrong_type("init_images", "a list of base64 images"));
    };
    match items.as_slice() {
        [] => Ok(None),
        [Value::String(s)] => Ok(Some(s.clone())),
        [_] => Err(wrong_type("init_images", "a list of base64 images")),
        _ => Err(ApiError::invalid(
            "too_many_images",
            "init_images",
            format!(
                "exactly one initial image is supported, got {}",
                items.len()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn webuiapi_defaults_are_accepted() {
        // What webuiapi 0.9.17 sends for `txt2img(prompt=…)` with these values.
        let body: Value = serde_json::from_str(
            r#"{
            "enable_hr": false, "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 0,
            "hr_resize_x": 0, "hr_resize_y": 0, "hr_checkpoint_name": null, "hr_sampler_name": null,
            "hr_scheduler": null, "hr_prompt": "", "hr_negative_prompt": "", "denoising_strength": 0.7,
            "firstphase_width": 0, "firstphase_height": 0, "prompt": "cat", "styles": [], "seed": 7,
            "subseed": -1, "subseed_strength": 0.0, "seed_resize_from_h": 0, "seed_resize_from_w": 0,
            "batch_size": 2, "n_iter": 3, "steps": 4, "cfg_scale": 7.0, "width": 32, "height": 32,
            "restore_faces": false, "tiling": false, "do_not_save_samples": false,
            "do_not_save_grid": false, "negative_prompt": "dog", "eta": 1.0, "s_churn": 0,
            "s_tmax": 0, "s_tmin": 0, "s_noise": 1, "override_settings": {},
            "override_settings_restore_afterwards": true, "sampler_name": "Euler a",
            "scheduler": "automatic", "sampler_index": "Euler a", "script_name": null,
            "script_args": [], "send_images": true, "save_images": false, "alwayson_scripts": {}
            }"#,
        )
        .unwrap();
        let r = parse(Route::Txt2Img, &body).unwrap();
        assert_eq!(r.prompt, "cat");
        assert_eq!(r.negative_prompt, "dog");
        assert_eq!((r.batch_size, r.n_iter, r.steps), (2, 3, Some(4)));
        assert_eq!(r.sampler, Some(SamplerKind::EulerAncestral));
        assert_eq!(r.schedule, Some(ScheduleKind::Default));
        assert_eq!(r.seed, SeedRequest::Fixed(7));
    }

    #[test]
    fn features_that_are_on_are_refused_naming_the_field() {
        for (field, value) in [
            ("enable_hr", json!(true)),
            ("restore_faces", json!(true)),
            ("styles", json!(["anime"])),
            ("s_churn", json!(0.5)),
            ("eta", json!(0.3)),
            ("subseed_strength", json!(0.2)),
            ("alwayson_scripts", json!({"ControlNet": {"args": []}})),
            ("override_settings", json!({"sd_vae": "auto"})),
            ("no_such_field", json!(1)),
        ] {
            let body = json!({ "prompt": "cat", field: value });
            let e = parse(Route::Txt2Img, &body).unwrap_err();
            assert_eq!(e.code(), "unsupported_parameter", "{field}: {e}");
            assert!(e.message().contains(field), "{field}: {e}");
        }
        let e = parse(Route::Txt2Img, &json!({"prompt": "cat", "init_images": []})).unwrap_err();
        assert!(e.message().contains("init_images"), "{e}");
    }

    #[test]
    fn img2img_needs_exactly_one_image() {
        let e = parse(Route::Img2Img, &json!({"prompt": "cat"})).unwrap_err();
        assert_eq!(e.code(), "missing_image");
        let e = parse(
            Route::Img2Img,
            &json!({"prompt": "cat", "init_images": ["a", "b"]}),
        )
        .unwrap_err();
        assert_eq!(e.code(), "too_many_images");
        let r = parse(
            Route::Img2Img,
            &json!({"prompt": "cat", "init_images": ["aGk="], "denoising_strength": 0.4, "mask_blur": 4}),
        )
        .unwrap();
        assert_eq!(r.denoising_strength, Some(0.4));
        let e = parse(Route::Txt2Img, &json!({"prompt": "cat", "n_iter": 17})).unwrap_err();
        assert_eq!(e.code(), "invalid_n_iter");
    }
}
