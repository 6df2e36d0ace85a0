//! Prompt normalisation: the forms of a prompt that term and pattern rules
//! are matched against, so that spelling tricks do not evade them.
//!
//! [`clean`] (every form starts here):
//! 1. Unicode NFKC: full-width, mathematical, circled and squared letters,
//!    ligatures and compatibility spaces become plain characters;
//! 2. invisible characters removed: zero-width space/joiners (U+200B–U+200D),
//!    word joiner and invisible operators (U+2060–U+206F), BOM (U+FEFF), soft
//!    hyphen (U+00AD), bidi controls, variation selectors, tag characters,
//!    Hangul fillers; control characters removed, except that tabs and line
//!    breaks become spaces;
//! 3. lower case, after folding the Cyrillic and Greek capitals that imitate
//!    Latin ones (Greek `Ν` is `N`, while its lower case `ν` looks like `v`);
//! 4. combining diacritics stripped (`nüde` → `nude`, Zalgo text);
//! 5. confusables folded to the Latin letter they imitate: Cyrillic and Greek
//!    look-alikes (`рогп` → `porn`), small capitals, negative squared and
//!    regional-indicator letters;
//! 6. whitespace runs collapsed to one space, ends trimmed.
//!
//! [`normalize`] then folds leetspeak (`0→o 1→i 3→e 4→a 5→s 7→t @→a $→s`),
//! but only inside a token (a run of letters, digits, `@` and `$`) that has
//! at least one letter: `p0rn` → `porn`, `$3x` → `sex`, while `1488`, `2024`
//! and `$5` stay as written. `1` also stands for `l` (`1ewd`): the policy
//! matches a second form with `1→l` ([`fold_leet`] with `'l'`).
//!
//! [`words`] splits a form into words (runs of letters and digits; all else
//! separates), which term rules match whole: `grape` never matches `rape`,
//! `Scunthorpe` never matches its substrings. Letters spelled out with
//! separators (`n u d e`, `n.u.d.e`, `n-u-d-e`) are rejoined by
//! [`join_spelled`], and runs of three or more of one letter squeezed by
//! [`squeeze`] (`nuuude`).

use unicode_normalization::UnicodeNormalization;

/// The normalised prompt: [`clean`], then leetspeak folded with `1→i`.
/// This is the text patterns are documented to see.
pub fn normalize(text: &str) -> String {
    fold_leet(&clean(text), 'i')
}

