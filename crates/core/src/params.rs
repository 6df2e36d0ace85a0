//! Validated generation parameters.
//!
//! The API edge turns a request body into [`GenerationParams`] with
//! [`GenerationParams::validate`]; from then on the queue and the engine rely
//! on its invariants. Model-specific limits (a model's largest size) are the
//! engine's to check, since only it knows the model.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::sampler::{SamplerKind, ScheduleKind};

/// Hard limits that hold for every model. Model-specific limits are tighter.
pub mod limits {
    /// Images per request (OpenAI's limit).
    pub const MAX_N: u32 = 10;
    /// Denoising steps per image.
    pub const MAX_STEPS: u32 = 150;
    /// Largest side, in pixels, any model may be asked for.
    pub const MAX_SIDE: u32 = 2048;
    /// Smallest side, in pixels.
    pub const MIN_SIDE: u32 = 8;
    /// Prompt length in characters (tokenizers truncate further, with a warning).
    pub const MAX_PROMPT_CHARS: usize = 4000;
    /// Largest accepted guidance scale.
    pub const MAX_GUIDANCE: f32 = 50.0;
}

/// A rectangle of an image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Region {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width, at least 1.
    pub width: u32,
    /// Height, at least 1.
    pub height: u32,
}

/// Width and height in pixels, each a multiple of 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Size {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Size {
    /// A size, checked against the global limits.
    pub fn new(width: u32, height: u32) -> Result<Self, ParamError> {
        for (field, v) in [("width", width), ("height", height)] {
            if !(limits::MIN_SIDE..=limits::MAX_SIDE).contains(&v) || v % 8 != 0 {
                return Err(ParamError::new(
                    "size",
                    "invalid_size",
                    format!(
                        "{field} {v} must be a multiple of 8 between {} and {}",
                        limits::MIN_SIDE,
                        limits::MAX_SIDE
                    ),
                ));
            }
        }
        Ok(Self { width, height })
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl FromStr for Size {
    type Err = ParamError;

    /// Parses OpenAI's `"WxH"` form, e.g. `"512x512"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ParamError::new(
                "size",
                "invalid_size",
                format!(
                    "size `{}` must look like `WIDTHxHEIGHT`, e.g. `512x512`",
                    s.chars().take(40).collect::<String>()
                ),
            )
        };
        let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let w = w.trim().parse::<u32>().map_err(|_| bad())?;
        let h = h.trim().parse::<u32>().map_err(|_| bad())?;
        Size::new(w, h)
    }
}

/// Scheduling tier of a job: synchronous requests go ahead of batch work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// A client is waiting on the connection.
    Realtime,
    /// Asynchronous work; runs when no realtime work is waiting.
    Batch,
}

impl Tier {
    /// The snake_case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Tier::Realtime => "realtime",
            Tier::Batch => "batch",
        }
    }
}

/// The seed a request asks for, parsed at the edge (the JSON body, the edit
/// form, `easel generate --seed`) by its one parser, [`SeedRequest::from_str`],
/// handed on as [`RawParams::seed`] ([`SeedRequest::fixed`]) and resolved
/// once, in [`GenerationParams::validate`], with the randomness passed in.
///
/// A seed is an integer from 0 to 4294967295 (2^32 − 1), or −1 for a random
/// one (AUTOMATIC1111's convention, which clients built for it send). 32 bits
/// because AUTOMATIC1111, ComfyUI workflows shared as PNG text, numpy's
/// `RandomState` and many UIs store seeds as 32-bit integers, so an Easel seed
/// can be typed into any of them; because every such value is exact as a JSON
/// number in JavaScript (above 2^53 a seed would silently change); and because
/// SQLite keeps it exactly in a signed 64-bit column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SeedRequest {
    /// Draw a fresh seed: `-1`, or no seed given.
    #[default]
    Random,
    /// Use this seed.
    Fixed(u32),
}

impl SeedRequest {
    /// The text a client sends for [`SeedRequest::Random`].
    pub const RANDOM: &'static str = "-1";

    /// The fixed seed, or `None` for a random one: the form
    /// [`RawParams::seed`] takes.
    pub fn fixed(self) -> Option<u32> {
        match self {
            SeedRequest::Random => None,
            SeedRequest::Fixed(seed) => Some(seed),
        }
    }

