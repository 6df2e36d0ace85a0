//! The prompt policy as a caller sees it: the shipped defaults with the
//! bundled MiniLM, evasions, whole-word matching, the decision's shape and
//! configuration errors.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use easel_policy::{
    Action, ConceptRule, Embedder, MiniLmEmbedder, PatternRule, PolicyError, PromptPolicy,
    PromptPolicyConfig, TermRule, normalize,
};

fn minilm() -> Arc<dyn Embedder> {
    static E: OnceLock<Arc<MiniLmEmbedder>> = OnceLock::new();
    E.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/easel-emoji");
        Arc::new(MiniLmEmbedder::load(&dir).unwrap())
    })
    .clone()
}

fn defaults() -> &'static PromptPolicy {
    static P: OnceLock<PromptPolicy> = OnceLock::new();
    P.get_or_init(|| PromptPolicy::new(PromptPolicyConfig::default(), Some(minilm())).unwrap())
}

/// The shipped terms and patterns without the semantic filter, to test
/// them alone.
fn without_concepts() -> PromptPolicy {
    let config = PromptPolicyConfig {
        concepts: vec![],
        ..PromptPolicyConfig::default()
    };
    PromptPolicy::new(config, None).unwrap()
}

fn terms_only(terms: &[(&str, Action)]) -> PromptPolicy {
    let config = PromptPolicyConfig {
        blocked_terms: terms
            .iter()
            .map(|(t, a)| TermRule {
                category: "test".into(),
                term: t.to_string(),
                action: *a,
            })
            .collect(),
        blocked_patterns: vec![],
        concepts: vec![],
    };
    PromptPolicy::new(config, None).unwrap()
}

fn config_field(err: PolicyError) -> String {
    assert_eq!(err.code(), "policy_config_invalid");
    match err {
        PolicyError::Config { field, .. } => field,
        other => panic!("not a config error: {other}"),
    }
}

#[test]
fn everyday_prompts_are_allowed_with_no_hits() {
    for p in [
        "a red apple on a wooden table",
        "minimalist product shot of wireless earbuds",
        "grapes",
        "",
    ] {
        let d = defaults().check(p).unwrap();
        assert_eq!(d.action, Action::Allow, "{p}: {d:?}");
        assert_eq!(d.category, None);
        assert!(d.hits.is_empty());
    }
}

#[test]
fn a_blocked_term_blocks_with_its_category_and_rule() {
    let d = defaults().check("some hentai art").unwrap();
    assert_eq!(d.action, Action::Block);
    assert_eq!(d.category.as_deref(), Some("sexual_explicit"));
    let h = d.hits.iter().find(|h| h.kind == "term").unwrap();
    assert_eq!((h.rule.as_str(), h.score), ("hentai", None));
}

#[test]
fn evasions_of_a_term_are_caught() {
    for p in [
        "h\u{200B}e\u{200D}n\u{2060}t\u{FEFF}a\u{00AD}i drawing", // zero-width and soft hyphen
        "hеntаі drawing",                                         // Cyrillic е, а, і
        "ＨＥＮＴＡＩ drawing",                                   // full width
        "h3nt41 drawing",                                         // leetspeak
        "h e n t a i drawing",                                    // spaced out
        "a h.e.n.t.a.i drawing",                                  // dotted, after an article
        "heeentaaai drawing",                                     // repeated letters
        "hentaï drawing",                                         // diacritic
    ] {
        let d = defaults().check(p).unwrap();
        assert_eq!(d.action, Action::Block, "{p:?} → {:?}", normalize(p));
        assert!(d.hits.iter().any(|h| h.rule == "hentai"), "{p:?}: {d:?}");
    }
}

#[test]
fn words_containing_a_term_do_not_match() {
    let p = terms_only(&[
        ("rape", Action::Block),
        ("cunt", Action::Block),
        ("ass", Action::Block),
    ]);
    for prompt in [
        "a bunch of grapes",
        "grape juice",
        "the drapes of a theatre",
        "a map of Scunthorpe",
        "a class of assassins passing the mass",
    ] {
        assert_eq!(p.check(prompt).unwrap().action, Action::Allow, "{prompt}");
    }
    assert_eq!(p.check("Rape!").unwrap().action, Action::Block);
    // The shipped defaults on the same words.
    for prompt in [
        "grape juice in a glass",
        "a map of scunthorpe",
        "sussex countryside",
    ] {
        assert_ne!(
            defaults().check(prompt).unwrap().action,
            Action::Block,
            "{prompt}"
        );
    }
}

#[test]
fn a_flag_term_flags_and_block_wins_over_flag() {
    let p = without_concepts();
    let d = p.check("a nude figure study").unwrap();
    assert_eq!(d.action, Action::Flag, "{d:?}");
    assert_eq!(d.category.as_deref(), Some("sexual_explicit"));
    let d = p.check("a swastika next to hentai").unwrap();
    assert_eq!(d.action, Action::Block);
    assert_eq!(d.category.as_deref(), Some("sexual_explicit"));
    assert!(
        d.hits
            .iter()
            .any(|h| h.rule == "swastika" && h.action == Action::Flag)
    );
}

