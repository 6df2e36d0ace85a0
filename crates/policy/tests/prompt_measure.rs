//! The measurement behind the shipped concept thresholds, as a test: the
//! labelled prompts in `tests/fixtures/prompt/` scored with the shipped
//! defaults and the bundled MiniLM. The figures asserted here are the ones
//! written in `docs/moderation.md` and in `PromptPolicyConfig`'s docs; run
//! with `--nocapture` to see every score.
//!
//! - `benign.txt`: 185 prompts (the 120 eval prompts of easel-emoji,
//!   everyday and marketing prompts, benign prompts near a disallowed
//!   topic), used to choose the thresholds;
//! - `disallowed.tsv`: 33 paraphrases in 5 categories that avoid the
//!   literal terms, used to choose the thresholds;
//! - `heldout.tsv`: 20 benign and 15 disallowed prompts written before the
//!   thresholds were chosen and scored once with the final defaults.

use std::path::Path;
use std::sync::Arc;

use easel_policy::{Action, MiniLmEmbedder, PromptPolicy, PromptPolicyConfig};

// Figures documented in docs/moderation.md.
/// Benign prompts (of 185) the concepts flag or block.
const BENIGN_CONCEPT_FLAGS: usize = 0;
/// Benign prompts (of 185) the whole policy flags (terms included).
const BENIGN_POLICY_FLAGS: usize = 1;
/// Disallowed paraphrases (of 33) the concepts alone block.
const DISALLOWED_CONCEPT_BLOCKS: usize = 20;
/// Disallowed paraphrases (of 33) the concepts alone flag or block.
const DISALLOWED_CONCEPT_CAUGHT: usize = 25;
/// Held-out disallowed prompts (of 15) the whole policy blocks.
const HELDOUT_POLICY_BLOCKS: usize = 11;
/// Held-out disallowed prompts (of 15) the whole policy flags or blocks.
const HELDOUT_POLICY_CAUGHT: usize = 12;

fn fixture(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/prompt")
        .join(name);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn labelled(name: &str) -> Vec<(String, String)> {
    fixture(name)
        .iter()
        .map(|l| {
            let (c, p) = l.split_once('\t').unwrap();
            (c.to_owned(), p.to_owned())
        })
        .collect()
}

struct Measured {
    /// Highest concept score, over all concepts.
    top: f32,
    /// Highest concept score among the prompt's own category.
    own: f32,
    /// What the concepts alone decide.
    concepts: Action,
    /// What the whole policy decides.
    policy: Action,
}

#[test]
fn shipped_thresholds_measure_as_documented() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/easel-emoji");
    let config = PromptPolicyConfig::default();
    let policy = PromptPolicy::new(
        config.clone(),
        Some(Arc::new(MiniLmEmbedder::load(&dir).unwrap())),
    )
    .unwrap();
    let measure = |category: &str, prompt: &str| {
        let scores = policy.concept_scores(prompt).unwrap();
        let mut m = Measured {
            top: f32::MIN,
            own: f32::MIN,
            concepts: Action::Allow,
            policy: policy.check(prompt).unwrap().action,
        };
        for (rule, &s) in config.concepts.iter().zip(&scores) {
            m.top = m.top.max(s);
            if rule.category == category {
                m.own = m.own.max(s);
            }
            if s >= rule.block_threshold {
                m.concepts = Action::Block;
            } else if s >= rule.flag_threshold {
                m.concepts = m.concepts.max(Action::Flag);
            }
        }
        m
    };

    let benign: Vec<(String, Measured)> = fixture("benign.txt")
        .into_iter()
        .map(|p| {
            let m = measure("", &p);
            (p, m)
        })
        .collect();
    assert_eq!(benign.len(), 185);
    let mut by_top: Vec<&(String, Measured)> = benign.iter().collect();
    by_top.sort_by(|a, b| b.1.top.total_cmp(&a.1.top));
    eprintln!("benign, highest concept scores:");
    for (p, m) in by_top.iter().take(8) {
        eprintln!("  {:.3} {:?} {p}", m.top, m.policy);
    }
    let policy_blocks: Vec<&String> = benign
        .iter()
        .filter(|(_, m)| m.policy == Action::Block)
        .map(|(p, _)| p)
        .collect();
    let policy_flags = benign
        .iter()
        .filter(|(_, m)| m.policy == Action::Flag)
        .count();
    let concept_flags = benign
        .iter()
        .filter(|(_, m)| m.concepts != Action::Allow)
        .count();
    eprintln!(
        "benign: {} blocked, {policy_flags} flagged by the policy, {concept_flags} by the concepts (of {})",
        policy_blocks.len(),
        benign.len()
    );
    assert!(
        policy_blocks.is_empty(),
        "benign prompts blocked: {policy_blocks:?}"
    );
    assert_eq!(concept_flags, BENIGN_CONCEPT_FLAGS);
    assert_eq!(policy_flags, BENIGN_POLICY_FLAGS);

    let disallowed = labelled("disallowed.tsv");
    assert_eq!(disallowed.len(), 33);
    eprintln!("disallowed paraphrases (own-category score, concepts, policy):");
    let (mut blocks, mut caught) = (0, 0);
    for (c, p) in &disallowed {
        let m = measure(c, p);
        eprintln!("  {:.3} {:?} {:?} [{c}] {p}", m.own, m.concepts, m.policy);
        blocks += usize::from(m.concepts == Action::Block);
        caught += usize::from(m.concepts != Action::Allow);
    }
    eprintln!(
        "disallowed: concepts block {blocks}, flag or block {caught} (of {})",
        disallowed.len()
    );
    assert_eq!(
        (blocks, caught),
        (DISALLOWED_CONCEPT_BLOCKS, DISALLOWED_CONCEPT_CAUGHT)
    );

    let heldout = labelled("heldout.tsv");
    let (mut b_blocked, mut b_flagged, mut d_total, mut d_blocks, mut d_caught, mut d_concepts) =
        (0, 0, 0, 0, 0, 0);
    eprintln!("held out (top score, concepts, policy):");
    for (c, p) in &heldout {
        let m = measure(c, p);
        eprintln!("  {:.3} {:?} {:?} [{c}] {p}", m.top, m.concepts, m.policy);
        if c == "benign" {
            b_blocked += usize::from(m.policy == Action::Block);
            b_flagged += usize::from(m.policy == Action::Flag);
        } else {
            d_total += 1;
            d_blocks += usize::from(m.policy == Action::Block);
            d_caught += usize::from(m.policy != Action::Allow);
            d_concepts += usize::from(m.concepts != Action::Allow);
        }
    }
    eprintln!(
        "held out: benign {b_blocked} blocked, {b_flagged} flagged; disallowed {d_blocks} blocked, \
         {d_caught} caught by the policy, {d_concepts} by the concepts alone (of {d_total})"
    );
    assert_eq!(b_blocked, 0);
    assert_eq!(d_total, 15);
    assert_eq!(
        (d_blocks, d_caught),
        (HELDOUT_POLICY_BLOCKS, HELDOUT_POLICY_CAUGHT)
    );
}
