//! Easel's moderation decisions. It decides; it never stores, serves or
//! speaks HTTP: the server and the worker act on what it returns and record
//! it on the job, the image and the audit log.
//!
//! # Layout
//! - [`prompt`]: prompt policy: normalisation, blocked terms and patterns,
//!   and a semantic filter against disallowed concepts (MiniLM embeddings).
//! - [`image`]: image moderation with the Yahoo open_nsfw classifier, run
//!   in pure Rust.
//! - `decision`: [`Action`], shared by every check.
//! - `error`: [`PolicyError`], one enum with a stable code per variant.

#![warn(missing_docs)]

mod decision;
mod error;
pub mod image;
pub mod prompt;

pub use decision::Action;
pub use error::PolicyError;
pub use image::{DEFAULT_NSFW_MODEL, ImageDecision, ImageThresholds, NsfwClassifier, decide};
pub use prompt::{
    ConceptRule, DEFAULT_PROMPT_MODEL, Embedder, MiniLmEmbedder, PatternRule, PromptDecision,
    PromptPolicy, PromptPolicyConfig, RuleHit, TermRule, normalize,
};
