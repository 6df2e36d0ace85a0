//! What an encoded image says about how it was made.
//!
//! PNG output carries two text chunks:
//! - `parameters`: the text AUTOMATIC1111's web UI writes, which its "PNG
//!   Info" tab and most image browsers parse:
//!   ```text
//!   a red apple on a table
//!   Negative prompt: blurry
//!   Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 42, Size: 512x512, Model hash: 0123456789, Model: easel-tiny
//!   ```
//!   (The `Schedule type` field is what A1111 1.9 and later write; it is
//!   left out for the model's default schedule.) An image made with LoRAs
//!   has their `<lora:NAME:WEIGHT>` tags at the end of the prompt line and
//!   a `Lora hashes: "NAME: HASH10, …"` field, as A1111 writes them, so
//!   pasting the text back into A1111 (or Easel's `/sdapi/v1`) applies
//!   them again.
//! - `easel`: Easel's own JSON record of the image, as the caller builds it.

use easel_core::{SamplerKind, ScheduleKind};

/// The tEXt/iTXt keyword of the AUTOMATIC1111 parameters chunk.
pub const PARAMETERS_KEY: &str = "parameters";
/// The iTXt keyword of Easel's JSON record.
pub const EASEL_KEY: &str = "easel";

/// The fields of an AUTOMATIC1111 `parameters` text.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationInfo {
    /// The prompt.
    pub prompt: String,
    /// The negative prompt; the line is left out when empty.
    pub negative_prompt: String,
    /// Denoising steps.
    pub steps: u32,
    /// The sampler actually used.
    pub sampler: SamplerKind,
    /// The sigma schedule actually used.
    pub schedule: ScheduleKind,
    /// Guidance scale.
    pub cfg_scale: f32,
    /// This image's seed.
    pub seed: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The model's content hash. An algorithm prefix (`b3:`, `sha256:`) is
    /// dropped and the first 10 characters are written, the length of
    /// A1111's short hash.
    pub model_hash: String,
    /// The model's name.
    pub model: String,
    /// Image-to-image strength, written as `Denoising strength`; `None`
    /// (the default for text-to-image) leaves it out.
    pub denoising_strength: Option<f32>,
    /// AUTOMATIC1111's clip skip; written when above 1.
    pub clip_skip: Option<u32>,
    /// The LoRAs merged into the model, each as a prompt tag and in
    /// `Lora hashes`; empty for none.
    pub loras: Vec<easel_core::LoraRef>,
}

impl GenerationInfo {
    /// The `parameters` text. With `include_prompt` false the prompt and
    /// negative prompt lines are left out (for operators who must not
    /// publish prompts).
    pub fn to_a1111(&self, include_prompt: bool) -> String {
        let mut text = String::new();
        if include_prompt {
            text.push_str(&self.prompt);
            for lora in &self.loras {
                text.push_str(&format!(" <lora:{}:{}>", lora.name, lora.weight));
            }
            text.push('\n');
            if !self.negative_prompt.is_empty() {
                text.push_str("Negative prompt: ");
                text.push_str(&self.negative_prompt);
                text.push('\n');
            }
        }
        text.push_str(&format!(
            "Steps: {}, Sampler: {}",
            self.steps,
            a1111_sampler(self.sampler)
        ));
        if let Some(schedule) = a1111_schedule(self.schedule) {
            text.push_str(&format!(", Schedule type: {schedule}"));
        }
        let bare = self.model_hash.rsplit(':').next().unwrap_or_default();
        let hash: String = bare.chars().take(10).collect();
        text.push_str(&format!(
            ", CFG scale: {}, Seed: {}, Size: {}x{}, Model hash: {}, Model: {}",
            self.cfg_scale,
            self.seed,
            self.width,
            self.height,
            hash,
            // A comma would end the field for A1111's parser.
            self.model.replace(',', " "),
        ));
        if let Some(strength) = self.denoising_strength {
            text.push_str(&format!(", Denoising strength: {strength}"));
        }
        if let Some(skip) = self.clip_skip.filter(|&c| c > 1) {
            text.push_str(&format!(", Clip skip: {skip}"));
        }
        if !self.loras.is_empty() {
            let hashes: Vec<String> = self
                .loras
                .iter()
                .map(|l| format!("{}: {}", l.name, l.short_hash()))
                .collect();
            text.push_str(&format!(", Lora hashes: \"{}\"", hashes.join(", ")));
        }
        text
    }
}

/// The name A1111 gives a sampler.
pub fn a1111_sampler(sampler: SamplerKind) -> &'static str {
    match sampler {
        SamplerKind::Euler => "Euler",
        SamplerKind::EulerAncestral => "Euler a",
        SamplerKind::Heun => "Heun",
        SamplerKind::DpmPp2m => "DPM++ 2M",
        SamplerKind::Ddim => "DDIM",
        SamplerKind::Lcm => "LCM",
    }
}

fn a1111_schedule(schedule: ScheduleKind) -> Option<&'static str> {
    match schedule {
        ScheduleKind::Default => None,
        ScheduleKind::Karras => Some("Karras"),
        ScheduleKind::Exponential => Some("Exponential"),
    }
}

