//! Request and response bodies, and their parsing into validated types.
//!
//! - [`images`]: the OpenAI Images request and response.
//! - [`jobs`]: the native job routes.

pub mod images;
pub mod jobs;