/// Steps 1–6 of the module docs: everything but leetspeak. Digits stay
/// digits, so this is also the text the semantic filter embeds.
pub(crate) fn clean(text: &str) -> String {
    let mut visible = String::with_capacity(text.len());
    for c in text.nfkc() {
        if is_invisible(c) {
            continue;
        }
        if c.is_control() {
            if c.is_whitespace() {
                visible.push(' ');
            }
            continue;
        }
        match confusable_upper(c) {
            Some(latin) => visible.push(latin),
            None => visible.extend(c.to_lowercase()),
        }
    }
    let mut folded = String::with_capacity(visible.len());
    for c in visible.nfd().filter(|&c| !is_diacritic(c)) {
        match confusable(c) {
            Some(s) => folded.push_str(s),
            None => folded.push(c),
        }
    }
    let mut out = String::with_capacity(folded.len());
    for word in folded.nfc().collect::<String>().split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Folds leetspeak inside tokens that contain a letter; `one` is what `1`
/// becomes (`'i'` or `'l'`).
pub(crate) fn fold_leet(text: &str, one: char) -> String {
    let is_token = |c: char| c.is_alphanumeric() || c == '@' || c == '$';
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if token.chars().any(char::is_alphabetic) {
            out.extend(token.chars().map(|c| leet(c, one)));
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in text.chars() {
        if is_token(c) {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

fn leet(c: char, one: char) -> char {
    match c {
        '0' => 'o',
        '1' => one,
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' => 't',
        other => other,
    }
}

/// The words of a form: maximal runs of letters and digits.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Rejoins letters spelled out one by one: every run of three or more
/// one-character words becomes one word (`a n u d e` → `anude`). With
/// `keep_article`, a run's leading `a` or `i` stays a word of its own
/// (`a n u d e` → `a`, `nude`), since a spelled-out word often follows one.
pub(crate) fn join_spelled(words: &[String], keep_article: bool) -> Vec<String> {
    let single = |w: &String| w.chars().count() == 1;
    let mut out = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let mut j = i;
        while j < words.len() && single(&words[j]) {
            j += 1;
        }
        if j - i >= 3 {
            let mut start = i;
            if keep_article && (words[i] == "a" || words[i] == "i") {
                out.push(words[i].clone());
                start += 1;
            }
            out.push(words[start..j].concat());
            i = j;
        } else {
            out.push(words[i].clone());
            i += 1;
        }
    }
    out
}

/// Squeezes runs of three or more of one character to one (`nuuude` →
/// `nude`); runs of two are left alone (`xx`, `oo` occur in real words).
pub(crate) fn squeeze(words: &[String]) -> Vec<String> {
    words
        .iter()
        .map(|w| {
            let chars: Vec<char> = w.chars().collect();
            let mut out = String::with_capacity(w.len());
            let mut i = 0;
            while i < chars.len() {
                let mut j = i;
                while j < chars.len() && chars[j] == chars[i] {
                    j += 1;
                }
                let run = if j - i >= 3 { 1 } else { j - i };
                out.extend(std::iter::repeat_n(chars[i], run));
                i = j;
            }
            out
        })
        .collect()
}

/// Characters that render as nothing, or only change rendering.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Combining diacritics (accents, Zalgo marks), not the vowel signs of
/// Indic scripts, which are marks too but part of the letters.
fn is_diacritic(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

/// The Latin letter a Cyrillic or Greek capital imitates, folded before
/// lower-casing: `Ν` (Greek capital nu) looks like `N`, its lower case `ν`
/// like `v`.
fn confusable_upper(c: char) -> Option<char> {
    Some(match c {
        'А' | 'Α' => 'a',
        'В' | 'Β' => 'b',
        'С' | 'Ϲ' => 'c',
        'Е' | 'Ε' => 'e',
        'Н' | 'Η' => 'h',
        'І' | 'Ι' => 'i',
        'Ј' => 'j',
        'К' | 'Κ' => 'k',
        'М' | 'Μ' => 'm',
        'Ν' => 'n',
        'О' | 'Ο' => 'o',
        'Р' | 'Ρ' => 'p',
        'Ѕ' => 's',
        'Т' | 'Τ' => 't',
        'Х' | 'Χ' => 'x',
        'У' | 'Υ' => 'y',
        'Ζ' => 'z',
        _ => return None,
    })
}

/// The Latin letter(s) a lower-case look-alike imitates. Cyrillic and Greek
/// letters are folded even in all-Cyrillic or all-Greek words (`ѕех`), at
/// the cost of turning Russian or Greek text into Latin gibberish that
/// could, rarely, spell a blocked English word.
fn confusable(c: char) -> Option<&'static str> {
    const LATIN: [&str; 26] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r",
        "s", "t", "u", "v", "w", "x", "y", "z",
    ];
    let letter = |base: u32| Some(LATIN[(c as u32 - base) as usize]);
    Some(match c {
        // Negative circled, negative squared and regional-indicator letters,
        // which NFKC leaves alone.
        '\u{1F150}'..='\u{1F169}' => return letter(0x1F150),
        '\u{1F170}'..='\u{1F189}' => return letter(0x1F170),
        '\u{1F1E6}'..='\u{1F1FF}' => return letter(0x1F1E6),
        // Cyrillic.
        'а' => "a",
        'в' | 'ь' => "b",
        'с' => "c",
        'ԁ' => "d",
        'е' | 'ё' | 'є' => "e",
        'г' => "r",
        'һ' | 'н' => "h",
        'і' | 'ї' => "i",
        'ј' => "j",
        'к' => "k",
        'ӏ' => "l",
        'м' => "m",
        'п' => "n",
        'о' => "o",
        'р' => "p",
        'ԛ' => "q",
        'ѕ' => "s",
        'т' => "t",
        'и' => "u",
        'ԝ' | 'ш' => "w",
        'х' => "x",
        'у' => "y",
        // Greek.
        'α' => "a",
        'β' => "b",
        'ϲ' => "c",
        'ε' => "e",
        'η' => "n",
        'ι' => "i",
        'κ' => "k",
        'ν' => "v",
        'ο' | 'σ' => "o",
        'ρ' => "p",
        'ς' => "s",
        'τ' => "t",
        'υ' | 'μ' => "u",
        'ω' => "w",
        'χ' => "x",
        'γ' => "y",
        'ζ' => "z",
        // Latin variants NFKC keeps.
        'ı' | 'ɩ' | 'ɪ' => "i",
        'ł' | 'ʟ' => "l",
        'ø' => "o",
        'đ' => "d",
        'ß' => "ss",
        'ɑ' => "a",
        'ɡ' | 'ɢ' => "g",
        // Small capitals.
        'ᴀ' => "a",
        'ʙ' => "b",
        'ᴄ' => "c",
        'ᴅ' => "d",
        'ᴇ' => "e",
        'ғ' => "f",
        'ʜ' => "h",
        'ᴊ' => "j",
        'ᴋ' => "k",
        'ᴍ' => "m",
        'ɴ' => "n",
        'ᴏ' => "o",
        'ᴘ' => "p",
        'ʀ' => "r",
        'ꜱ' => "s",
        'ᴛ' => "t",
        'ᴜ' => "u",
        'ᴠ' => "v",
        'ᴡ' => "w",
        'ʏ' => "y",
        'ᴢ' => "z",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nfkc_invisibles_case_and_spaces() {
        assert_eq!(
            normalize("  ＮＵＤＥ\u{200B}\u{00AD}s\t\nnow "),
            "nudes now"
        );
        assert_eq!(normalize("𝐧𝐮𝐝𝐞 Ⓝⓤⓓⓔ"), "nude nude");
        assert_eq!(normalize("nu\u{0000}de\u{FEFF}"), "nude");
    }

    #[test]
    fn confusables_and_diacritics_fold_to_latin() {
        assert_eq!(normalize("рогп"), "porn"); // all Cyrillic
        assert_eq!(normalize("nüdé"), "nude");
        assert_eq!(normalize("Ν\u{0399}ΚΕ"), "nike"); // Greek capitals
        assert_eq!(normalize("ɴᴜᴅᴇ 🅽🆄🅳🅴"), "nude nude");
    }

    #[test]
    fn leetspeak_folds_only_inside_words_with_letters() {
        assert_eq!(
            normalize("p0rn $3x n4k3d 1488 $5 2024"),
            "porn sex naked 1488 $5 2024"
        );
        assert_eq!(fold_leet("1ewd", 'l'), "lewd");
        assert_eq!(normalize("b1tch@x"), "bitchax");
    }

    #[test]
    fn spelled_letters_rejoin_and_runs_squeeze() {
        let ws = words("a n.u-d_e girl");
        assert_eq!(ws, w(&["a", "n", "u", "d", "e", "girl"]));
        assert_eq!(join_spelled(&ws, false), w(&["anude", "girl"]));
        assert_eq!(join_spelled(&ws, true), w(&["a", "nude", "girl"]));
        assert_eq!(
            join_spelled(&w(&["a", "b", "cat"]), false),
            w(&["a", "b", "cat"])
        );
        assert_eq!(
            squeeze(&w(&["nuuuude", "xx", "boook"])),
            w(&["nude", "xx", "bok"])
        );
    }
}
