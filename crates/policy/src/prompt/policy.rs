//! [`PromptPolicy`]: a validated, compiled [`PromptPolicyConfig`] that
//! decides on one prompt at a time.

use std::sync::Arc;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::config::{PromptPolicyConfig, validate};
use super::embed::Embedder;
use super::matching::{CompiledTerm, PromptForms};
use crate::decision::Action;
use crate::error::PolicyError;

/// Unit-length embeddings may be off by rounding; anything further off is
/// not a unit vector and cosines computed from it would be wrong.
const UNIT_TOLERANCE: f32 = 1e-3;

/// What the policy decided on a prompt.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PromptDecision {
    /// The most severe action among the hits; `allow` when none.
    pub action: Action,
    /// The category of the most severe hit (the first of those that share
    /// the most severe action: terms, then patterns, then concepts by
    /// descending score); `None` on `allow`.
    pub category: Option<String>,
    /// Every rule that fired, terms first, then patterns, then concepts by
    /// descending score.
    pub hits: Vec<RuleHit>,
    /// The prompt's unit-length MiniLM embedding (of its cleaned form),
    /// when the policy has an embedder and the prompt is not empty once
    /// normalised: what prompt drift is measured on. Not serialised.
    #[serde(skip)]
    pub embedding: Option<Vec<f32>>,
}

/// One rule that fired.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RuleHit {
    /// `"term"`, `"pattern"` or `"concept"`.
    pub kind: String,
    /// The rule's category.
    pub category: String,
    /// Which rule: the term, the pattern or the concept's text, as configured.
    pub rule: String,
    /// What this hit asks for: `block` or `flag`.
    pub action: Action,
    /// Concepts: the cosine similarity with the prompt; `None` otherwise.
    pub score: Option<f32>,
}

/// The prompt policy: normalisation, terms, patterns and the semantic
/// filter. `Send + Sync`; building it embeds every concept once.
pub struct PromptPolicy {
    config: PromptPolicyConfig,
    terms: Vec<CompiledTerm>,
    patterns: Vec<Regex>,
    concepts: Vec<Vec<f32>>,
    embedder: Option<Arc<dyn Embedder>>,
}

