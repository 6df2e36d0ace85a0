//! The parser against the examples A1111 documents and the edge cases of
//! its grammar.

use super::super::{PromptError, PromptPart};
use super::parse_prompt;

/// Text parts as `(text, weight)`, a break as `("BREAK", NaN)`.
fn parse(prompt: &str) -> Vec<(String, f32)> {
    parse_prompt(prompt)
        .unwrap()
        .into_iter()
        .map(|p| match p {
            PromptPart::Text(s) => (s.text, s.weight),
            PromptPart::Break => ("BREAK".to_string(), f32::NAN),
        })
        .collect()
}

fn spans(list: &[(&str, f64)]) -> Vec<(String, f32)> {
    list.iter()
        .map(|(t, w)| (t.to_string(), *w as f32))
        .collect()
}

fn assert_parts(prompt: &str, want: &[(&str, f64)]) {
    let got = parse(prompt);
    let want = spans(want);
    let same = got.len() == want.len()
        && got
            .iter()
            .zip(&want)
            .all(|(g, w)| g.0 == w.0 && (g.1 == w.1 || (g.1.is_nan() && w.1.is_nan())));
    assert!(same, "{prompt:?}: got {got:?}, want {want:?}");
}

const B: f64 = f64::NAN;

#[test]
fn the_documented_examples_parse_as_documented() {
    assert_parts("normal text", &[("normal text", 1.0)]);
    assert_parts(
        "an (important) word",
        &[("an ", 1.0), ("important", 1.1), (" word", 1.0)],
    );
    assert_parts("(unbalanced", &[("unbalanced", 1.1)]);
    assert_parts("\\(literal\\]", &[("(literal]", 1.0)]);
    assert_parts("(unnecessary)(parens)", &[("unnecessaryparens", 1.1)]);
    assert_parts(
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        &[
            ("a ", 1.0),
            ("house", 1.3 * 1.1 * 1.1),
            (" ", 1.1),
            ("on", 1.0 / 1.1 * 1.1),
            (" a ", 1.1),
            ("hill", 0.5 * 1.1),
            (", sun, ", 1.1),
            ("sky", 1.1 * 1.1 * 1.1 * 1.1),
            (".", 1.1),
        ],
    );
}

#[test]
fn nesting_multiplies_in_order() {
    assert_parts("((a))", &[("a", 1.1 * 1.1)]);
    assert_parts("[[a]]", &[("a", (1.0 / 1.1) * (1.0 / 1.1))]);
    assert_parts("((a:1.5))", &[("a", 1.5 * 1.1)]);
    assert_parts(
        "(a [b] c)",
        &[("a ", 1.1), ("b", 1.0 / 1.1 * 1.1), (" c", 1.1)],
    );
    assert_parts("[(a:2)]", &[("a", 2.0 * (1.0 / 1.1))]);
}

#[test]
fn numbers_take_a_sign_spaces_and_a_bare_point() {
    assert_parts("(a:.5)", &[("a", 0.5)]);
    assert_parts("(a: 1.2 )", &[("a", 1.2)]);
    assert_parts("(a:-1)", &[("a", -1.0)]);
    assert_parts("(a:+2.)", &[("a", 2.0)]);
    assert_parts("(a:1)", &[("a", 1.0)]);
    assert_parts("x (a:0) y", &[("x ", 1.0), ("a", 0.0), (" y", 1.0)]);
}

#[test]
fn a_colon_that_is_not_a_weight_is_text() {
    // No `)` after the number: the colon and number are text, `)` closes.
    assert_parts("(a:1.5 b)", &[("a:1.5 b", 1.1)]);
    // `:1e3)` is not a number to A1111's grammar.
    assert_parts("(a:1e3)", &[("a:1e3", 1.1)]);
    // No `(` open: the whole `:1.5)` is text.
    assert_parts("a:1.5)", &[("a:1.5)", 1.0)]);
    assert_parts("[a:1.5)", &[("a:1.5)", 1.0 / 1.1)]);
    assert_parts("[a:1.5]", &[("a:1.5", 1.0 / 1.1)]);
    assert_parts("time: 10:30", &[("time: 10:30", 1.0)]);
}

