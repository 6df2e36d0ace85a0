//! A1111's LoRA tags: `<lora:NAME>` (weight 1) and `<lora:NAME:WEIGHT>`,
//! anywhere in a prompt (A1111 "extra networks",
//! <https://github.com/AUTOMATIC1111/stable-diffusion-webui/wiki/Features#lora>).
//!
//! Each tag is removed and replaced by nothing, as A1111 does: the text
//! around it, spaces and commas included, stays as written. `NAME` is
//! trimmed of surrounding spaces and may not be empty; `WEIGHT` is any
//! finite number `f32` parses (`0.8`, `-1`, `1e-1`). Other `<…>` text, such as
//! another extra-network kind, is left in the prompt. A1111's
//! three-part form (`<lora:NAME:TE:UNET>`), an unclosed `<lora:` and a
//! weight that is not a finite number are errors naming the tag.

use super::{PromptError, truncate};

/// A LoRA named in a prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraTag {
    /// The name as written between `<lora:` and `:` (trimmed).
    pub name: String,
    /// The multiplier; 1.0 when the tag gives none.
    pub weight: f32,
}

const OPEN: &str = "<lora:";

/// Removes every `<lora:…>` tag from `prompt`: the prompt without them and
/// the tags in order of appearance.
pub fn extract_lora_tags(prompt: &str) -> Result<(String, Vec<LoraTag>), PromptError> {
    let mut out = String::with_capacity(prompt.len());
    let mut tags = Vec::new();
    let mut rest = prompt;
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at]);
        let body_start = at + OPEN.len();
        let Some(len) = rest[body_start..].find('>') else {
            return Err(malformed(&rest[at..], "it is not closed with `>`"));
        };
        let end = body_start + len + 1;
        tags.push(parse_tag(&rest[at..end], &rest[body_start..end - 1])?);
        rest = &rest[end..];
    }
    out.push_str(rest);
    Ok((out, tags))
}

/// `body` is what lies between `<lora:` and `>`.
fn parse_tag(tag: &str, body: &str) -> Result<LoraTag, PromptError> {
    let mut fields = body.split(':');
    let name = fields.next().unwrap_or("").trim();
    if name.is_empty() || name.contains('<') {
        return Err(malformed(tag, "the name is empty"));
    }
    let weight = match (fields.next(), fields.next()) {
        (None, _) => 1.0,
        (Some(w), None) => w
            .trim()
            .parse::<f32>()
            .ok()
            .filter(|w| w.is_finite())
            .ok_or_else(|| malformed(tag, "the weight is not a finite number"))?,
        (Some(_), Some(_)) => {
            return Err(malformed(tag, "it has more than one weight"));
        }
    };
    Ok(LoraTag {
        name: name.to_string(),
        weight,
    })
}

fn malformed(tag: &str, why: &str) -> PromptError {
    PromptError::MalformedLoraTag {
        tag: truncate(tag, 80),
        reason: format!("{why} (write `<lora:NAME>` or `<lora:NAME:WEIGHT>`)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(name: &str, weight: f32) -> LoraTag {
        LoraTag {
            name: name.into(),
            weight,
        }
    }

    #[test]
    fn tags_are_removed_and_returned_in_order() {
        let (text, tags) =
            extract_lora_tags("a cat, <lora:pixel-art:0.8> on a mat <lora:Film Grain>").unwrap();
        assert_eq!(text, "a cat,  on a mat ");
        assert_eq!(tags, vec![tag("pixel-art", 0.8), tag("Film Grain", 1.0)]);
    }

    #[test]
    fn weights_may_be_negative_spaced_or_exponents() {
        let (text, tags) = extract_lora_tags("<lora:a:-1><lora: b : .5 ><lora:c:1e-1>").unwrap();
        assert_eq!(text, "");
        assert_eq!(tags, vec![tag("a", -1.0), tag("b", 0.5), tag("c", 0.1)]);
    }

    #[test]
    fn a_prompt_without_tags_is_unchanged() {
        let (text, tags) = extract_lora_tags("(a:1.2) <hypernet:x:1> <b> lora:").unwrap();
        assert_eq!(text, "(a:1.2) <hypernet:x:1> <b> lora:");
        assert!(tags.is_empty());
    }

    #[test]
    fn malformed_tags_are_errors_naming_the_tag() {
        for (prompt, named) in [
            ("a <lora:x:abc> b", "<lora:x:abc>"),
            ("<lora:x:inf>", "<lora:x:inf>"),
            ("<lora:x:NaN>", "<lora:x:NaN>"),
            ("<lora:x:>", "<lora:x:>"),
            ("<lora:>", "<lora:>"),
            ("<lora: :1>", "<lora: :1>"),
            ("<lora:x:1:0.5>", "<lora:x:1:0.5>"),
            ("a <lora:x:1", "<lora:x:1"),
        ] {
            let e = extract_lora_tags(prompt).unwrap_err();
            assert_eq!(e.code(), "invalid_lora_tag");
            match &e {
                PromptError::MalformedLoraTag { tag, .. } => assert_eq!(tag, named, "{prompt}"),
                other => panic!("{prompt}: {other:?}"),
            }
            assert!(e.to_string().contains("<lora:NAME:WEIGHT>"), "{e}");
        }
    }
}
