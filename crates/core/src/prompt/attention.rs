//! The attention parser: a port of the algorithm A1111 documents for
//! `parse_prompt_attention` (see the parent module for the rules).
//!
//! The prompt is read as a sequence of tokens, the alternatives of A1111's
//! `re_attention` in its order: an escape `\(` `\)` `\[` `\]` `\\`; a lone
//! `\`; `(`; `[`; a weight close `:\s*([+-]?[.\d]+)\s*\)`; `)`; `]`; a run of
//! anything but `\ ( ) [ ] :`; a lone `:`. Openings push the index of the
//! next span; a closing multiplies every span from that index on. Text that
//! is not a bracket operation is split at `\s*\bBREAK\b\s*`.

use super::{PromptError, PromptPart};

/// What a bracket multiplies by.
const ROUND: f64 = 1.1;
const SQUARE: f64 = 1.0 / 1.1;

enum Entry {
    Text(String, f64),
    Break,
}

/// Parses `prompt` into spans and breaks. Fails only on a weight close whose
/// number does not parse (`(a:1.2.3)`, `(a:.)`), where A1111 raises.
pub fn parse_prompt(prompt: &str) -> Result<Vec<PromptPart>, PromptError> {
    let mut res: Vec<Entry> = Vec::new();
    let mut round: Vec<usize> = Vec::new();
    let mut square: Vec<usize> = Vec::new();
    let bytes = prompt.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => match bytes.get(i + 1) {
                Some(b'(' | b')' | b'[' | b']' | b'\\') => {
                    res.push(Entry::Text(prompt[i + 1..i + 2].to_string(), 1.0));
                    i += 2;
                }
                _ => {
                    res.push(Entry::Text(String::new(), 1.0));
                    i += 1;
                }
            },
            b'(' => {
                round.push(res.len());
                i += 1;
            }
            b'[' => {
                square.push(res.len());
                i += 1;
            }
            b':' => match weight_close(prompt, i) {
                Some((number, end)) => {
                    match round.pop() {
                        Some(start) => {
                            let w: f64 =
                                number.parse().map_err(|_| PromptError::MalformedWeight {
                                    token: prompt[i..end].to_string(),
                                })?;
                            multiply(&mut res, start, w);
                        }
                        None => push_text(&mut res, &prompt[i..end]),
                    }
                    i = end;
                }
                None => {
                    push_text(&mut res, ":");
                    i += 1;
                }
            },
            b')' => {
                match round.pop() {
                    Some(start) => multiply(&mut res, start, ROUND),
                    None => push_text(&mut res, ")"),
                }
                i += 1;
            }
            b']' => {
                match square.pop() {
                    Some(start) => multiply(&mut res, start, SQUARE),
                    None => push_text(&mut res, "]"),
                }
                i += 1;
            }
            _ => {
                let end = bytes[i..]
                    .iter()
                    .position(|b| matches!(b, b'\\' | b'(' | b')' | b'[' | b']' | b':'))
                    .map_or(bytes.len(), |n| i + n);
                push_text(&mut res, &prompt[i..end]);
                i = end;
            }
        }
    }
    for start in round {
        multiply(&mut res, start, ROUND);
    }
    for start in square {
        multiply(&mut res, start, SQUARE);
    }
    if res.is_empty() {
        res.push(Entry::Text(String::new(), 1.0));
    }
    Ok(merge(res))
}

/// Multiplies the weight of every text entry from `start` on.
fn multiply(res: &mut [Entry], start: usize, by: f64) {
    for entry in &mut res[start..] {
        if let Entry::Text(_, w) = entry {
            *w *= by;
        }
    }
}

/// Appends text of weight 1, split at each `BREAK`.
fn push_text(res: &mut Vec<Entry>, text: &str) {
    let mut rest = text;
    while let Some((before, after)) = split_break(rest) {
        res.push(Entry::Text(before.to_string(), 1.0));
        res.push(Entry::Break);
        rest = after;
    }
    res.push(Entry::Text(rest.to_string(), 1.0));
}

/// A1111's word characters (Python's `\w`): letters, digits, underscore.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The first `\s*\bBREAK\b\s*` in `text`: the text before and after it.
fn split_break(text: &str) -> Option<(&str, &str)> {
    let mut from = 0;
    while let Some(found) = text[from..].find("BREAK") {
        let at = from + found;
        let end = at + "BREAK".len();
        let starts_word = text[..at].chars().next_back().is_none_or(|c| !is_word(c));
        let ends_word = text[end..].chars().next().is_none_or(|c| !is_word(c));
        if starts_word && ends_word {
            let before = text[..at].trim_end_matches(char::is_whitespace);
            let after = text[end..].trim_start_matches(char::is_whitespace);
            return Some((before, after));
        }
        from = at + 1;
    }
    None
}

/// At a `:` at byte `at`, the weight close `:\s*([+-]?[.\d]+)\s*\)`: the
/// number and the byte index just past the `)`.
fn weight_close(prompt: &str, at: usize) -> Option<(&str, usize)> {
    let rest = &prompt[at + 1..];
    let num_start = rest.len() - rest.trim_start_matches(char::is_whitespace).len();
    let after_ws = &rest[num_start..];
    let sign = usize::from(after_ws.starts_with(['+', '-']));
    let digits = after_ws[sign..]
        .bytes()
        .take_while(|b| *b == b'.' || b.is_ascii_digit())
        .count();
    if digits == 0 {
        return None;
    }
    let num_end = num_start + sign + digits;
    let tail = &rest[num_end..];
    let close = tail.trim_start_matches(char::is_whitespace);
    if !close.starts_with(')') {
        return None;
    }
    let end = at + 1 + num_end + (tail.len() - close.len()) + 1;
    Some((&rest[num_start..num_end], end))
}

/// Merges adjacent text entries of equal weight and converts.
fn merge(res: Vec<Entry>) -> Vec<PromptPart> {
    let mut out: Vec<Entry> = Vec::with_capacity(res.len());
    for entry in res {
        if let (Some(Entry::Text(text, w)), Entry::Text(more, w2)) = (out.last_mut(), &entry)
            && *w == *w2
        {
            text.push_str(more);
            continue;
        }
        out.push(entry);
    }
    out.into_iter()
        .map(|e| match e {
            Entry::Text(text, w) => PromptPart::text(text, w as f32),
            Entry::Break => PromptPart::Break,
        })
        .collect()
}

#[cfg(test)]
mod tests;