    /// The error for a seed outside the range, naming the field and the range.
    fn invalid(text: &str) -> ParamError {
        ParamError::new(
            "seed",
            "invalid_seed",
            format!(
                "seed must be an integer from 0 to {} or -1 for a random seed, got `{}`",
                u32::MAX,
                text.trim().chars().take(40).collect::<String>()
            ),
        )
    }
}

impl FromStr for SeedRequest {
    type Err = ParamError;

    /// Parses `-1` (random) or an integer from 0 to 4294967295, surrounding
    /// whitespace allowed; anything else is `invalid_seed`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<i64>() {
            Ok(-1) => Ok(SeedRequest::Random),
            Ok(n) => u32::try_from(n)
                .map(SeedRequest::Fixed)
                .map_err(|_| Self::invalid(s)),
            Err(_) => Err(Self::invalid(s)),
        }
    }
}

impl fmt::Display for SeedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeedRequest::Random => f.write_str(Self::RANDOM),
            SeedRequest::Fixed(seed) => write!(f, "{seed}"),
        }
    }
}

/// A parameter that failed validation: which field, a stable code, and a
/// message that names the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// The request field at fault, as named in the API (e.g. `size`, `n`).
    pub field: &'static str,
    /// Stable machine-readable code, e.g. `invalid_size`.
    pub code: &'static str,
    /// Human-readable explanation naming the limit.
    pub message: String,
}

impl ParamError {
    /// Builds an error.
    pub fn new(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            code,
            message: message.into(),
        }
    }
}

/// Everything needed to generate a job's images, validated.
///
/// Image `i` of the job (0-based) uses seed `seed + i` (wrapping), so each
/// image has its own generator: a batch draws the same noise as the same
/// images generated one at a time, and gives their pixels within the
/// engine's batching tolerance (`docs/performance.md`, "Real batching").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    /// Model name as listed by `/v1/models` (an alias of versions).
    pub model: String,
    /// The concrete version the job runs on (the content hash of a model
    /// folder), chosen when the job is submitted; `None` in records from
    /// before versions, and outside a server (`easel generate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The prompt, trimmed; non-empty unless validated with
    /// [`PromptRule::MayBeEmpty`].
    pub prompt: String,
    /// Optional negative prompt (empty string when absent).
    pub negative_prompt: String,
    /// Output size.
    pub size: Size,
    /// Number of images, 1..=10.
    pub n: u32,
    /// Denoising steps, 1..=150.
    pub steps: u32,
    /// Classifier-free guidance scale; 1.0 or below disables guidance.
    pub guidance_scale: f32,
    /// Seed of the first image: from 0 to 4294967295 ([`SeedRequest`]),
    /// random ones already drawn. Wider than that range only so that records
    /// from before the range was set still load.
    pub seed: u64,
    /// Sampler; `None` means the model's default.
    pub sampler: Option<SamplerKind>,
    /// Sigma schedule.
    pub schedule: ScheduleKind,
    /// Image-to-image strength in [0, 1]; `None` for text-to-image.
    pub strength: Option<f32>,
    /// AUTOMATIC1111's clip skip: 1 (or `None`) conditions on the text
    /// encoder's last layer, 2 on the one before, …, up to
    /// [`crate::MAX_CLIP_SKIP`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_skip: Option<u32>,
    /// Image-to-image with an inpainting mask (stored beside the initial
    /// image): only the masked part is redrawn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub masked: bool,
    /// "Only masked" inpainting (the AUTOMATIC1111 web UI's
    /// `inpaint_full_res`): this region of the initial image, which is
    /// stored at its own size, is generated at `size` and pasted back
    /// through the mask, so the output keeps the initial image's size and
    /// a small masked area gets the model's full resolution. `None`: the
    /// initial image is already at `size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inpaint_area: Option<Region>,
    /// LoRA adapters merged into the model, sorted by name, each named at
    /// most once; empty (and left out of the JSON, so records from before
    /// LoRAs load) for the base model. Set by the edge after
    /// [`GenerationParams::validate`] (see [`crate::lora`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<crate::LoraRef>,
}

