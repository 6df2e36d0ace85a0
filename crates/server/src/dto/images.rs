//! Request and response bodies of the OpenAI Images routes, and their
//! parsing into validated types.
//!
//! The DTOs are deliberately loose (every field optional, numbers as wide
//! integers) so that a bad value reaches validation and gets its own stable
//! code, instead of failing inside serde with a generic message.

use easel_core::{
    GenerationParams, ModerationLevel, OutputOptions, ParamError, PromptRule, RawParams,
    SeedRequest,
};
use easel_jobs::{Models, check_for_model};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// `POST /v1/images/generations` (OpenAI's request, plus Easel's extensions).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
pub struct CreateImageRequest {
    /// Model name from `/v1/models`; default: the server's default model.
    #[serde(default)]
    pub model: Option<String>,
    /// What to draw. Required, not blank, at most 4000 characters.
    #[serde(default)]
    pub prompt: String,
    /// Number of images, 1–10. Default 1.
    #[serde(default)]
    pub n: Option<i64>,
    /// `"WIDTHxHEIGHT"`, e.g. `"32x32"`; `"auto"` or absent: the model's default.
    #[serde(default)]
    pub size: Option<String>,
    /// `b64_json` (default) or `url` (a signed, expiring link).
    #[serde(default)]
    pub response_format: Option<String>,
    /// `png` (default), `jpeg` or `webp`.
    #[serde(default)]
    pub output_format: Option<String>,
    /// 0–100: JPEG's quality; with `png` or `webp` (lossless here) 400
    /// `unsupported_parameter`.
    #[serde(default)]
    pub output_compression: Option<i64>,
    /// An end-user id (at most 256 characters kept), recorded with the job
    /// and its images as `end_user`, with API keys on or off; with keys
    /// off it is also the job's `user`.
    #[serde(default)]
    pub user: Option<String>,
    /// A preset for `steps` (docs/openai.md): `low` half the model's
    /// default steps, `medium`, `standard` or `auto` the default, `high` or
    /// `hd` twice the default (at most 150). With `steps` too, only `auto`
    /// is accepted (400 `conflicting_parameters`).
    #[serde(default)]
    pub quality: Option<String>,
    /// DALL·E 3's `vivid`/`natural`: not supported (400
    /// `unsupported_parameter`).
    #[serde(default)]
    pub style: Option<String>,
    /// `auto` or `opaque` (what Easel makes); `transparent` is 400
    /// `unsupported_parameter`.
    #[serde(default)]
    pub background: Option<String>,
    /// `auto`: the server's moderation policy, which the operator sets;
    /// `low` is 400 `unsupported_parameter`.
    #[serde(default)]
    pub moderation: Option<String>,
    /// Extension: seed of the first image, an integer from 0 to 4294967295,
    /// or -1 for a random one; default: random. Image `i` uses `seed + i`
    /// (wrapping to 0 after 4294967295); the seeds used are in the response.
    /// Any other value is 400 `invalid_seed`.
    // Any JSON value, so that a bad seed (-2, 2^64, 1.5, "7") reaches the one
    // seed parser and gets `invalid_seed` rather than a generic body error.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = -1, maximum = 4294967295_u32)]
    pub seed: Option<serde_json::Value>,
    /// Extension: denoising steps, 1–150; default: the model's.
    #[serde(default)]
    pub steps: Option<i64>,
    /// Extension: classifier-free guidance, 0–50; default: the model's.
    #[serde(default)]
    pub guidance_scale: Option<f64>,
    /// Extension: what not to draw.
    #[serde(default)]
    pub negative_prompt: Option<String>,
    /// Extension: `euler`, `euler_ancestral`, `heun`, `dpmpp_2m`, `ddim`
    /// or `lcm`; default: the model's.
    #[serde(default)]
    pub sampler: Option<String>,
    /// Extension: sigma schedule, `default`, `karras` or `exponential`.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Extension (edits and jobs): image-to-image strength, 0–1.
    #[serde(default)]
    pub strength: Option<f64>,
    /// Extension: AUTOMATIC1111's clip skip, 1–12 (1, the default, is the
    /// text encoder's last layer); it changes SD 1.x models only.
    #[serde(default)]
    pub clip_skip: Option<i64>,
    /// Answer with server-sent events in OpenAI's streaming format
    /// (`image_generation.partial_image` events, then one
    /// `image_generation.completed` per image); the synchronous image
    /// routes only.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Partial images of a stream, 0–3 (evenly spaced previews from the
    /// denoising loop); only with `stream`.
    #[serde(default)]
    pub partial_images: Option<i64>,
    /// Extension: LoRA adapters to apply, `[{"name", "weight"}]` (weight
    /// -4 to 4, default 1; at most 8), added to the prompts'
    /// `<lora:NAME:WEIGHT>` tags, which are always taken out of the prompt
    /// text (docs/openai.md).
    #[serde(default)]
    pub loras: Option<Vec<crate::dto::loras::LoraRequest>>,
    /// Whether the prompts' `<lora:…>` tags are applied (set by
    /// `/sdapi/v1` from `disable_extra_networks`); not a body field.
    #[serde(skip)]
    #[schema(ignore)]
    pub prompt_tags: crate::dto::loras::PromptTags,
    /// Whether the prompt may be empty: [`PromptRule::MayBeEmpty`] for a
    /// variation of an image that records no prompt, set by the route; not
    /// a body field. Default: required.
    #[serde(skip)]
    #[schema(ignore)]
    pub prompt_rule: PromptRule,
    /// Whether this server offers `moderation: "low"`
    /// (`moderation.image_low` is set), filled in by the route; not a body
    /// field. `false` refuses `low`.
    #[serde(skip)]
    #[schema(ignore)]
    pub low_moderation_offered: bool,
    /// Any other field: refused with 400 `unsupported_parameter` naming it,
    /// never silently ignored.
    #[serde(flatten, default, skip_serializing)]
    #[schema(ignore)]
    pub unknown: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A request parsed into the types the job system takes.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    /// Generation parameters, defaults filled, seed resolved.
    pub params: GenerationParams,
    /// Encoding and delivery.
    pub output: OutputOptions,
    /// End-user id (OpenAI's `user`), at most 256 characters; `None` when
    /// absent or empty.
    pub user: Option<String>,
    /// `stream: true`: the partial images wanted (0–3); `None`: no stream.
    pub stream: Option<u32>,
}

