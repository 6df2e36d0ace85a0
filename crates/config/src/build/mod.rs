//! What is built from the configuration for any role: the parts a worker
//! process, an API process and `easel generate` share, so none of them
//! needs the HTTP crate to set itself up.
//!
//! - [`post_process`]: the stages every image goes through after the engine.
//! - [`prompt_policy`]: the prompt policy checked at the API's edge.
//! - `cache`: the moderation and scoring models, loaded once per process.

mod cache;
mod post_process;
mod prompt_policy;

pub use post_process::post_process;
pub use prompt_policy::prompt_policy;
