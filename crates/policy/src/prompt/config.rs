//! [`PromptPolicyConfig`]: the rules, as an operator writes them, and the
//! shipped defaults (`defaults.json` beside this file, compiled in).
//!
//! The defaults cover five categories: `sexual_minors`, `sexual_explicit`,
//! `violence_gore`, `self_harm`, `hate_symbols`. Terms are few and
//! unambiguous (ambiguous ones, like `nude` or `swastika`, only flag);
//! the two `sexual_minors` patterns block a word for a minor within 60
//! characters of a sexual word, in either order. Concept thresholds were
//! chosen from measurement on the labelled prompts in
//! `crates/policy/tests/fixtures/prompt/` (see `docs/moderation.md` and
//! `tests/prompt_measure.rs`): with the bundled MiniLM, the highest cosine of
//! any of 185 benign prompts with any concept is 0.417, while disallowed
//! paraphrases score 0.33–0.82 with their own category's concepts. Block at
//! 0.50 (0.45 for `sexual_minors`) and flag at 0.43 (0.40) gave 0 of 185
//! benign prompts blocked or flagged by the concepts and 20 of 33
//! paraphrases that avoid every literal term blocked, 25 of 33 flagged or
//! blocked; on 35 held-out prompts, the whole policy blocked none of 20
//! benign ones and 11 of 15 disallowed ones (12 caught).

use serde::{Deserialize, Serialize};

use crate::decision::Action;
use crate::error::PolicyError;

/// The shipped defaults, as JSON in the config's own format.
const DEFAULTS_JSON: &str = include_str!("defaults.json");

/// The prompt policy's rules. Every field defaults to the shipped list, so
/// a config that sets one list keeps the defaults of the others; set a list
/// to `[]` to turn that kind of rule off.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PromptPolicyConfig {
    /// Words and phrases matched whole on the normalised prompt. Default:
    /// the shipped list (`defaults.json`).
    pub blocked_terms: Vec<TermRule>,
    /// Regular expressions matched on the normalised prompt. Default: the
    /// shipped list.
    pub blocked_patterns: Vec<PatternRule>,
    /// Disallowed concepts for the semantic filter. Default: the shipped
    /// list, 16 concepts in 5 categories.
    pub concepts: Vec<ConceptRule>,
}

/// A word or phrase. It is normalised like the prompt and matches whole
/// words (`rape` does not match `grape`), a trailing `s`/`es` allowed on
/// its last word; a phrase also matches written as one word (`child porn`
/// matches `childporn`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TermRule {
    /// Reported on a hit (e.g. `sexual_explicit`).
    pub category: String,
    /// The word or phrase.
    pub term: String,
    /// `block` (default) or `flag`.
    #[serde(default = "block")]
    pub action: Action,
}

/// A regular expression (Rust `regex` syntax: linear time, no
/// look-around), matched on the normalised prompt: lower case, confusables
/// folded, words re-spaced. It is tried on the form with leetspeak folded
/// and on the one without, so `\d` still sees digits (`12 yo`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PatternRule {
    /// Reported on a hit.
    pub category: String,
    /// The regular expression.
    pub pattern: String,
    /// `block` (default) or `flag`.
    #[serde(default = "block")]
    pub action: Action,
}

/// A disallowed concept: a sentence whose MiniLM embedding is compared,
/// by cosine similarity, with the prompt's.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConceptRule {
    /// Reported on a hit.
    pub category: String,
    /// The sentence describing what is disallowed.
    pub text: String,
    /// Cosine at or above which the prompt is flagged; in [-1, 1], at most
    /// `block_threshold`.
    pub flag_threshold: f32,
    /// Cosine at or above which the prompt is blocked; in [-1, 1].
    pub block_threshold: f32,
}

fn block() -> Action {
    Action::Block
}

/// `defaults.json` as read: a separate type, because serde's
/// `#[serde(default)]` on [`PromptPolicyConfig`] calls its `Default`, which
/// must not deserialise a `PromptPolicyConfig` in turn.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Shipped {
    blocked_terms: Vec<TermRule>,
    blocked_patterns: Vec<PatternRule>,
    concepts: Vec<ConceptRule>,
}