#[test]
fn unmatched_closers_are_text_and_unclosed_openers_run_to_the_end() {
    assert_parts("a ) b ]", &[("a ) b ]", 1.0)]);
    assert_parts("a (b", &[("a ", 1.0), ("b", 1.1)]);
    assert_parts("a [b", &[("a ", 1.0), ("b", 1.0 / 1.1)]);
    assert_parts("((a) b", &[("a", 1.1 * 1.1), (" b", 1.1)]);
    // Round brackets are resolved before square ones, as A1111 does.
    assert_parts("[a (b", &[("a ", 1.0 / 1.1), ("b", 1.1 * (1.0 / 1.1))]);
}

#[test]
fn escapes_are_literal_and_a_lone_backslash_is_dropped() {
    assert_parts("\\(a\\)", &[("(a)", 1.0)]);
    assert_parts("\\[a\\]", &[("[a]", 1.0)]);
    assert_parts("a\\\\b", &[("a\\b", 1.0)]);
    assert_parts("a\\b", &[("ab", 1.0)]);
    assert_parts("(\\(a\\))", &[("(a)", 1.1)]);
    assert_parts("a\\", &[("a", 1.0)]);
}

#[test]
fn break_is_an_upper_case_word_and_eats_its_spaces() {
    assert_parts("a BREAK b", &[("a", 1.0), ("BREAK", B), ("b", 1.0)]);
    assert_parts("BREAK", &[("", 1.0), ("BREAK", B), ("", 1.0)]);
    assert_parts("a,BREAK,b", &[("a,", 1.0), ("BREAK", B), (",b", 1.0)]);
    assert_parts(
        "a BREAK BREAK b",
        &[
            ("a", 1.0),
            ("BREAK", B),
            ("", 1.0),
            ("BREAK", B),
            ("b", 1.0),
        ],
    );
    assert_parts("aBREAK b", &[("aBREAK b", 1.0)]);
    assert_parts("a BREAKS b_BREAK", &[("a BREAKS b_BREAK", 1.0)]);
    assert_parts("a break b", &[("a break b", 1.0)]);
    assert_parts("a\n BREAK\tb", &[("a", 1.0), ("BREAK", B), ("b", 1.0)]);
    // Inside brackets it is still a break (A1111 turns it into text here).
    assert_parts("(a BREAK b)", &[("a", 1.1), ("BREAK", B), ("b", 1.1)]);
    // An escaped bracket next to BREAK leaves the break alone.
    assert_parts("\\(BREAK", &[("(", 1.0), ("BREAK", B), ("", 1.0)]);
}

#[test]
fn equal_neighbours_merge_and_an_empty_prompt_is_one_empty_span() {
    assert_parts("", &[("", 1.0)]);
    assert_parts("()", &[("", 1.0)]);
    assert_parts("[]", &[("", 1.0)]);
    assert_parts("(a)(b) (c)", &[("ab", 1.1), (" ", 1.0), ("c", 1.1)]);
    assert_parts("a (b:1) c", &[("a b c", 1.0)]);
}

#[test]
fn non_ascii_text_passes_through() {
    assert_parts(
        "(café:1.2) 日本 BREAK ü",
        &[("café", 1.2), (" 日本", 1.0), ("BREAK", B), ("ü", 1.0)],
    );
}

#[test]
fn a_weight_that_does_not_parse_is_an_error_naming_it() {
    for (prompt, token) in [
        ("(a:1.2.3)", ":1.2.3)"),
        ("(a:.)", ":.)"),
        ("(a:-.)", ":-.)"),
    ] {
        match parse_prompt(prompt) {
            Err(PromptError::MalformedWeight { token: t }) => assert_eq!(t, token, "{prompt}"),
            other => panic!("{prompt}: {other:?}"),
        }
    }
    // A sign with no digits is not a number to the grammar: plain text.
    assert_parts("(a: - . )", &[("a: - . ", 1.1)]);
    // With no `(` open the same text is literal, as in A1111.
    assert_parts("a:1.2.3)", &[("a:1.2.3)", 1.0)]);
}
