//! Domain types shared by every Easel crate: identifiers, the validated
//! generation parameters that cross from the API edge into the queue and the
//! engine, and the names of samplers and sigma schedules.
//!
//! Nothing here does I/O (reading the system clock in [`SystemClock`] aside).
//! Types in this crate are *validated*: code that holds
//! a [`GenerationParams`] may rely on its invariants (size a multiple of 8,
//! steps at least one, finite guidance, seed resolved) without checking again.
//!
//! # Layout
//! - [`ids`]: typed identifiers for jobs and images.
//! - [`image`]: an in-memory RGB picture and an inpainting mask.
//! - [`sampler`]: sampler, sigma schedule and timestep spacing names.
//! - [`params`]: validated generation parameters and their limits.
//! - [`lora`]: the LoRA adapters a job asks for, and their limits.
//! - [`prompt`]: AUTOMATIC1111's prompt syntax: attention weights, `BREAK`,
//!   `<lora:…>` tags, and the edge check of their limits.
//! - [`job`]: the lifecycle states of a job.
//! - [`output`]: output format and delivery options carried by a job.
//! - [`clock`]: the wall clock as an argument (system or manual for tests).
//! - [`tenancy`]: project names and the limits of a project or a key.

pub mod clock;
pub mod ids;
pub mod image;
pub mod job;
pub mod lora;
pub mod output;
pub mod params;
pub mod prompt;
pub mod sampler;
pub mod tenancy;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use ids::{ImageId, JobId, ParseIdError};
pub use image::{Mask, MaskError, RgbImage};
pub use job::JobStatus;
pub use lora::{LoraRef, MAX_LORA_WEIGHT, MAX_LORAS, check_lora_weight};
pub use output::{ModerationLevel, OutputFormat, OutputOptions, ResponseFormat};
pub use params::{
    GenerationParams, ParamError, PromptRule, RawParams, Region, SeedRequest, Size, Tier, limits,
};
pub use prompt::{
    LoraTag, MAX_CLIP_SKIP, MAX_PROMPT_WEIGHT, PromptError, PromptPart, PromptSpan,
    extract_lora_tags, parse_prompt, validate_prompt,
};
pub use sampler::{SamplerKind, ScheduleKind, TimestepSpacing, UnknownName};
pub use tenancy::{Limits, ProjectId};
