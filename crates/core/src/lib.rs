//! Domain types shared by every Easel crate: identifiers, the validated
//! generation parameters that cross from the API edge into the queue and the
//! engine, and the names of samplers and sigma schedules.
//!
//! Nothing here does I/O. Types in this crate are *validated*: code that holds
//! a [`GenerationParams`] may rely on its invariants (size a multiple of 8,
//! steps at least one, finite guidance, seed resolved) without checking again.
//!
//! # Layout
//! - [`ids`]: typed identifiers for jobs and images.
//! - [`image`]: an in-memory RGB picture.
//! - [`sampler`]: sampler, sigma schedule and timestep spacing names.
//! - [`params`]: validated generation parameters and their limits.

pub mod ids;
pub mod image;
pub mod params;
pub mod sampler;

pub use ids::{ImageId, JobId, ParseIdError};
pub use image::RgbImage;
pub use params::{GenerationParams, ParamError, RawParams, Size, Tier, limits};
pub use sampler::{SamplerKind, ScheduleKind, TimestepSpacing, UnknownName};
