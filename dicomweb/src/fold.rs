//! Case folding for case-insensitive matching of names (Latin, Cyrillic, Kazakh).
//!
//! Both the stored search columns and the query values go through [`fold`], so
//! comparison is a plain byte comparison in any SQL dialect.

/// Folds a string for case-insensitive comparison: Unicode lowercase.
pub fn fold(s: &str) -> String {
    s.trim().to_lowercase()
}
