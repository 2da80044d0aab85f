//! Media type syntax shared by Content-Type and Accept parsing (RFC 9110 §8.3.1,
//! §12.5.1): `type/subtype *( OWS ";" OWS name=value )`, values as tokens or quoted
//! strings. Semantics (which media types DICOMweb accepts) live in
//! [`crate::negotiate`] and [`crate::multipart`].

/// A parsed media type or media range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaType {
    /// `type/subtype`, lowercased.
    pub essence: String,
    /// Parameters in order; names lowercased, values unquoted and case preserved.
    pub params: Vec<(String, String)>,
}

impl MediaType {
    /// The value of the first parameter named `name` (lowercase).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Parses one media type. The error is a human-readable reason.
pub(crate) fn parse_media_type(s: &str) -> Result<MediaType, String> {
    let s = s.trim();
    let end = s
        .find(|c: char| c == ';' || c.is_whitespace())
        .unwrap_or(s.len());
    let essence = &s[..end];
    let Some((ty, sub)) = essence.split_once('/') else {
        return Err(format!("`{essence}` is not of the form type/subtype"));
    };
    if ty.is_empty() || sub.is_empty() || !ty.chars().all(is_tchar) || !sub.chars().all(is_tchar) {
        return Err(format!("`{essence}` is not of the form type/subtype"));
    }
    let mut params = Vec::new();
    let mut rest = s[end..].chars().peekable();
    loop {
        while rest.next_if(|c| c.is_whitespace()).is_some() {}
        match rest.next() {
            None => break,
            Some(';') => {}
            Some(c) => return Err(format!("unexpected `{c}` after media type parameters")),
        }
        while rest.next_if(|c| c.is_whitespace()).is_some() {}
        if rest.peek().is_none() {
            break; // a trailing `;` is tolerated
        }
        let mut name = String::new();
        while let Some(c) = rest.next_if(|&c| is_tchar(c)) {
            name.push(c.to_ascii_lowercase());
        }
        if name.is_empty() || rest.next() != Some('=') {
            return Err("media type parameter without `name=`".to_owned());
        }
        let mut value = String::new();
        if rest.next_if_eq(&'"').is_some() {
            loop {
                match rest.next() {
                    None => return Err(format!("unterminated quoted value of `{name}`")),
                    Some('"') => break,
                    Some('\\') => match rest.next() {
                        Some(c) => value.push(c),
                        None => return Err(format!("unterminated quoted value of `{name}`")),
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            // Lenient: clients write `type=application/dicom` unquoted although `/`
            // is not a token character.
            while let Some(c) =
                rest.next_if(|&c| c != ';' && c != ',' && c != '"' && !c.is_whitespace())
            {
                value.push(c);
            }
            if value.is_empty() {
                return Err(format!("empty value of `{name}`"));
            }
        }
        params.push((name, value));
    }
    Ok(MediaType {
        essence: essence.to_ascii_lowercase(),
        params,
    })
}

/// Splits a comma-separated header list, ignoring commas inside quoted strings.
/// Empty elements are dropped (RFC 9110 §5.6.1).
pub(crate) fn split_list(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_and_unquoted_params() {
        let m = parse_media_type(
            r#"Multipart/Related; type="application/dicom"; Boundary=abc ; start="<a\"b>""#,
        )
        .unwrap();
        assert_eq!(m.essence, "multipart/related");
        assert_eq!(m.param("type"), Some("application/dicom"));
        assert_eq!(m.param("boundary"), Some("abc"));
        assert_eq!(m.param("start"), Some("<a\"b>"));
        let m = parse_media_type("multipart/related;type=application/dicom;").unwrap();
        assert_eq!(m.param("type"), Some("application/dicom"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_media_type("dicom").is_err());
        assert!(parse_media_type("a/b; x").is_err());
        assert!(parse_media_type(r#"a/b; x="unterminated"#).is_err());
        assert!(parse_media_type("a/b c").is_err());
    }

    #[test]
    fn splits_lists_outside_quotes() {
        assert_eq!(
            split_list(r#"a/b; x="1,2", c/d ,, */*"#),
            vec![r#"a/b; x="1,2""#, "c/d", "*/*"]
        );
    }
}