impl PromptPolicy {
    /// Validates and compiles `config`. A bad term, pattern or threshold is
    /// a [`PolicyError::Config`] naming the field (`blocked_patterns[2].pattern`).
    /// Concepts need an embedder: with concepts and `None`, this fails on
    /// `concepts` rather than silently dropping the semantic filter (set
    /// `concepts` to `[]` to run without one).
    pub fn new(
        config: PromptPolicyConfig,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> Result<Self, PolicyError> {
        validate(&config)?;
        let terms = config
            .blocked_terms
            .iter()
            .enumerate()
            .map(|(i, r)| {
                CompiledTerm::new(&r.term).ok_or_else(|| PolicyError::Config {
                    field: format!("blocked_terms[{i}].term"),
                    message: format!("`{}` has no letters or digits once normalised", r.term),
                })
            })
            .collect::<Result<_, _>>()?;
        let patterns = config
            .blocked_patterns
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Regex::new(&r.pattern).map_err(|e| PolicyError::Config {
                    field: format!("blocked_patterns[{i}].pattern"),
                    message: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        let concepts = match (&embedder, config.concepts.is_empty()) {
            (_, true) => Vec::new(),
            (None, false) => {
                return Err(PolicyError::Config {
                    field: "concepts".into(),
                    message: "concepts are configured but no embedder (MiniLM) was given".into(),
                });
            }
            (Some(e), false) => {
                let texts: Vec<&str> = config.concepts.iter().map(|c| c.text.as_str()).collect();
                let rows = e.embed(&texts)?;
                check_rows(&rows, texts.len(), None)?;
                rows
            }
        };
        Ok(Self {
            config,
            terms,
            patterns,
            concepts,
            embedder,
        })
    }

    /// The configuration this policy was built from.
    pub fn config(&self) -> &PromptPolicyConfig {
        &self.config
    }

    /// Decides on `prompt`. Fails only if the embedder fails.
    pub fn check(&self, prompt: &str) -> Result<PromptDecision, PolicyError> {
        let forms = PromptForms::new(prompt);
        let mut hits = Vec::new();
        for (rule, term) in self.config.blocked_terms.iter().zip(&self.terms) {
            if term.matches(&forms) {
                hits.push(RuleHit {
                    kind: "term".into(),
                    category: rule.category.clone(),
                    rule: rule.term.clone(),
                    action: rule.action,
                    score: None,
                });
            }
        }
        for (rule, re) in self.config.blocked_patterns.iter().zip(&self.patterns) {
            if forms.texts.iter().any(|t| re.is_match(t)) {
                hits.push(RuleHit {
                    kind: "pattern".into(),
                    category: rule.category.clone(),
                    rule: rule.pattern.clone(),
                    action: rule.action,
                    score: None,
                });
            }
        }
        let (scores, embedding) = self.scores_and_embedding(&forms)?;
        hits.extend(self.concept_hits(scores));
        let action = hits.iter().map(|h| h.action).max().unwrap_or(Action::Allow);
        let category = hits
            .iter()
            .find(|h| h.action == action)
            .map(|h| h.category.clone());
        Ok(PromptDecision {
            action,
            category,
            hits,
            embedding,
        })
    }

    /// The highest cosine of the prompt with each concept, without
    /// thresholds: for measuring and tuning. Empty when no concepts are
    /// configured or the prompt is empty once normalised.
    pub fn concept_scores(&self, prompt: &str) -> Result<Vec<f32>, PolicyError> {
        Ok(self.scores_and_embedding(&PromptForms::new(prompt))?.0)
    }

    /// The concepts' scores and the prompt's embedding (of its cleaned
    /// form), from one embedder call.
    fn scores_and_embedding(
        &self,
        forms: &PromptForms,
    ) -> Result<(Vec<f32>, Option<Vec<f32>>), PolicyError> {
        let Some(embedder) = self.embedder.as_ref() else {
            return Ok((Vec::new(), None));
        };
        if forms.clean.is_empty() {
            return Ok((Vec::new(), None));
        }
        // Leetspeak is folded for the embedding too when the prompt has any,
        // and the closer of the two readings counts.
        let mut texts = vec![forms.clean.as_str()];
        if forms.normalized != forms.clean {
            texts.push(forms.normalized.as_str());
        }
        let rows = embedder.embed(&texts)?;
        check_rows(&rows, texts.len(), self.concepts.first().map(Vec::len))?;
        let scores = self
            .concepts
            .iter()
            .map(|c| {
                rows.iter()
                    .map(|r| r.iter().zip(c).map(|(a, b)| a * b).sum::<f32>())
                    .fold(f32::MIN, f32::max)
            })
            .collect();
        Ok((scores, rows.into_iter().next()))
    }

    fn concept_hits(&self, scores: Vec<f32>) -> Vec<RuleHit> {
        let mut hits: Vec<RuleHit> = self
            .config
            .concepts
            .iter()
            .zip(scores)
            .filter(|(rule, s)| *s >= rule.flag_threshold)
            .map(|(rule, s)| RuleHit {
                kind: "concept".into(),
                category: rule.category.clone(),
                rule: rule.text.clone(),
                action: if s >= rule.block_threshold {
                    Action::Block
                } else {
                    Action::Flag
                },
                score: Some(s),
            })
            .collect();
        hits.sort_by(|a, b| {
            b.score
                .partial_cmp(&a.score)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        hits
    }
}

/// An embedder's answer must have one unit-length row per text, all of
/// one width (`dim`, when known).
fn check_rows(rows: &[Vec<f32>], n: usize, dim: Option<usize>) -> Result<(), PolicyError> {
    let bad = |m: String| Err(PolicyError::Inference(m));
    if rows.len() != n {
        return bad(format!(
            "the embedder returned {} rows for {n} texts",
            rows.len()
        ));
    }
    let dim = dim.unwrap_or_else(|| rows.first().map_or(0, Vec::len));
    for r in rows {
        if r.len() != dim || dim == 0 {
            return bad(format!(
                "the embedder returned a {}-wide row, expected {dim}",
                r.len()
            ));
        }
        let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        if !((1.0 - UNIT_TOLERANCE)..=(1.0 + UNIT_TOLERANCE)).contains(&norm) {
            return bad(format!("the embedder returned a row of norm {norm}, not 1"));
        }
    }
    Ok(())
}
