//! Prompt policy: what a prompt may ask for. Only the prompt is checked,
//! not the negative prompt.
//!
//! A prompt is [normalised](normalize) (NFKC, invisible characters removed,
//! confusables and leetspeak folded, lower case, spaces collapsed), then
//! checked three ways:
//! - **terms**: words and phrases matched as whole words, so `grape` and
//!   `Scunthorpe` are safe, while spacing (`n u d e`), punctuation
//!   (`n.u.d.e`), repeated letters and the tricks above do not evade them;
//! - **patterns**: regular expressions on the normalised text;
//! - **concepts**: the semantic filter. The prompt's MiniLM sentence
//!   embedding is compared by cosine with each disallowed concept's
//!   (embedded once, when the policy is built); at or above a concept's
//!   `block_threshold` it blocks, at or above its `flag_threshold` it flags.
//!
//! The decision is the most severe hit (block > flag > allow), with that
//! hit's category and every hit listed. The shipped defaults, how their
//! thresholds were measured and what they catch are in [`PromptPolicyConfig`]
//! and `docs/moderation.md`.
//!
//! # Layout
//! - `normalize`: [`normalize`] and the other forms rules are matched on.
//! - `matching`: whole-word term matching and the forms of one prompt.
//! - `config`: [`PromptPolicyConfig`] and its rules, the shipped defaults
//!   (`defaults.json`), validation.
//! - `embed`: [`Embedder`] and [`MiniLmEmbedder`].
//! - `policy`: [`PromptPolicy`] and its [`PromptDecision`] (which carries
//!   the prompt's embedding).
//! - [`drift`]: how far a window's prompts moved from a baseline window.

mod config;
pub mod drift;
mod embed;
mod matching;
mod normalize;
mod policy;

pub use config::{ConceptRule, PatternRule, PromptPolicyConfig, TermRule};
pub use embed::{DEFAULT_PROMPT_MODEL, Embedder, MiniLmEmbedder};
pub use normalize::normalize;
pub use policy::{PromptDecision, PromptPolicy, RuleHit};