/// Unvalidated parameters, as they arrive from a request body or the CLI.
/// `None` fields take the documented defaults.
#[derive(Debug, Clone, Default)]
pub struct RawParams {
    /// Model name (required; the edge fills in the configured default).
    pub model: String,
    /// Prompt.
    pub prompt: String,
    /// Negative prompt.
    pub negative_prompt: Option<String>,
    /// `"WxH"`.
    pub size: Option<String>,
    /// Images; default 1.
    pub n: Option<i64>,
    /// Steps; the edge fills the model default.
    pub steps: Option<i64>,
    /// Guidance; the edge fills the model default.
    pub guidance_scale: Option<f64>,
    /// A fixed seed (its type is the seed range, 0 to 4294967295), or
    /// `None` for a random one, drawn by `validate`. Parse text with
    /// [`SeedRequest`] (`-1` is random) and pass [`SeedRequest::fixed`].
    pub seed: Option<u32>,
    /// Sampler name.
    pub sampler: Option<String>,
    /// Schedule name; default `default`.
    pub schedule: Option<String>,
    /// Image-to-image strength.
    pub strength: Option<f64>,
    /// Clip skip, 1 to [`crate::MAX_CLIP_SKIP`]; `None`: the last layer.
    pub clip_skip: Option<i64>,
    /// Whether the prompt may be empty; default [`PromptRule::Required`].
    pub prompt_rule: PromptRule,
}

/// Whether a request must have a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PromptRule {
    /// An empty or blank prompt is `invalid_prompt` (every route but one).
    #[default]
    Required,
    /// An empty prompt is accepted and kept empty: a variation of an image
    /// that records no prompt (OpenAI's variations take any image), which
    /// is then guided by the image alone.
    MayBeEmpty,
}