/// Most partial images a stream may ask for (OpenAI's limit).
pub const MAX_PARTIAL_IMAGES: i64 = 3;

impl CreateImageRequest {
    /// Validates against the named model's limits and defaults.
    pub fn validate(self, models: &Models) -> Result<ValidRequest, ApiError> {
        let seed = json_seed(self.seed.as_ref())?;
        self.validate_with_seed(seed, models)
    }

    /// [`Self::validate`] with the seed already parsed (the edit form parses
    /// its text field itself); the body's `seed` is ignored.
    pub fn validate_with_seed(
        self,
        seed: SeedRequest,
        models: &Models,
    ) -> Result<ValidRequest, ApiError> {
        let output = parse_output(
            self.response_format.as_deref(),
            self.output_format.as_deref(),
            self.output_compression,
        )?;
        if let Some(field) = self.unknown.keys().next() {
            return Err(ApiError::invalid(
                "unsupported_parameter",
                "body",
                format!(
                    "`{}` is not a field of this route (docs/openai.md lists them)",
                    short(field)
                ),
            ));
        }
        let stream = match (self.stream, self.partial_images) {
            (Some(true), None) => Some(0),
            (Some(true), Some(n @ 0..=MAX_PARTIAL_IMAGES)) => Some(n as u32),
            (Some(true), Some(n)) => {
                return Err(ApiError::invalid(
                    "invalid_partial_images",
                    "partial_images",
                    format!("partial_images must be between 0 and {MAX_PARTIAL_IMAGES}, got {n}"),
                ));
            }
            (_, None | Some(0)) => None,
            (_, Some(_)) => {
                return Err(ApiError::invalid(
                    "invalid_partial_images",
                    "partial_images",
                    "partial_images needs stream: true",
                ));
            }
        };
        let mut output = output;
        output.moderation = check_openai_options(
            self.style.as_deref(),
            self.background.as_deref(),
            self.moderation.as_deref(),
            self.low_moderation_offered,
        )?;
        // The description kept from the model's last load: a cold (evicted)
        // model is validated against its real limits and starts warming up.
        let info = models.info(self.model.as_deref().filter(|m| !m.is_empty()))?;
        let steps = quality_steps(self.quality.as_deref(), self.steps, info.default_steps)?;
        let taken = crate::dto::loras::take(
            &self.prompt,
            self.negative_prompt.as_deref(),
            self.loras.as_deref(),
            self.prompt_tags,
        )?;
        let raw = RawParams {
            model: info.name.clone(),
            prompt: taken.prompt,
            negative_prompt: taken.negative_prompt,
            size: self.size,
            n: self.n,
            steps,
            guidance_scale: self.guidance_scale,
            seed: seed.fixed(),
            sampler: self.sampler,
            schedule: self.schedule,
            strength: self.strength,
            clip_skip: self.clip_skip,
            prompt_rule: self.prompt_rule,
        };
        let params = GenerationParams::validate(
            raw,
            info.default_size,
            info.default_steps,
            info.default_guidance,
            rand::random,
        )?;
        check_for_model(&params, &info)?;
        let mut params = params;
        params.loras = crate::dto::loras::resolve(models, &taken.wanted)?;
        let user = self
            .user
            .filter(|u| !u.is_empty())
            .map(|u| u.chars().take(256).collect());
        if let Some(partial) = stream.filter(|&p| p > 0) {
            // Evenly spaced previews, the last partial image before the end.
            output.preview_every_steps = Some((params.steps / (partial + 1)).max(1));
        }
        Ok(ValidRequest {
            params,
            output,
            user,
            stream,
        })
    }
}

