//! Request and response bodies, and their parsing into validated types.
//!
//! - [`batches`]: the OpenAI Batch API's files, batches and input lines.
//! - [`images`]: the OpenAI Images request and response.
//! - [`jobs`]: the native job routes.
//! - [`loras`]: the LoRAs of a request (`loras` and `<lora:…>` tags).

pub mod batches;
pub mod images;
pub mod jobs;
pub mod loras;
