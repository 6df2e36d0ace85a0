//! Matching term and pattern rules against every normalised form of a
//! prompt (see [`super::normalize`] for the forms and why).

use super::normalize::{clean, fold_leet, join_spelled, squeeze, words};

/// The forms of one prompt that rules are matched against.
pub(crate) struct PromptForms {
    /// [`clean`]: no leetspeak folding; what the semantic filter embeds.
    pub clean: String,
    /// [`super::normalize`]: leetspeak folded with `1→i`.
    pub normalized: String,
    /// Texts patterns are tried on: the clean and the two leetspeak forms,
    /// each as is, re-spaced word by word, and with spelled-out letters
    /// rejoined (distinct ones only).
    pub texts: Vec<String>,
    /// Word lists terms are tried on: each form's words, squeezed, and with
    /// spelled-out letters rejoined (distinct ones only).
    pub word_lists: Vec<Vec<String>>,
}

impl PromptForms {
    pub(crate) fn new(prompt: &str) -> Self {
        let clean = clean(prompt);
        let normalized = fold_leet(&clean, 'i');
        let with_l = fold_leet(&clean, 'l');
        let mut texts: Vec<String> = Vec::new();
        let mut word_lists: Vec<Vec<String>> = Vec::new();
        for form in [&clean, &normalized, &with_l] {
            let ws = words(form);
            for text in [
                form.clone(),
                ws.join(" "),
                join_spelled(&ws, true).join(" "),
            ] {
                if !texts.contains(&text) {
                    texts.push(text);
                }
            }
            for list in [
                squeeze(&ws),
                join_spelled(&ws, false),
                join_spelled(&ws, true),
                ws,
            ] {
                if !word_lists.contains(&list) {
                    word_lists.push(list);
                }
            }
        }
        Self {
            clean,
            normalized,
            texts,
            word_lists,
        }
    }
}

/// A term rule's words, normalised like a prompt.
pub(crate) struct CompiledTerm {
    words: Vec<String>,
    joined: String,
}

impl CompiledTerm {
    /// `None` when the term has no letters or digits once normalised.
    pub(crate) fn new(term: &str) -> Option<Self> {
        let words = words(&super::normalize(term));
        if words.is_empty() {
            return None;
        }
        let joined = words.concat();
        Some(Self { words, joined })
    }

    /// Whether the term occurs as whole words in any word list of `forms`,
    /// or, for a phrase, as one word (`childporn`).
    pub(crate) fn matches(&self, forms: &PromptForms) -> bool {
        forms.word_lists.iter().any(|list| self.matches_words(list))
    }

    fn matches_words(&self, list: &[String]) -> bool {
        let n = self.words.len();
        let (head, last) = self.words.split_at(n - 1);
        let phrase = n <= list.len()
            && list
                .windows(n)
                .any(|w| w[..n - 1] == *head && plural_of(&w[n - 1], &last[0]));
        phrase || (n > 1 && list.iter().any(|w| plural_of(w, &self.joined)))
    }
}

/// `word` is `base`, `base`+`s` or `base`+`es`.
fn plural_of(word: &str, base: &str) -> bool {
    match word.strip_prefix(base) {
        Some(rest) => rest.is_empty() || rest == "s" || rest == "es",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(term: &str, prompt: &str) -> bool {
        CompiledTerm::new(term)
            .unwrap()
            .matches(&PromptForms::new(prompt))
    }

    #[test]
    fn terms_match_whole_words_only() {
        assert!(hit("rape", "a rape scene"));
        assert!(!hit("rape", "a bunch of grapes"));
        assert!(!hit("cunt", "the town of Scunthorpe"));
        assert!(!hit("ass", "a class of assassins"));
        assert!(hit("nude", "Nudes!!"));
        assert!(!hit("nude", "nudely"));
    }

    #[test]
    fn phrases_match_across_separators_and_joined() {
        assert!(hit("child porn", "CHILD-PORN"));
        assert!(hit("child porn", "childporn"));
        assert!(hit("child porn", "child p o r n"));
        assert!(!hit("child porn", "a child, and a porn star"));
    }

    #[test]
    fn evasions_are_caught() {
        assert!(hit("nude", "a n.u.d.e girl"));
        assert!(hit("nude", "n u d e"));
        assert!(hit("nude", "nuuuude"));
        assert!(hit("nude", "n\u{200B}ude"));
        assert!(hit("porn", "р0rn")); // Cyrillic р and a zero
        assert!(hit("lewd", "1ewd"));
        assert!(hit("1488", "1488"));
    }
}