impl GenerationParams {
    /// Validates raw parameters. `default_size` and `default_steps` and
    /// `default_guidance` come from the model; `fresh_seed` is called only
    /// for a random seed (randomness stays an argument; pass `rand::random`).
    pub fn validate(
        raw: RawParams,
        default_size: Size,
        default_steps: u32,
        default_guidance: f32,
        fresh_seed: impl FnOnce() -> u32,
    ) -> Result<Self, ParamError> {
        let prompt = raw.prompt.trim().to_string();
        if prompt.is_empty() && raw.prompt_rule == PromptRule::Required {
            return Err(ParamError::new(
                "prompt",
                "invalid_prompt",
                "prompt must not be empty or whitespace",
            ));
        }
        if prompt.chars().count() > limits::MAX_PROMPT_CHARS {
            return Err(ParamError::new(
                "prompt",
                "prompt_too_long",
                format!(
                    "prompt must be at most {} characters",
                    limits::MAX_PROMPT_CHARS
                ),
            ));
        }
        // AUTOMATIC1111's prompt syntax: a malformed or out-of-range weight
        // is refused here, at the edge, naming the field.
        crate::prompt::validate_prompt(&prompt)
            .map_err(|e| ParamError::new("prompt", e.code(), e.to_string()))?;
        let negative_prompt = raw.negative_prompt.unwrap_or_default().trim().to_string();
        crate::prompt::validate_prompt(&negative_prompt)
            .map_err(|e| ParamError::new("negative_prompt", e.code(), e.to_string()))?;
        if negative_prompt.chars().count() > limits::MAX_PROMPT_CHARS {
            return Err(ParamError::new(
                "negative_prompt",
                "prompt_too_long",
                format!(
                    "negative_prompt must be at most {} characters",
                    limits::MAX_PROMPT_CHARS
                ),
            ));
        }
        let size = match raw.size.as_deref() {
            None | Some("auto") => default_size,
            Some(s) => s.parse()?,
        };
        let n = raw.n.unwrap_or(1);
        if !(1..=limits::MAX_N as i64).contains(&n) {
            return Err(ParamError::new(
                "n",
                "invalid_n",
                format!("n must be between 1 and {}, got {n}", limits::MAX_N),
            ));
        }
        let steps = raw.steps.unwrap_or(default_steps as i64);
        if !(1..=limits::MAX_STEPS as i64).contains(&steps) {
            return Err(ParamError::new(
                "steps",
                "invalid_steps",
                format!(
                    "steps must be between 1 and {}, got {steps}",
                    limits::MAX_STEPS
                ),
            ));
        }
        let guidance = raw.guidance_scale.unwrap_or(default_guidance as f64);
        if !guidance.is_finite() || !(0.0..=limits::MAX_GUIDANCE as f64).contains(&guidance) {
            return Err(ParamError::new(
                "guidance_scale",
                "invalid_guidance_scale",
                format!(
                    "guidance_scale must be a finite number between 0 and {}",
                    limits::MAX_GUIDANCE
                ),
            ));
        }
        let sampler = match raw.sampler.as_deref() {
            None | Some("") | Some("default") => None,
            Some(s) => Some(
                s.parse::<SamplerKind>()
                    .map_err(|e| ParamError::new("sampler", "invalid_sampler", e.to_string()))?,
            ),
        };
        let schedule = match raw.schedule.as_deref() {
            None | Some("") => ScheduleKind::Default,
            Some(s) => s
                .parse::<ScheduleKind>()
                .map_err(|e| ParamError::new("schedule", "invalid_schedule", e.to_string()))?,
        };
        let strength = match raw.strength {
            None => None,
            Some(s) if s.is_finite() && (0.0..=1.0).contains(&s) => Some(s as f32),
            Some(s) => {
                return Err(ParamError::new(
                    "strength",
                    "invalid_strength",
                    format!("strength must be between 0 and 1, got {s}"),
                ));
            }
        };
        let clip_skip = match raw.clip_skip {
            None => None,
            Some(c) if (1..=i64::from(crate::MAX_CLIP_SKIP)).contains(&c) => Some(c as u32),
            Some(c) => {
                return Err(ParamError::new(
                    "clip_skip",
                    "invalid_clip_skip",
                    format!(
                        "clip_skip must be between 1 and {}, got {c}",
                        crate::MAX_CLIP_SKIP
                    ),
                ));
            }
        };
        // The one place a random seed is drawn.
        let seed = u64::from(raw.seed.unwrap_or_else(fresh_seed));
        Ok(Self {
            model: raw.model,
            version: None,
            prompt,
            negative_prompt,
            size,
            n: n as u32,
            steps: steps as u32,
            guidance_scale: guidance as f32,
            seed,
            sampler,
            schedule,
            strength,
            clip_skip,
            masked: false,
            inpaint_area: None,
            loras: Vec::new(),
        })
    }

