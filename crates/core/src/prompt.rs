//! Prompt syntax in AUTOMATIC1111's dialect: attention weights, `BREAK`,
//! and `<lora:NAME:WEIGHT>` tags.
//!
//! [`parse_prompt`] turns a prompt into [`PromptPart`]s, spans of text with
//! an attention weight and `BREAK` markers, following A1111's
//! `parse_prompt_attention` (its `modules/prompt_parser.py`, documented at
//! <https://github.com/AUTOMATIC1111/stable-diffusion-webui/wiki/Features#attentionemphasis>):
//!
//! - `(text)` multiplies the weight of `text` by 1.1, `[text]` by 1/1.1,
//!   `(text:1.5)` by 1.5 (the number is `[+-]?[.0-9]+`, spaces allowed
//!   around it: `(a: 1.2 )`, `(a:.5)`); nesting multiplies (`((a))` is
//!   1.1·1.1).
//! - `\(`, `\)`, `\[`, `\]` and `\\` are the literal characters; a lone `\`
//!   before anything else is dropped (A1111 does the same).
//! - A `)` or `]` with nothing open, and `(text:1.5)`'s `:1.5)` with no `(`
//!   open, are literal text.
//! - An unclosed `(` or `[` applies its multiplier to the rest of the prompt
//!   (`a (b` gives `b` 1.1), as A1111 does.
//! - `BREAK`, a whole upper-case word, ends the current 75-token chunk of
//!   the text encoder (the engine pads it and starts the next). The
//!   whitespace around it is dropped. One deviation: A1111 multiplies its
//!   internal `BREAK` marker by the brackets around it, so a `BREAK`
//!   inside brackets turns into the word "BREAK" with a negative weight;
//!   here it stays a break wherever it is.
//! - Adjacent spans of equal weight merge; the parts may contain empty
//!   spans (A1111's do too; they encode to no tokens); an empty prompt is
//!   one span `""` of weight 1.
//!
//! Weights are multiplied in `f64` in A1111's order (so two spans merge
//! exactly when A1111 merges them) and then stored as `f32`, the precision
//! the text encoder applies them in.
//!
//! [`validate_prompt`] is the check at the API edge: it parses and rejects a
//! weight whose magnitude exceeds [`MAX_PROMPT_WEIGHT`] (10) once nesting is
//! multiplied out. [`extract_lora_tags`] removes A1111's LoRA tags and
//! returns them. Every failure is a [`PromptError`] with a stable code.

mod attention;
mod lora;

pub use attention::parse_prompt;
pub use lora::{LoraTag, extract_lora_tags};

/// The largest weight magnitude [`validate_prompt`] accepts, after nesting
/// is multiplied out: weights lie in `-10.0..=10.0`. Useful weights are
/// around 0.5 to 2; beyond 10 the conditioning is noise.
pub const MAX_PROMPT_WEIGHT: f32 = 10.0;

/// The largest `clip_skip` any model accepts (CLIP ViT-L has 12 layers;
/// the engine also checks it against the loaded encoder's depth).
pub const MAX_CLIP_SKIP: u32 = 12;

/// A span of prompt text with its attention weight (1.0 is neutral).
#[derive(Debug, Clone, PartialEq)]
pub struct PromptSpan {
    /// The text, escapes resolved and brackets removed.
    pub text: String,
    /// The multiplier applied to this text's token embeddings.
    pub weight: f32,
}

/// One piece of a parsed prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptPart {
    /// Text with a weight.
    Text(PromptSpan),
    /// `BREAK`: start a new 75-token chunk.
    Break,
}

impl PromptPart {
    /// A text part.
    pub fn text(text: impl Into<String>, weight: f32) -> Self {
        PromptPart::Text(PromptSpan {
            text: text.into(),
            weight,
        })
    }
}

/// Whether `parts` is plain text: no `BREAK` and every weight 1 (the text
/// encoder then takes its unweighted path).
pub fn is_plain(parts: &[PromptPart]) -> bool {
    parts.iter().all(|p| match p {
        PromptPart::Text(s) => s.weight == 1.0,
        PromptPart::Break => false,
    })
}