#[test]
fn the_minors_pattern_blocks_in_either_order_and_with_ages() {
    for p in [
        "a naked child",
        "child, fully n@ked",
        "sexy twelve-year-old",
        "a 12yo in lingerie",
        "a 14 y.o. topless",
    ] {
        let d = without_concepts().check(p).unwrap();
        assert_eq!(d.action, Action::Block, "{p}: {d:?}");
        assert_eq!(d.category.as_deref(), Some("sexual_minors"), "{p}: {d:?}");
    }
    for p in [
        "a child blowing out birthday candles",
        "a 40 year old in lingerie",
    ] {
        let d = without_concepts().check(p).unwrap();
        assert!(d.hits.iter().all(|h| h.kind != "pattern"), "{p}: {d:?}");
    }
}

#[test]
fn a_concept_hit_reports_its_score_and_text() {
    let d = defaults()
        .check("a corpse with its guts spilling out onto the floor")
        .unwrap();
    assert_eq!(d.action, Action::Block, "{d:?}");
    assert_eq!(d.category.as_deref(), Some("violence_gore"));
    let h = &d.hits[0];
    assert_eq!(h.kind, "concept");
    assert!(h.score.unwrap() >= 0.5);
    let cfg = PromptPolicyConfig::default();
    assert!(cfg.concepts.iter().any(|c| c.text == h.rule));
    // Scores are listed highest first.
    let scores: Vec<f32> = d.hits.iter().filter_map(|h| h.score).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
}

#[test]
fn the_decision_serialises_in_snake_case() {
    let d = defaults().check("hentai").unwrap();
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["action"], "block");
    assert_eq!(v["hits"][0]["kind"], "term");
    // The embedding is for measuring drift, never part of the record.
    assert!(d.embedding.is_some() && v.get("embedding").is_none(), "{v}");
    let back: easel_policy::PromptDecision = serde_json::from_value(v).unwrap();
    assert_eq!(
        back,
        easel_policy::PromptDecision {
            embedding: None,
            ..d
        }
    );
}

#[test]
fn a_bad_pattern_names_its_index() {
    let mut c = PromptPolicyConfig::default();
    c.blocked_patterns.push(PatternRule {
        category: "x".into(),
        pattern: "(unclosed".into(),
        action: Action::Block,
    });
    let i = c.blocked_patterns.len() - 1;
    let field = config_field(PromptPolicy::new(c, Some(minilm())).err().unwrap());
    assert_eq!(field, format!("blocked_patterns[{i}].pattern"));
}

#[test]
fn thresholds_out_of_range_or_out_of_order_name_the_field() {
    let concept = |flag, block| ConceptRule {
        category: "x".into(),
        text: "something".into(),
        flag_threshold: flag,
        block_threshold: block,
    };
    for (rule, field) in [
        (concept(0.4, 1.5), "concepts[0].block_threshold"),
        (concept(-1.2, 0.5), "concepts[0].flag_threshold"),
        (concept(0.6, 0.5), "concepts[0].flag_threshold"),
    ] {
        let c = PromptPolicyConfig {
            blocked_terms: vec![],
            blocked_patterns: vec![],
            concepts: vec![rule],
        };
        assert_eq!(
            config_field(PromptPolicy::new(c, Some(minilm())).err().unwrap()),
            field
        );
    }
}

#[test]
fn a_term_without_letters_or_concepts_without_an_embedder_are_config_errors() {
    let mut c = PromptPolicyConfig::default();
    c.blocked_terms[3].term = " -- ".into();
    assert_eq!(
        config_field(PromptPolicy::new(c, Some(minilm())).err().unwrap()),
        "blocked_terms[3].term"
    );
    let field = config_field(
        PromptPolicy::new(PromptPolicyConfig::default(), None)
            .err()
            .unwrap(),
    );
    assert_eq!(field, "concepts");
}

#[test]
fn a_config_file_is_checked_for_unknown_keys() {
    let err = serde_json::from_str::<PromptPolicyConfig>(
        r#"{"blocked_terms": [{"category": "x", "term": "y", "severity": "high"}]}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("severity"), "{err}");
}

/// An embedder that does not return unit vectors is refused, not trusted.
struct Broken;
impl Embedder for Broken {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, PolicyError> {
        Ok(texts.iter().map(|_| vec![2.0, 0.0]).collect())
    }
}

#[test]
fn an_embedder_returning_non_unit_vectors_is_an_inference_error() {
    let err = PromptPolicy::new(PromptPolicyConfig::default(), Some(Arc::new(Broken)))
        .err()
        .unwrap();
    assert_eq!(err.code(), "policy_inference_failed");
}