/// Refuses the OpenAI options Easel cannot honour instead of ignoring them.
fn check_openai_options(
    style: Option<&str>,
    background: Option<&str>,
    moderation: Option<&str>,
    low_offered: bool,
) -> Result<ModerationLevel, ApiError> {
    if let Some(style) = style.filter(|s| !s.is_empty()) {
        return Err(ApiError::invalid(
            "unsupported_parameter",
            "style",
            format!(
                "style `{}` is not supported: Easel's models have no DALL·E 3 styles; \
                 describe the look in the prompt",
                short(style)
            ),
        ));
    }
    match background {
        None | Some("" | "auto" | "opaque") => {}
        Some("transparent") => {
            return Err(ApiError::invalid(
                "unsupported_parameter",
                "background",
                "background `transparent` is not supported: Easel's models make opaque \
                 images; use `auto` or `opaque`",
            ));
        }
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid_background",
                "background",
                format!(
                    "background must be auto, opaque or transparent, got `{}`",
                    short(other)
                ),
            ));
        }
    }
    match moderation {
        None | Some("" | "auto") => Ok(ModerationLevel::Auto),
        Some("low") if low_offered => Ok(ModerationLevel::Low),
        Some("low") => Err(ApiError::invalid(
            "unsupported_parameter",
            "moderation",
            "moderation `low` is not offered by this server: its operator sets the \
             moderation policy and has not set `moderation.image_low` (docs/moderation.md); \
             use `auto`",
        )),
        Some(other) => Err(ApiError::invalid(
            "invalid_moderation",
            "moderation",
            format!("moderation must be auto or low, got `{}`", short(other)),
        )),
    }
}

