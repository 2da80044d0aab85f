//! Case folding for case-insensitive matching of names (Latin, Cyrillic, Kazakh).
//!
//! Both the stored search columns and the query values go through [`fold`], so
//! comparison is a plain byte comparison in any SQL dialect. PS3.4 C.2.2.2.1 leaves
//! case sensitivity of PN matching to the SCP; Aina matches person names
//! case-insensitively, and other string VRs exactly.
//!
//! Out of scope: transliteration (Cyrillic ↔ Latin) and phonetic matching.

use unicode_normalization::UnicodeNormalization;

/// Folds a string for case-insensitive comparison.
///
/// Trims DICOM padding (spaces), normalises to NFC so that a precomposed `Й` and
/// `И` + combining breve compare equal, then lowercases with the full Unicode
/// mapping (which covers Cyrillic and the Kazakh letters `Ә Ғ Қ Ң Ө Ұ Ү Һ І`),
/// and normalises again because lowercasing may produce combining sequences.
pub fn fold(s: &str) -> String {
    let nfc: String = s.trim().nfc().collect();
    nfc.to_lowercase().nfc().collect()
}

/// The folded words of a person name: components split on `^` (component
/// separator), `=` (component group separator) and white space, empty ones dropped.
pub fn person_name_words(pn: &str) -> Vec<String> {
    fold(pn)
        .split(|c: char| c == '^' || c == '=' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A search column for "fuzzy" word-prefix matching of person names.
///
/// The folded words of `pn` (see [`person_name_words`]) joined as `" w1 w2 w3 "`,
/// with a leading and a trailing space, so that SQL `LIKE '% ivan%'` finds any word
/// starting with `ivan`. A name without words gives the empty string.
pub fn fold_person_name_words(pn: &str) -> String {
    let words = person_name_words(pn);
    if words.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(pn.len() + 2);
    for w in &words {
        out.push(' ');
        out.push_str(w);
    }
    out.push(' ');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("DOE^JOHN", "doe^john")]
    #[case("  Müller^Jürgen ", "müller^jürgen")]
    #[case("ИВАНОВ^ИВАН^ИВАНОВИЧ", "иванов^иван^иванович")]
    #[case("ӘБІЛҚАСЫМОВ^НҰРЛАН", "әбілқасымов^нұрлан")]
    #[case("ӘҒҚҢӨҰҮҺІ", "әғқңөұүһі")]
    #[case("Ёлкин", "ёлкин")]
    fn folds_case(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(fold(input), expected);
    }

    #[test]
    fn folds_decomposed_to_precomposed() {
        // "Й" as И + COMBINING BREVE, and "é" as e + COMBINING ACUTE.
        assert_eq!(fold("И\u{306}"), fold("Й"));
        assert_eq!(fold("E\u{301}"), "é");
    }

    #[rstest]
    #[case("Иванов^Иван", " иванов иван ")]
    #[case("Doe^John^^Dr.=ДОУ^ДЖОН", " doe john dr. доу джон ")]
    #[case("van der Berg^Anna", " van der berg anna ")]
    #[case("^^^^", "")]
    #[case("", "")]
    fn person_name_word_columns(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(fold_person_name_words(input), expected);
    }

    #[test]
    fn word_prefix_like_semantics() {
        let column = fold_person_name_words("ҚАСЫМОВ^ҒАЛЫМ");
        assert!(column.contains(&format!(" {}", fold("ғал"))));
        assert!(!column.contains(" алым"));
    }
}
