//! The AUTOMATIC1111-compatible API (`/sdapi/v1`): what the web UI's
//! clients (`webuiapi`, bots, plug-ins) send, parsed into Easel's validated
//! requests, so that every image still goes through the queue, the prompt
//! policy, moderation, the watermark, C2PA and the store.
//!
//! - [`request`]: the txt2img and img2img bodies, field by field.
//! - [`names`]: the web UI's sampler and scheduler names.
//! - [`options`]: the options a caller may set (its model, preview cadence).
//! - [`tasks`]: each caller's running task (progress, interrupt, skip).
//! - [`info`]: the `info` JSON string and `parameters` text of a response.
//!
//! The routes are in `crate::routes::sdapi` and `crate::routes::sdapi_info`;
//! docs/a1111.md lists every route and field and what Easel does with it.

pub mod info;
pub mod names;
pub mod options;
pub mod request;
pub mod tasks;

pub use tasks::Tasks;

use crate::auth::Principal;

/// The key a caller's options and task are kept under: its project and
/// key name (`anonymous` without authentication).
pub fn caller(principal: &Principal) -> String {
    format!("{}/{}", principal.project(), principal.name())
}

/// The web UI's title of a model: `name [hash]`, the hash being the first
/// ten hex digits of the content hash (what its infotext calls "Model
/// hash"); the bare name when the model never loaded.
pub fn model_title(name: &str, content_hash: Option<&str>) -> String {
    match content_hash.map(short_hash) {
        Some(hash) if !hash.is_empty() => format!("{name} [{hash}]"),
        _ => name.to_string(),
    }
}

/// The first ten hex digits of a content hash (`sha256:…` or bare).
pub fn short_hash(content_hash: &str) -> String {
    content_hash
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .chars()
        .take(10)
        .collect()
}

/// The model name inside a title (`name [hash]` → `name`; a bare name as is).
pub fn name_of_title(title: &str) -> &str {
    let title = title.trim();
    match title.rsplit_once(" [") {
        Some((name, rest)) if rest.ends_with(']') => name.trim(),
        _ => title,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_round_trip() {
        let title = model_title("easel-emoji", Some("sha256:0123456789abcdef"));
        assert_eq!(title, "easel-emoji [0123456789]");
        assert_eq!(name_of_title(&title), "easel-emoji");
        assert_eq!(name_of_title("easel-emoji"), "easel-emoji");
        assert_eq!(model_title("m", None), "m");
    }
}