/// The steps a `quality` preset stands for (see [`CreateImageRequest::quality`]).
fn quality_steps(
    quality: Option<&str>,
    steps: Option<i64>,
    default_steps: u32,
) -> Result<Option<i64>, ApiError> {
    let default = i64::from(default_steps.max(1));
    let preset = match quality {
        None | Some("" | "auto") => return Ok(steps),
        Some("low") => (default / 2).max(1),
        Some("medium" | "standard") => default,
        Some("high" | "hd") => (default * 2).min(i64::from(easel_core::limits::MAX_STEPS)),
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid_quality",
                "quality",
                format!(
                    "quality must be auto, low, medium, high, standard or hd, got `{}`",
                    short(other)
                ),
            ));
        }
    };
    if steps.is_some() {
        return Err(ApiError::invalid(
            "conflicting_parameters",
            "quality",
            "give either quality (a preset for steps) or steps, not both",
        ));
    }
    Ok(Some(preset))
}

fn short(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The seed of a JSON body: absent or `null` is random; a number goes to
/// the one seed parser (so `-1` is random too); anything else is
/// `invalid_seed` with the parser's message.
fn json_seed(value: Option<&serde_json::Value>) -> Result<SeedRequest, ParamError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(SeedRequest::Random),
        // A number's text is its JSON text: `-1`, `42`, `1.5`, `1e20`.
        Some(value) => value.to_string().parse(),
    }
}

/// Parses the delivery options shared by every image route.
pub fn parse_output(
    response_format: Option<&str>,
    output_format: Option<&str>,
    output_compression: Option<i64>,
) -> Result<OutputOptions, ApiError> {
    let response_format = match response_format {
        None | Some("") => Default::default(),
        Some(s) => s.parse().map_err(|e: easel_core::UnknownName| {
            ApiError::invalid("invalid_response_format", "response_format", e.to_string())
        })?,
    };
    let output_format: easel_core::OutputFormat = match output_format {
        None | Some("") => Default::default(),
        Some(s) => s.parse().map_err(|e: easel_core::UnknownName| {
            ApiError::invalid("invalid_output_format", "output_format", e.to_string())
        })?,
    };
    let output_compression = match output_compression {
        None => None,
        Some(c @ 0..=100) => Some(c as u8),
        Some(c) => {
            return Err(ApiError::invalid(
                "invalid_output_compression",
                "output_compression",
                format!("output_compression must be between 0 and 100, got {c}"),
            ));
        }
    };
    if output_compression.is_some() && output_format != easel_core::OutputFormat::Jpeg {
        return Err(ApiError::invalid(
            "unsupported_parameter",
            "output_compression",
            format!(
                "output_compression applies to jpeg only: Easel's {} images are lossless",
                output_format.as_str()
            ),
        ));
    }
    Ok(OutputOptions {
        response_format,
        output_format,
        output_compression,
        preview_every_steps: None,
        moderation: ModerationLevel::Auto,
    })
}

/// The OpenAI Images response, plus Easel's fields.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImagesResponse {
    /// Unix seconds when the job was created.
    pub created: i64,
    /// One entry per image.
    pub data: Vec<ImageData>,
    /// The file format of the images.
    pub output_format: String,
    /// `"WIDTHxHEIGHT"`.
    pub size: String,
    /// Extension: the job that made the images.
    pub job_id: String,
    /// Extension: the seed of the first image (a random request's drawn
    /// seed), 0 to 4294967295.
    pub seed: u64,
    /// Extension: the model that made them.
    pub model: String,
}

/// One image of a response: `b64_json` or `url`, never both.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageData {
    /// The encoded file, base64 (with `response_format=b64_json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    /// A signed, expiring link to the file (with `response_format=url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Always absent: Easel does not rewrite prompts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revised_prompt: Option<String>,
    /// Extension: the stored image's id (`GET /v1/images/{id}`).
    pub id: String,
    /// Extension: this image's seed (`seed + i`, wrapping after
    /// 4294967295): sent as `seed` with `n` 1, it makes this image again.
    pub seed: u64,
}