/// A prompt that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromptError {
    /// `(text:NUMBER)` whose number does not parse, e.g. `(a:1.2.3)`.
    #[error("prompt weight `{token}` is not a number (write e.g. `(word:1.2)`)")]
    MalformedWeight {
        /// The `:NUMBER)` text as written.
        token: String,
    },
    /// A weight outside `-MAX_PROMPT_WEIGHT..=MAX_PROMPT_WEIGHT` after
    /// nesting is multiplied out.
    #[error(
        "prompt weight {weight} of `{text}` is outside -{max}..={max} (nested brackets multiply)"
    )]
    WeightOutOfRange {
        /// The span's effective weight.
        weight: f64,
        /// The span (truncated to 40 characters).
        text: String,
        /// The limit, [`MAX_PROMPT_WEIGHT`].
        max: f32,
    },
    /// A `<lora:…>` tag that is not `<lora:NAME>` or `<lora:NAME:WEIGHT>`
    /// with a finite weight.
    #[error("malformed LoRA tag `{tag}`: {reason}")]
    MalformedLoraTag {
        /// The tag as written (truncated to 80 characters).
        tag: String,
        /// What is wrong, naming the accepted form.
        reason: String,
    },
}

impl PromptError {
    /// Stable machine-readable code: `invalid_prompt_weight` or
    /// `invalid_lora_tag`.
    pub fn code(&self) -> &'static str {
        match self {
            PromptError::MalformedWeight { .. } | PromptError::WeightOutOfRange { .. } => {
                "invalid_prompt_weight"
            }
            PromptError::MalformedLoraTag { .. } => "invalid_lora_tag",
        }
    }
}

/// Parses `prompt` ([`parse_prompt`]) and checks every non-empty span's
/// weight is within ±[`MAX_PROMPT_WEIGHT`]. The server calls this on the
/// prompt and the negative prompt (after [`extract_lora_tags`]); the engine
/// calls it again on what it is given.
pub fn validate_prompt(prompt: &str) -> Result<Vec<PromptPart>, PromptError> {
    let parts = parse_prompt(prompt)?;
    for part in &parts {
        if let PromptPart::Text(span) = part
            && !span.text.is_empty()
            && (span.weight.is_nan() || span.weight.abs() > MAX_PROMPT_WEIGHT)
        {
            return Err(PromptError::WeightOutOfRange {
                weight: span.weight as f64,
                text: truncate(&span.text, 40),
                max: MAX_PROMPT_WEIGHT,
            });
        }
    }
    Ok(parts)
}

/// The first `max` characters of `text`, with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_within_the_limit_pass_and_beyond_it_fail_with_a_stable_code() {
        assert!(validate_prompt("(a:10) [b:-10]").is_ok());
        assert!(validate_prompt("(a:-10)").is_ok());
        let e = validate_prompt("a (b:10.5)").unwrap_err();
        assert_eq!(e.code(), "invalid_prompt_weight");
        assert!(e.to_string().contains("-10..=10"), "{e}");
        assert!(e.to_string().contains("`b`"), "{e}");
        // Nesting multiplies past the limit: 9.5 · 1.1.
        assert!(validate_prompt("((c:9.5))").is_err());
        // An overflowing number is out of range, not infinite.
        assert!(
            validate_prompt("(d:1e999)").is_ok(),
            "1e999 is not a weight"
        );
        assert!(validate_prompt("(d:99999999999999999999999999999999999999999)").is_err());
    }

    #[test]
    fn an_empty_span_is_not_checked() {
        assert!(validate_prompt("(:50)").is_ok());
    }

    #[test]
    fn plain_means_no_weight_and_no_break() {
        assert!(is_plain(&parse_prompt("a red apple").unwrap()));
        assert!(is_plain(&parse_prompt("a (red:1) \\(apple\\)").unwrap()));
        assert!(!is_plain(&parse_prompt("a (red) apple").unwrap()));
        assert!(!is_plain(&parse_prompt("a BREAK b").unwrap()));
    }

    #[test]
    fn malformed_numbers_have_the_weight_code() {
        let e = parse_prompt("(a:1.2.3)").unwrap_err();
        assert_eq!(e.code(), "invalid_prompt_weight");
        assert!(e.to_string().contains(":1.2.3)"), "{e}");
    }
}