    /// The seed of image `index` of this job: `seed + index`, wrapping
    /// within the 32-bit range so that every image's seed is one a request
    /// may give (image 1 of seed 4294967295 has seed 0). A record from
    /// before the range (a wider seed) keeps its 64-bit wrapping sum.
    pub fn image_seed(&self, index: u32) -> u64 {
        match u32::try_from(self.seed) {
            Ok(seed) => u64::from(seed.wrapping_add(index)),
            Err(_) => self.seed.wrapping_add(u64::from(index)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(prompt: &str) -> RawParams {
        RawParams {
            model: "m".into(),
            prompt: prompt.into(),
            ..Default::default()
        }
    }

    fn validate(r: RawParams) -> Result<GenerationParams, ParamError> {
        GenerationParams::validate(r, Size::new(32, 32).unwrap(), 20, 5.0, || 42)
    }

    #[test]
    fn defaults_are_filled_and_seed_resolved() {
        let p = validate(raw(" a red apple ")).unwrap();
        assert_eq!(p.prompt, "a red apple");
        assert_eq!(p.size, Size::new(32, 32).unwrap());
        assert_eq!((p.n, p.steps, p.seed), (1, 20, 42));
        assert_eq!(p.image_seed(3), 45);
    }

    #[test]
    fn a_seed_is_minus_one_or_an_integer_from_0_to_2_pow_32_minus_1() {
        for (text, want) in [
            ("-1", SeedRequest::Random),
            (" -1 ", SeedRequest::Random),
            ("0", SeedRequest::Fixed(0)),
            ("42", SeedRequest::Fixed(42)),
            ("4294967295", SeedRequest::Fixed(u32::MAX)),
        ] {
            assert_eq!(text.parse::<SeedRequest>(), Ok(want), "{text}");
        }
        for text in [
            "-2",
            "4294967296",
            "18446744073709551615",
            "1.5",
            "1e3",
            "",
            "random",
        ] {
            let e = text.parse::<SeedRequest>().unwrap_err();
            assert_eq!((e.field, e.code), ("seed", "invalid_seed"), "{text}");
            assert_eq!(
                e.message,
                format!(
                    "seed must be an integer from 0 to 4294967295 or -1 for a random seed, \
                     got `{text}`"
                )
            );
        }
        // Display writes the form the parser reads.
        for seed in [SeedRequest::Random, SeedRequest::Fixed(7)] {
            assert_eq!(seed.to_string().parse::<SeedRequest>(), Ok(seed));
        }
    }

    #[test]
    fn only_a_random_seed_calls_the_generator() {
        let random = GenerationParams::validate(
            RawParams {
                seed: SeedRequest::Random.fixed(),
                ..raw("x")
            },
            Size::new(32, 32).unwrap(),
            20,
            5.0,
            || u32::MAX,
        )
        .unwrap();
        assert_eq!(random.seed, u64::from(u32::MAX));
        let fixed = GenerationParams::validate(
            RawParams {
                seed: SeedRequest::Fixed(0).fixed(),
                ..raw("x")
            },
            Size::new(32, 32).unwrap(),
            20,
            5.0,
            || unreachable!("a fixed seed draws nothing"),
        )
        .unwrap();
        assert_eq!(fixed.seed, 0, "0 is a seed, not \"random\"");
    }

    #[test]
    fn image_seeds_stay_in_the_seed_range() {
        let p = validate(RawParams {
            seed: Some(u32::MAX - 1),
            n: Some(3),
            ..raw("x")
        })
        .unwrap();
        let seeds: Vec<u64> = (0..3).map(|i| p.image_seed(i)).collect();
        assert_eq!(seeds, [u64::from(u32::MAX) - 1, u64::from(u32::MAX), 0]);
        // A record from before the range keeps its 64-bit sum.
        let old = GenerationParams { seed: 1 << 40, ..p };
        assert_eq!(old.image_seed(2), (1 << 40) + 2);
    }

    #[test]
    fn each_bad_field_is_named_with_its_code() {
        let cases: Vec<(RawParams, &str, &str)> = vec![
            (raw("   "), "prompt", "invalid_prompt"),
            (
                RawParams {
                    size: Some("513x512".into()),
                    ..raw("x")
                },
                "size",
                "invalid_size",
            ),
            (
                RawParams {
                    size: Some("big".into()),
                    ..raw("x")
                },
                "size",
                "invalid_size",
            ),
            (
                RawParams {
                    n: Some(0),
                    ..raw("x")
                },
                "n",
                "invalid_n",
            ),
            (
                RawParams {
                    n: Some(11),
                    ..raw("x")
                },
                "n",
                "invalid_n",
            ),
            (
                RawParams {
                    steps: Some(0),
                    ..raw("x")
                },
                "steps",
                "invalid_steps",
            ),
            (
                RawParams {
                    guidance_scale: Some(f64::NAN),
                    ..raw("x")
                },
                "guidance_scale",
                "invalid_guidance_scale",
            ),
            (
                RawParams {
                    sampler: Some("plms".into()),
                    ..raw("x")
                },
                "sampler",
                "invalid_sampler",
            ),
            (
                RawParams {
                    strength: Some(1.5),
                    ..raw("x")
                },
                "strength",
                "invalid_strength",
            ),
        ];
        for (r, field, code) in cases {
            let e = validate(r).unwrap_err();
            assert_eq!((e.field, e.code), (field, code), "{e}");
        }
    }
    #[test]
    fn an_empty_prompt_is_accepted_only_where_the_rule_allows_it() {
        assert_eq!(validate(raw("")).unwrap_err().code, "invalid_prompt");
        let p = validate(RawParams {
            prompt_rule: PromptRule::MayBeEmpty,
            ..raw("  ")
        })
        .unwrap();
        assert_eq!(p.prompt, "");
    }
}
