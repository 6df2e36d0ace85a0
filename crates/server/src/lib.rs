//! Easel's HTTP server: the OpenAI-compatible Images API, native async jobs
//! with server-sent progress events, stored image records behind signed
//! links, API keys and the OpenAPI document. The configuration tree it is
//! built from lives in `easel_config`.
//!
//! The server composes the other crates and owns nothing of their logic:
//! requests are parsed at the edge into validated types
//! ([`easel_core::GenerationParams`]) and only those reach the job system.
//!
//! # Layout
//! - [`app`]: building and running the server; `run(listener, config, shutdown)`.
//! - [`correlation`]: the `x-request-id` and the `http.request` span of every
//!   request, and what a job keeps of them.
//! - [`routes`]: one module per route group, and the router.
//! - [`dto`]: request and response bodies and their validation.
//! - [`error`]: [`ApiError`], the one error type, mapped to HTTP in one place.
//! - [`extract`]: extractors with OpenAI-shaped rejections; the API-key check.
//! - [`compose`]: several input images of an edit as one initial image.
//! - [`masks`]: inpainting masks from uploads, in OpenAI's and the web
//!   UI's conventions.
//! - [`auth`]: who a request acts as; config keys, compared in constant time.
//! - [`tenancy`]: authentication against config and database keys, rate
//!   limits, concurrency limits and caps, and minting keys.
//! - [`signing`]: HMAC-signed, expiring image links.
//! - [`responsible`]: the prompt policy at the edge.
//! - [`batches`]: the Batch API's input parsed into validated items, its
//!   output files rendered from them, and the hooks of the batch driver.
//! - `realtime`: submitting a realtime job and waiting for it (the
//!   synchronous image routes of both APIs).
//! - [`sdapi`]: the AUTOMATIC1111-compatible API (`/sdapi/v1`): its request
//!   bodies, sampler names, per-caller options and running tasks.
//! - [`ui`]: the web UI's files, built in, served at `/` and `/ui/`.
//! - [`state`]: what handlers share.
//! - [`openapi`]: the OpenAPI document.

pub mod app;
pub mod auth;
pub mod batches;
pub mod compose;
pub mod correlation;
pub mod drift;
pub mod dto;
pub mod error;
pub mod extract;
pub mod masks;
pub mod openapi;
mod realtime;
pub mod responsible;
pub mod review;
pub mod routes;
pub mod sdapi;
pub mod signing;
pub mod state;
pub mod tenancy;
pub mod ui;

pub use app::{Application, run, shutdown_signal};
pub use easel_config::{Config, Overrides};
pub use error::{ApiError, ErrorKind};