/// The text metadata to embed in an encoded image. Empty by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    parameters: Option<String>,
    record: Option<serde_json::Value>,
}

impl Metadata {
    /// No metadata.
    pub fn none() -> Self {
        Self::default()
    }

    /// Starts building metadata.
    pub fn builder() -> MetadataBuilder {
        MetadataBuilder::default()
    }

    /// The AUTOMATIC1111 `parameters` text, if any.
    pub fn parameters(&self) -> Option<&str> {
        self.parameters.as_deref()
    }

    /// The Easel JSON record, if any.
    pub fn record(&self) -> Option<&serde_json::Value> {
        self.record.as_ref()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.parameters.is_none() && self.record.is_none()
    }
}

/// Builds [`Metadata`] from its fields.
#[derive(Debug, Clone)]
pub struct MetadataBuilder {
    info: Option<GenerationInfo>,
    record: Option<serde_json::Value>,
    include_prompt: bool,
}

impl Default for MetadataBuilder {
    fn default() -> Self {
        Self {
            info: None,
            record: None,
            include_prompt: true,
        }
    }
}

impl MetadataBuilder {
    /// The generation fields for the `parameters` chunk.
    pub fn generation(mut self, info: GenerationInfo) -> Self {
        self.info = Some(info);
        self
    }

    /// The JSON record for the `easel` chunk.
    pub fn record(mut self, record: serde_json::Value) -> Self {
        self.record = Some(record);
        self
    }

    /// Whether prompts are written; default `true`. When `false`, the
    /// `parameters` text leaves out both prompt lines and the top-level
    /// `prompt` and `negative_prompt` keys are removed from the record.
    pub fn include_prompt(mut self, include: bool) -> Self {
        self.include_prompt = include;
        self
    }

    /// The metadata.
    pub fn build(self) -> Metadata {
        let parameters = self.info.map(|info| info.to_a1111(self.include_prompt));
        let mut record = self.record;
        if !self.include_prompt
            && let Some(serde_json::Value::Object(map)) = record.as_mut()
        {
            map.remove("prompt");
            map.remove("negative_prompt");
        }
        Metadata { parameters, record }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> GenerationInfo {
        GenerationInfo {
            prompt: "a red apple".into(),
            negative_prompt: "blurry".into(),
            steps: 20,
            sampler: SamplerKind::DpmPp2m,
            schedule: ScheduleKind::Karras,
            cfg_scale: 7.5,
            seed: 42,
            width: 512,
            height: 768,
            model_hash: "b3:0123456789abcdef".into(),
            model: "easel-tiny".into(),
            denoising_strength: None,
            clip_skip: None,
            loras: Vec::new(),
        }
    }

    #[test]
    fn loras_are_prompt_tags_and_short_hashes_as_a1111_writes_them() {
        let lora = |name: &str, weight: f32, hash: &str| easel_core::LoraRef {
            name: name.into(),
            weight,
            hash: Some(hash.into()),
        };
        let text = GenerationInfo {
            loras: vec![
                lora("film grain", 0.8, "sha256:abcdef0123456789"),
                lora("pixel", 1.0, "sha256:0011223344556677"),
            ],
            ..info()
        }
        .to_a1111(true);
        assert_eq!(
            text,
            "a red apple <lora:film grain:0.8> <lora:pixel:1>\nNegative prompt: blurry\n\
             Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 42, \
             Size: 512x768, Model hash: 0123456789, Model: easel-tiny, \
             Lora hashes: \"film grain: abcdef0123, pixel: 0011223344\""
        );
    }

    #[test]
    fn parameters_follow_the_a1111_layout() {
        assert_eq!(
            info().to_a1111(true),
            "a red apple\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, \
             CFG scale: 7.5, Seed: 42, Size: 512x768, Model hash: 0123456789, Model: easel-tiny"
        );
    }

    #[test]
    fn an_empty_negative_prompt_and_the_default_schedule_are_left_out() {
        let text = GenerationInfo {
            negative_prompt: String::new(),
            schedule: ScheduleKind::Default,
            sampler: SamplerKind::EulerAncestral,
            cfg_scale: 7.0,
            denoising_strength: Some(0.75),
            clip_skip: Some(2),
            ..info()
        }
        .to_a1111(true);
        assert_eq!(
            text,
            "a red apple\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x768, \
             Model hash: 0123456789, Model: easel-tiny, Denoising strength: 0.75, Clip skip: 2"
        );
    }

    #[test]
    fn prompts_can_be_left_out_for_privacy() {
        let meta = Metadata::builder()
            .generation(info())
            .record(
                serde_json::json!({"prompt": "a red apple", "negative_prompt": "x", "seed": 42}),
            )
            .include_prompt(false)
            .build();
        assert!(meta.parameters().unwrap().starts_with("Steps: 20"));
        assert_eq!(meta.record().unwrap(), &serde_json::json!({"seed": 42}));
    }
}
