//! Batches at the edge (docs/batches.md): the OpenAI Batch API's input
//! parsed into validated items, the output and error files rendered from
//! a batch's items, and the hooks the job system's batch driver calls
//! (the prompt policy for each item as it is submitted; the size of the
//! files when a batch finishes; the completion webhook), and the manifest
//! and zip export of its results.
//!
//! - [`input`]: a JSONL input file into items, or the lines at fault.
//! - [`template`]: a prompt template expanded into input lines.
//! - [`estimate`]: what a batch will make, take and cost.
//! - [`output`]: one result line; the size of a batch's files.
//! - [`hooks`]: [`hooks::ServerHooks`], the driver's view of the server.
//! - [`manifest`]: the manifest (JSONL or CSV) of a batch's images.
//! - [`export`]: the zip of a batch's images with its manifest.
//! - [`webhook`]: the signed completion webhook.

pub mod estimate;
pub mod export;
pub mod hooks;
pub mod input;
pub mod manifest;
pub mod output;
pub mod template;
pub mod webhook;

/// A new id with `prefix` (`file_`, `batch_`): time-ordered, so listing by
/// id lists newest first.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}