impl Default for PromptPolicyConfig {
    /// The shipped defaults (see the module docs and `docs/moderation.md`).
    fn default() -> Self {
        // A compile-time constant that `defaults_parse_and_validate` checks.
        let s: Shipped = serde_json::from_str(DEFAULTS_JSON).expect("defaults.json is valid");
        Self {
            blocked_terms: s.blocked_terms,
            blocked_patterns: s.blocked_patterns,
            concepts: s.concepts,
        }
    }
}

fn config_error(field: String, message: impl Into<String>) -> PolicyError {
    PolicyError::Config {
        field,
        message: message.into(),
    }
}

/// Checks what serde cannot: non-empty strings, actions that are `block`
/// or `flag`, thresholds in range and ordered. Patterns are checked when
/// they are compiled.
pub(crate) fn validate(config: &PromptPolicyConfig) -> Result<(), PolicyError> {
    let non_empty = |field: String, value: &str| {
        if value.trim().is_empty() {
            Err(config_error(field, "must not be empty"))
        } else {
            Ok(())
        }
    };
    let acting = |field: String, action: Action| {
        if action == Action::Allow {
            Err(config_error(field, "must be `block` or `flag`"))
        } else {
            Ok(())
        }
    };
    for (i, r) in config.blocked_terms.iter().enumerate() {
        non_empty(format!("blocked_terms[{i}].category"), &r.category)?;
        non_empty(format!("blocked_terms[{i}].term"), &r.term)?;
        acting(format!("blocked_terms[{i}].action"), r.action)?;
    }
    for (i, r) in config.blocked_patterns.iter().enumerate() {
        non_empty(format!("blocked_patterns[{i}].category"), &r.category)?;
        non_empty(format!("blocked_patterns[{i}].pattern"), &r.pattern)?;
        acting(format!("blocked_patterns[{i}].action"), r.action)?;
    }
    for (i, r) in config.concepts.iter().enumerate() {
        non_empty(format!("concepts[{i}].category"), &r.category)?;
        non_empty(format!("concepts[{i}].text"), &r.text)?;
        for (name, t) in [
            ("flag_threshold", r.flag_threshold),
            ("block_threshold", r.block_threshold),
        ] {
            if !(-1.0..=1.0).contains(&t) {
                return Err(config_error(
                    format!("concepts[{i}].{name}"),
                    format!("{t} is outside [-1, 1] (a cosine similarity)"),
                ));
            }
        }
        if r.flag_threshold > r.block_threshold {
            return Err(config_error(
                format!("concepts[{i}].flag_threshold"),
                format!(
                    "{} is above block_threshold {}",
                    r.flag_threshold, r.block_threshold
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        let c = PromptPolicyConfig::default();
        validate(&c).unwrap();
        assert!(c.blocked_terms.len() > 50 && c.blocked_patterns.len() >= 2);
        assert_eq!(c.concepts.len(), 16);
    }

    #[test]
    fn a_partial_config_keeps_the_other_defaults() {
        let c: PromptPolicyConfig =
            serde_json::from_str(r#"{"blocked_terms": [{"category": "x", "term": "foo"}]}"#)
                .unwrap();
        assert_eq!(c.blocked_terms.len(), 1);
        assert_eq!(c.blocked_terms[0].action, Action::Block);
        assert_eq!(c.concepts, PromptPolicyConfig::default().concepts);
    }

    #[test]
    fn nan_and_allow_are_rejected_with_the_field() {
        let mut c = PromptPolicyConfig::default();
        c.concepts[2].block_threshold = f32::NAN;
        let e = validate(&c).unwrap_err();
        assert!(
            matches!(&e, PolicyError::Config { field, .. } if field == "concepts[2].block_threshold")
        );
        let mut c = PromptPolicyConfig::default();
        c.blocked_terms[1].action = Action::Allow;
        let e = validate(&c).unwrap_err();
        assert!(
            matches!(&e, PolicyError::Config { field, .. } if field == "blocked_terms[1].action")
        );
    }
}
