//! QIDO-RS query model (PS3.18 §8.3.4): the parsed query, its parsing from a raw
//! query string, the default return attributes (§10.6.3.3), and the PS3.4 C.2.2.2
//! matching semantics in Rust (for C-FIND and tests) and as SQL LIKE patterns.
//!
//! Leaves out SQL itself (the index translates [`QidoQuery`]) and which attributes
//! the index can match on: that is the server's business.
//!
//! Parameter decisions (PS3.18 §8.3.3, §8.3.4):
//! - `accept` and `charset` (common query parameters, §8.3.3) are ignored here: the
//!   first is negotiation ([`crate::negotiate::accept_from_query`]), the second does not
//!   apply because responses are always UTF-8.
//! - Keys are standard keywords (`PatientName`) or 8 hex digits (`00100010`) of the
//!   standard dictionary, which also gives the VR. Sequence paths
//!   (`00400275.00401001`) and private or unknown attributes are refused.
//! - `+` decodes to a space, as in HTML forms and most HTTP client libraries; a literal
//!   plus must be sent as `%2B`.
//! - `limit` absent or `0` means the server maximum; larger values are clamped to it.
//!   Negative or non-numeric `limit`/`offset` are errors.
//! - A repeated matching key is a UID list for UI attributes and an error otherwise.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};

use crate::fold::fold;

/// The level a QIDO-RS search returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryLevel {
    Study,
    Series,
    Instance,
}

/// How one attribute is matched (PS3.4 C.2.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchKind {
    /// Empty value: universal matching — matches everything, attribute is returned.
    Universal,
    /// Single value matching: exact (for PN: case-insensitive, see [`crate::fold`]).
    Single(String),
    /// List of UID matching (`1.2.3,1.2.4` or repeated key).
    UidList(Vec<String>),
    /// Wildcard matching with `*` (any sequence) and `?` (one character); the raw pattern.
    Wildcard(String),
    /// Range matching for DA / TM / DT: `from-to`, `from-`, `-to`; bounds normalised
    /// (DA `YYYYMMDD`, TM `HHMMSS[.ffffff]`, DT as given, validated).
    Range {
        from: Option<String>,
        to: Option<String>,
    },
}

/// One matching key of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeMatch {
    pub tag: Tag,
    pub vr: VR,
    pub kind: MatchKind,
}

/// Which attributes to return in addition to the level's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IncludeFields {
    /// Only the defaults of PS3.18 Table 6.7.1-2 (plus matching keys).
    #[default]
    Defaults,
    /// `includefield=all`.
    All,
    /// Specific tags in addition to the defaults.
    Tags(Vec<Tag>),
}

/// A parsed QIDO-RS request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QidoQuery {
    pub level: QueryLevel,
    pub matches: Vec<AttributeMatch>,
    pub include: IncludeFields,
    /// `limit`, already clamped to the server maximum.
    pub limit: u32,
    pub offset: u64,
    /// `fuzzymatching=true` was asked.
    pub fuzzy: bool,
}

/// Longest raw query string accepted (HTTP 413 / 400 beyond).
pub const MAX_QUERY_LEN: usize = 64 * 1024;
/// Longest decoded value of a non-UID matching key.
pub const MAX_VALUE_LEN: usize = 1024;

/// Why a QIDO-RS query string was refused (HTTP 400, or 413 for
/// [`QidoError::QueryTooLong`]). Messages name the offending parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QidoError {
    /// The query string exceeds [`MAX_QUERY_LEN`].
    #[error("query string of {len} bytes exceeds the maximum of {max}")]
    QueryTooLong { len: usize, max: usize },
    /// Invalid percent-encoding, or not UTF-8 once decoded.
    #[error("query parameter `{param}` is not valid percent-encoded UTF-8")]
    InvalidEncoding { param: String },
    /// Neither a known parameter, a standard keyword, nor a tag of the standard dictionary.
    #[error("unknown query parameter or attribute `{param}`")]
    UnknownAttribute { param: String },
    /// Sequence matching (`00400275.00401001`) is not supported.
    #[error("query parameter `{param}`: matching within sequences is not supported")]
    UnsupportedSequenceMatching { param: String },
    /// The attribute's VR cannot be matched (binary data).
    #[error("query parameter `{param}`: attributes of VR {vr} cannot be matched")]
    UnsupportedMatching { param: String, vr: String },
    /// A non-UID matching key or a special parameter was given more than once.
    #[error("query parameter `{param}` is given more than once")]
    DuplicateParameter { param: String },
    /// A value longer than [`MAX_VALUE_LEN`].
    #[error("value of query parameter `{param}` exceeds {max} characters")]
    ValueTooLong { param: String, max: usize },
    /// A value that is not valid for the parameter or the attribute's VR.
    #[error("invalid value `{value}` for query parameter `{param}`: {reason}")]
    InvalidValue {
        param: String,
        value: String,
        reason: &'static str,
    },
}

/// Shortens user input quoted in an error message.
fn quote(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn invalid(param: &str, value: &str, reason: &'static str) -> QidoError {
    QidoError::InvalidValue {
        param: quote(param),
        value: quote(value),
        reason,
    }
}

/// Strict percent-decoding of one query component; `+` is a space.
fn decode_component(raw: &str, param_for_error: &str) -> Result<String, QidoError> {
    let err = || QidoError::InvalidEncoding {
        param: quote(param_for_error),
    };
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(err)?;
                let hex = std::str::from_utf8(hex).map_err(|_| err())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| err())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| err())
}

/// An attribute named in a query: a keyword or 8 hex digits, of the standard dictionary.
fn lookup_attribute(key: &str) -> Result<(Tag, VR), QidoError> {
    if key.contains('.') {
        return Err(QidoError::UnsupportedSequenceMatching { param: quote(key) });
    }
    let hex_tag = (key.len() == 8 && key.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| {
            Some(Tag(
                u16::from_str_radix(&key[..4], 16).ok()?,
                u16::from_str_radix(&key[4..], 16).ok()?,
            ))
        })
        .flatten();
    let entry = match hex_tag {
        // The tag as asked, not the dictionary's (repeating groups such as 60xx).
        Some(tag) => StandardDataDictionary.by_tag(tag).map(|entry| (tag, entry)),
        None => StandardDataDictionary
            .by_name(key)
            .map(|entry| (entry.tag(), entry)),
    };
    let (tag, entry) = entry.ok_or_else(|| QidoError::UnknownAttribute { param: quote(key) })?;
    let vr = match entry.vr() {
        VirtualVr::Exact(vr) => vr,
        VirtualVr::Xs => VR::US,
        _ => VR::OW,
    };
    Ok((tag, vr))
}

/// A tag for `includefield`: like [`lookup_attribute`], but any 8-hex-digit tag
/// (private ones included) is accepted since no VR is needed.
fn include_tag(value: &str) -> Result<Tag, QidoError> {
    if value.len() == 8 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        let g = u16::from_str_radix(&value[..4], 16);
        let e = u16::from_str_radix(&value[4..], 16);
        if let (Ok(g), Ok(e)) = (g, e) {
            return Ok(Tag(g, e));
        }
    }
    lookup_attribute(value)
        .map(|(tag, _)| tag)
        .map_err(|e| match e {
            QidoError::UnknownAttribute { .. } => invalid(
                "includefield",
                value,
                "not a keyword or tag of the standard dictionary",
            ),
            e => e,
        })
}

fn parse_count(param: &str, value: &str) -> Result<u64, QidoError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(param, value, "expected a non-negative integer"));
    }
    value
        .parse()
        .map_err(|_| invalid(param, value, "integer too large"))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The value of a short run of ASCII digits.
fn digits(s: &str) -> Option<u32> {
    all_digits(s).then(|| s.parse().ok()).flatten()
}

/// DA: `YYYYMMDD`, a real calendar date (PS3.5 Table 6.2-1).
fn is_date(s: &str) -> bool {
    if s.len() != 8 || !all_digits(s) {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (digits(&s[..4]), digits(&s[4..6]), digits(&s[6..])) else {
        return false;
    };
    (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

/// TM: `HH[MM[SS[.F{1,6}]]]`.
fn is_time(s: &str) -> bool {
    let (main, frac) = match s.split_once('.') {
        Some((main, frac)) => (main, Some(frac)),
        None => (s, None),
    };
    if let Some(frac) = frac
        && (main.len() != 6 || frac.is_empty() || frac.len() > 6 || digits(frac).is_none())
    {
        return false;
    }
    let limits = [23, 59, 60];
    all_digits(main)
        && main.len().is_multiple_of(2)
        && (2..=6).contains(&main.len())
        && (0..main.len() / 2)
            .all(|i| digits(&main[2 * i..2 * i + 2]).is_some_and(|v| v <= limits[i]))
}

/// Splits a DT into its date-time part and optional `&ZZXX` offset.
fn split_offset(s: &str) -> (&str, Option<&str>) {
    match s.rfind(['+', '-']) {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    }
}

/// DT: `YYYY[MM[DD[HH[MM[SS[.F{1,6}]]]]]][&ZZXX]`.
fn is_datetime(s: &str) -> bool {
    if !s.is_ascii() {
        return false;
    }
    let (dt, offset) = split_offset(s);
    if let Some(offset) = offset
        && !(offset.len() == 5
            && digits(&offset[1..3]).is_some_and(|h| h <= 14)
            && digits(&offset[3..]).is_some_and(|m| m <= 59))
    {
        return false;
    }
    let (main, frac) = match dt.split_once('.') {
        Some((main, frac)) => (main, Some(frac)),
        None => (dt, None),
    };
    if let Some(frac) = frac
        && (main.len() != 14 || frac.is_empty() || frac.len() > 6 || digits(frac).is_none())
    {
        return false;
    }
    if !matches!(main.len(), 4 | 6 | 8 | 10 | 12 | 14) || !all_digits(main) {
        return false;
    }
    if main.len() >= 6 {
        let m = digits(&main[4..6]).unwrap_or(0);
        if !(1..=12).contains(&m) {
            return false;
        }
        if main.len() >= 8 && !is_date(&main[..8]) {
            return false;
        }
    }
    main.len() <= 8 || is_time(&main[8..])
}

/// Lower bound of a TM range: `HH` → `HH0000`.
fn time_lower(s: &str) -> String {
    let (main, frac) = s.split_once('.').map_or((s, None), |(m, f)| (m, Some(f)));
    let mut out = format!("{main:0<6}");
    if let Some(frac) = frac {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// Upper bound of a TM range: `HH` → `HH5959.999999`, so the whole hour is included;
/// an explicit fraction is padded with zeros (`HHMMSS.25` → `HHMMSS.250000`).
fn time_upper(s: &str) -> String {
    match s.split_once('.') {
        Some((main, frac)) => format!("{main}.{frac:0<6}"),
        None => format!("{s}{}.999999", &"5959"[..6 - s.len().min(6)]),
    }
}

/// Whether `s` is a UID: PS3.5 §9.1, digits and dots, at most 64, components
/// without leading zeros.
pub fn is_uid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))
        })
}

fn allows_wildcards(vr: VR) -> bool {
    matches!(
        vr,
        VR::AE
            | VR::AS
            | VR::CS
            | VR::LO
            | VR::LT
            | VR::PN
            | VR::SH
            | VR::ST
            | VR::UC
            | VR::UR
            | VR::UT
    )
}

fn is_integer_vr(vr: VR) -> bool {
    matches!(
        vr,
        VR::IS | VR::SL | VR::SS | VR::SV | VR::UL | VR::US | VR::UV
    )
}

fn is_decimal_vr(vr: VR) -> bool {
    matches!(vr, VR::DS | VR::FL | VR::FD)
}

/// Parses a DA/TM/DT range `from-to`, `from-`, `-to` (PS3.4 C.2.2.2.5).
fn parse_range(param: &str, vr: VR, value: &str) -> Result<Option<MatchKind>, QidoError> {
    let valid = |s: &str| match vr {
        VR::DA => is_date(s),
        VR::TM => is_time(s),
        _ => is_datetime(s),
    };
    // A DT offset also uses `-`: try each `-` as the separator, keeping the first
    // split whose bounds are valid and in order.
    let mut inverted = false;
    for (i, _) in value.match_indices('-') {
        let (from, to) = (&value[..i], &value[i + 1..]);
        if (from.is_empty() && to.is_empty())
            || !(from.is_empty() || valid(from))
            || !(to.is_empty() || valid(to))
        {
            continue;
        }
        let (from, to) = match vr {
            VR::TM => (
                (!from.is_empty()).then(|| time_lower(from)),
                (!to.is_empty()).then(|| time_upper(to)),
            ),
            _ => (
                (!from.is_empty()).then(|| from.to_owned()),
                (!to.is_empty()).then(|| to.to_owned()),
            ),
        };
        if let (Some(f), Some(t)) = (&from, &to) {
            // Compare on the shorter precision: `20240101-2024` is in order.
            let (f, t) = (range_key(vr, f), range_key(vr, t));
            let n = f.len().min(t.len());
            if f.as_bytes()[..n] > t.as_bytes()[..n] {
                inverted = true;
                continue;
            }
        }
        return Ok(Some(MatchKind::Range { from, to }));
    }
    if vr == VR::DT && valid(value) {
        return Ok(None); // a single DT with a negative offset
    }
    Err(invalid(
        param,
        value,
        if inverted {
            "range start is after its end"
        } else {
            "not a valid range of this VR"
        },
    ))
}

/// The matching kind of `value` for an attribute of `vr` (PS3.4 C.2.2.2).
fn parse_match(param: &str, vr: VR, value: &str) -> Result<MatchKind, QidoError> {
    let value = value.trim_matches(' ');
    if value.is_empty() {
        return Ok(MatchKind::Universal);
    }
    if vr == VR::UI {
        let uids: Vec<String> = value
            .split([',', '\\'])
            .map(|u| u.trim().to_owned())
            .collect();
        if let Some(bad) = uids.iter().find(|u| !is_uid(u)) {
            return Err(invalid(param, bad, "not a valid UID"));
        }
        return Ok(if uids.len() == 1 {
            MatchKind::Single(uids.into_iter().next().unwrap_or_default())
        } else {
            MatchKind::UidList(uids)
        });
    }
    if value.chars().count() > MAX_VALUE_LEN {
        return Err(QidoError::ValueTooLong {
            param: quote(param),
            max: MAX_VALUE_LEN,
        });
    }
    match vr {
        VR::DA | VR::TM | VR::DT => {
            if value.contains(['*', '?']) {
                return Err(invalid(
                    param,
                    value,
                    "wildcards are not allowed for dates and times",
                ));
            }
            if value.contains('-')
                && let Some(range) = parse_range(param, vr, value)?
            {
                return Ok(range);
            }
            let valid = match vr {
                VR::DA => is_date(value),
                VR::TM => is_time(value),
                _ => is_datetime(value),
            };
            if !valid {
                return Err(invalid(
                    param,
                    value,
                    "not a valid date, time or date-time of this VR",
                ));
            }
            Ok(MatchKind::Single(value.to_owned()))
        }
        vr if is_integer_vr(vr) => {
            value
                .parse::<i64>()
                .map_err(|_| invalid(param, value, "expected an integer"))?;
            Ok(MatchKind::Single(value.to_owned()))
        }
        vr if is_decimal_vr(vr) => {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| invalid(param, value, "expected a decimal number"))?;
            Ok(MatchKind::Single(value.to_owned()))
        }
        vr if allows_wildcards(vr) => Ok(if value.contains(['*', '?']) {
            MatchKind::Wildcard(value.to_owned())
        } else {
            MatchKind::Single(value.to_owned())
        }),
        VR::SQ => Err(QidoError::UnsupportedSequenceMatching {
            param: quote(param),
        }),
        vr => Err(QidoError::UnsupportedMatching {
            param: quote(param),
            vr: String::from(vr.to_string()),
        }),
    }
}

/// Parses a QIDO-RS query string (raw, still percent-encoded, without `?`) for a
/// search at `level` (PS3.18 §8.3.4). `max_limit` is the server's maximum page size.
pub fn parse_query(
    level: QueryLevel,
    query_string: &str,
    max_limit: u32,
) -> Result<QidoQuery, QidoError> {
    if query_string.len() > MAX_QUERY_LEN {
        return Err(QidoError::QueryTooLong {
            len: query_string.len(),
            max: MAX_QUERY_LEN,
        });
    }
    let mut matches: Vec<AttributeMatch> = Vec::new();
    let mut include = IncludeFields::Defaults;
    let mut limit: Option<u64> = None;
    let mut offset: Option<u64> = None;
    let mut fuzzy: Option<bool> = None;

    for pair in query_string.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_component(raw_key, raw_key)?;
        let value = decode_component(raw_value, &key)?;
        let once = |seen: bool| {
            if seen {
                Err(QidoError::DuplicateParameter { param: quote(&key) })
            } else {
                Ok(())
            }
        };
        match key.to_ascii_lowercase().as_str() {
            "limit" => {
                once(limit.is_some())?;
                limit = Some(parse_count("limit", &value)?);
            }
            "offset" => {
                once(offset.is_some())?;
                offset = Some(parse_count("offset", &value)?);
            }
            "fuzzymatching" => {
                once(fuzzy.is_some())?;
                fuzzy = Some(match value.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid("fuzzymatching", &value, "expected true or false")),
                });
            }
            "includefield" => {
                for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    if field.eq_ignore_ascii_case("all") {
                        include = IncludeFields::All;
                        continue;
                    }
                    let tag = include_tag(field)?;
                    match &mut include {
                        IncludeFields::All => {}
                        IncludeFields::Defaults => include = IncludeFields::Tags(vec![tag]),
                        IncludeFields::Tags(tags) => {
                            if !tags.contains(&tag) {
                                tags.push(tag);
                            }
                        }
                    }
                }
            }
            // Common parameters handled elsewhere (see the module documentation).
            "accept" | "charset" => {}
            _ => {
                let (tag, vr) = lookup_attribute(&key)?;
                let kind = parse_match(&key, vr, &value)?;
                if let Some(existing) = matches.iter_mut().find(|m| m.tag == tag) {
                    if vr != VR::UI {
                        return Err(QidoError::DuplicateParameter { param: quote(&key) });
                    }
                    existing.kind = merge_uid_lists(&existing.kind, &kind);
                } else {
                    matches.push(AttributeMatch { tag, vr, kind });
                }
            }
        }
    }

    let limit = match limit {
        None | Some(0) => max_limit,
        Some(l) => l.min(u64::from(max_limit)) as u32,
    };
    Ok(QidoQuery {
        level,
        matches,
        include,
        limit,
        offset: offset.unwrap_or(0),
        fuzzy: fuzzy.unwrap_or(false),
    })
}

/// One matching key from an attribute's value as a DIMSE C-FIND identifier
/// carries it (PS3.4 C.2.2.2): the same rules as a QIDO-RS parameter, with the
/// tag and VR given rather than looked up, and the value already decoded from the
/// identifier's character set. A UID list is backslash-separated there. Errors
/// name the attribute as 8 hex digits.
pub fn attribute_match(tag: Tag, vr: VR, value: &str) -> Result<AttributeMatch, QidoError> {
    let param = format!("{:04X}{:04X}", tag.group(), tag.element());
    let kind = parse_match(&param, vr, value)?;
    Ok(AttributeMatch { tag, vr, kind })
}

/// Combines two matches of one UI attribute given as repeated keys.
fn merge_uid_lists(a: &MatchKind, b: &MatchKind) -> MatchKind {
    let uids = |k: &MatchKind| match k {
        MatchKind::Single(u) => Some(vec![u.clone()]),
        MatchKind::UidList(l) => Some(l.clone()),
        _ => None,
    };
    match (uids(a), uids(b)) {
        (Some(mut a), Some(b)) => {
            for u in b {
                if !a.contains(&u) {
                    a.push(u);
                }
            }
            MatchKind::UidList(a)
        }
        // An empty (universal) repetition does not narrow the other.
        (Some(_), None) => a.clone(),
        (None, _) => b.clone(),
    }
}

/// Study attributes returned by default (PS3.18 Table 10.6.3-3).
const STUDY_RETURN: &[Tag] = &[
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::ACCESSION_NUMBER,
    tags::INSTANCE_AVAILABILITY,
    tags::MODALITIES_IN_STUDY,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::RETRIEVE_URL,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_ID,
    tags::NUMBER_OF_STUDY_RELATED_SERIES,
    tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
];

/// Series attributes returned by default (PS3.18 Table 10.6.3-4).
const SERIES_RETURN: &[Tag] = &[
    tags::MODALITY,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::SERIES_DESCRIPTION,
    tags::RETRIEVE_URL,
    tags::SERIES_INSTANCE_UID,
    tags::SERIES_NUMBER,
    tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
    tags::PERFORMED_PROCEDURE_STEP_START_DATE,
    tags::PERFORMED_PROCEDURE_STEP_START_TIME,
    tags::REQUEST_ATTRIBUTES_SEQUENCE,
];

/// Instance attributes returned by default (PS3.18 Table 10.6.3-5).
const INSTANCE_RETURN: &[Tag] = &[
    tags::SOP_CLASS_UID,
    tags::SOP_INSTANCE_UID,
    tags::INSTANCE_AVAILABILITY,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::RETRIEVE_URL,
    tags::INSTANCE_NUMBER,
    tags::ROWS,
    tags::COLUMNS,
    tags::BITS_ALLOCATED,
    tags::NUMBER_OF_FRAMES,
];

/// The attributes a search at `level` returns by default (PS3.18 Tables 10.6.3-3 to
/// 10.6.3-5, as summarised in Table 6.7.1-2), without those of the levels above.
pub fn default_return_tags(level: QueryLevel) -> &'static [Tag] {
    match level {
        QueryLevel::Study => STUDY_RETURN,
        QueryLevel::Series => SERIES_RETURN,
        QueryLevel::Instance => INSTANCE_RETURN,
    }
}

/// The default attributes of a search at `level`, including those of the levels
/// above that PS3.18 §10.6.3.3 adds when the search is not nested: all series
/// (`/series`) also return the study attributes; all instances (`/instances`) return
/// study and series attributes; a study's instances (`/studies/{uid}/instances`)
/// return the series attributes. Order: study, series, instance; no duplicates.
pub fn return_tags(level: QueryLevel, nested_in_study: bool, nested_in_series: bool) -> Vec<Tag> {
    let mut out: Vec<Tag> = Vec::new();
    let mut add = |tags: &[Tag]| {
        for t in tags {
            if !out.contains(t) {
                out.push(*t);
            }
        }
    };
    let with_study = !nested_in_study && level != QueryLevel::Study;
    let with_series = level == QueryLevel::Instance && !nested_in_series;
    if with_study || level == QueryLevel::Study {
        add(STUDY_RETURN);
    }
    if with_series || level == QueryLevel::Series {
        add(SERIES_RETURN);
    }
    if level == QueryLevel::Instance {
        add(INSTANCE_RETURN);
    }
    out
}

/// Glob matching of `text` against `pattern` with `*` (any run) and `?` (one
/// character), by characters. Linear backtracking on the last `*`.
fn glob(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || (pattern[p] != '*' && pattern[p] == text[t]))
        {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Normalises a stored DA/TM/DT value for range comparison: TM padded like a lower
/// bound, DT without its UTC offset (offsets are ignored here).
fn range_key(vr: VR, value: &str) -> String {
    match vr {
        VR::TM => time_lower(value),
        VR::DT => split_offset(value).0.to_owned(),
        _ => value.to_owned(),
    }
}

/// Whether a stored `value` of an attribute of `vr` matches `kind` (PS3.4 C.2.2.2).
///
/// `value` is the DICOM string form; multi-valued attributes (`CT\PT`) match when any
/// value does. An absent or empty value matches only universal matching and a
/// wildcard made of `*` alone. PN compares case-insensitively through
/// [`crate::fold::fold`]; other VRs exactly (numbers numerically). Range bounds are
/// inclusive; an upper bound shorter than the value compares on its length (`2020`
/// includes all of 2020).
pub fn matches(kind: &MatchKind, vr: VR, value: Option<&str>) -> bool {
    if matches!(kind, MatchKind::Universal) {
        return true;
    }
    let value = value.map(|v| v.trim_matches([' ', '\0'])).unwrap_or("");
    if value.is_empty() {
        return matches!(kind, MatchKind::Wildcard(p) if p.chars().all(|c| c == '*'));
    }
    let case = |s: &str| if vr == VR::PN { fold(s) } else { s.to_owned() };
    value
        .split('\\')
        .map(|v| v.trim_matches(' '))
        .any(|v| match kind {
            MatchKind::Universal => true,
            MatchKind::Single(q) if is_integer_vr(vr) || is_decimal_vr(vr) => {
                matches!((q.trim().parse::<f64>(), v.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
            }
            MatchKind::Single(q) => case(q.trim()) == case(v),
            MatchKind::UidList(list) => list.iter().any(|u| u == v),
            MatchKind::Wildcard(p) => {
                let p: Vec<char> = case(p).chars().collect();
                let t: Vec<char> = case(v).chars().collect();
                glob(&p, &t)
            }
            MatchKind::Range { from, to } => {
                let v = range_key(vr, v);
                let above = from
                    .as_deref()
                    .is_none_or(|f| v.as_str() >= range_key(vr, f).as_str());
                let below = to.as_deref().is_none_or(|t| {
                    let t = range_key(vr, t);
                    let n = v.len().min(t.len());
                    v.as_bytes()[..n] <= t.as_bytes()[..n]
                });
                above && below
            }
        })
}

/// Translates a PS3.4 wildcard pattern into a SQL LIKE pattern used with
/// `ESCAPE '<escape>'`: `*` → `%`, `?` → `_`, and literal `%`, `_` and `escape`
/// prefixed with `escape`.
pub fn wildcard_to_like(pattern: &str, escape: char) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for c in pattern.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            c if c == '%' || c == '_' || c == escape => {
                out.push(escape);
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    fn single(s: &str) -> MatchKind {
        MatchKind::Single(s.to_owned())
    }

    fn range(from: Option<&str>, to: Option<&str>) -> MatchKind {
        MatchKind::Range {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
        }
    }

    fn parse_one(q: &str) -> Result<AttributeMatch, QidoError> {
        let mut query = parse_query(QueryLevel::Study, q, 100)?;
        assert_eq!(query.matches.len(), 1, "{q}");
        Ok(query.matches.remove(0))
    }

    #[rstest]
    #[case("PatientName=", tags::PATIENT_NAME, MatchKind::Universal)]
    #[case("00100010=DOE*", tags::PATIENT_NAME, MatchKind::Wildcard("DOE*".into()))]
    #[case(
        "PatientName=%D0%98%D0%B2%D0%B0%D0%BD%D0%BE%D0%B2",
        tags::PATIENT_NAME,
        single("Иванов")
    )]
    #[case("PatientName=Doe+John", tags::PATIENT_NAME, single("Doe John"))]
    #[case("PatientID=A%2B1", tags::PATIENT_ID, single("A+1"))]
    #[case("StudyDate=20240229", tags::STUDY_DATE, single("20240229"))]
    #[case(
        "StudyDate=20240101-20241231",
        tags::STUDY_DATE,
        range(Some("20240101"), Some("20241231"))
    )]
    #[case("StudyDate=20240101-", tags::STUDY_DATE, range(Some("20240101"), None))]
    #[case("StudyDate=-20240101", tags::STUDY_DATE, range(None, Some("20240101")))]
    #[case(
        "StudyTime=10-1130",
        tags::STUDY_TIME,
        range(Some("100000"), Some("113059.999999"))
    )]
    #[case("StudyTime=083000.5-", tags::STUDY_TIME, range(Some("083000.5"), None))]
    #[case(
        "StudyTime=-120000.25",
        tags::STUDY_TIME,
        range(None, Some("120000.250000"))
    )]
    #[case(
        "AcquisitionDateTime=20240101-2024",
        tags::ACQUISITION_DATE_TIME,
        range(Some("20240101"), Some("2024"))
    )]
    #[case(
        "AcquisitionDateTime=20240101120000-0500-20240102",
        tags::ACQUISITION_DATE_TIME,
        range(Some("20240101120000-0500"), Some("20240102"))
    )]
    #[case(
        "AcquisitionDateTime=20240101120000-0500",
        tags::ACQUISITION_DATE_TIME,
        single("20240101120000-0500")
    )]
    #[case("StudyInstanceUID=1.2.3", tags::STUDY_INSTANCE_UID, single("1.2.3"))]
    #[case("StudyInstanceUID=1.2.3,1.2.4", tags::STUDY_INSTANCE_UID, MatchKind::UidList(vec!["1.2.3".into(), "1.2.4".into()]))]
    #[case("StudyInstanceUID=1.2.3&StudyInstanceUID=1.2.4%5C1.2.5", tags::STUDY_INSTANCE_UID, MatchKind::UidList(vec!["1.2.3".into(), "1.2.4".into(), "1.2.5".into()]))]
    #[case("ModalitiesInStudy=CT", tags::MODALITIES_IN_STUDY, single("CT"))]
    #[case("SeriesNumber=-3", tags::SERIES_NUMBER, single("-3"))]
    #[case("AccessionNumber=A?12", tags::ACCESSION_NUMBER, MatchKind::Wildcard("A?12".into()))]
    fn parses_matches(#[case] q: &str, #[case] tag: Tag, #[case] kind: MatchKind) {
        let m = parse_one(q).unwrap();
        assert_eq!((m.tag, m.kind), (tag, kind));
    }

    #[test]
    fn parses_special_parameters() {
        // As OHIF asks for its study list.
        let q = parse_query(
            QueryLevel::Study,
            "limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060&includefield=PatientAge,00081030&accept=application/dicom%2Bjson&charset=utf-8",
            50,
        )
        .unwrap();
        assert_eq!(q.limit, 50);
        assert_eq!(q.offset, 0);
        assert!(!q.fuzzy);
        assert!(q.matches.is_empty());
        assert_eq!(
            q.include,
            IncludeFields::Tags(vec![
                tags::STUDY_DESCRIPTION,
                tags::MODALITY,
                tags::PATIENT_AGE
            ])
        );
        let q = parse_query(
            QueryLevel::Series,
            "includefield=all&includefield=00100010&fuzzymatching=TRUE&limit=0&offset=20",
            100,
        )
        .unwrap();
        assert_eq!(q.include, IncludeFields::All);
        assert!(q.fuzzy);
        assert_eq!((q.limit, q.offset, q.level), (100, 20, QueryLevel::Series));
        let q = parse_query(QueryLevel::Instance, "", 7).unwrap();
        assert_eq!(
            (q.limit, q.offset, &q.include),
            (7, 0, &IncludeFields::Defaults)
        );
        let q = parse_query(QueryLevel::Study, "includefield=00091010", 7).unwrap();
        assert_eq!(q.include, IncludeFields::Tags(vec![Tag(0x0009, 0x1010)]));
    }

    #[rstest]
    #[case("limit=-1", "limit")]
    #[case("limit=ten", "limit")]
    #[case("limit=", "limit")]
    #[case("offset=1.5", "offset")]
    #[case("offset=99999999999999999999999", "offset")]
    #[case("limit=1&limit=2", "limit")]
    #[case("fuzzymatching=yes", "fuzzymatching")]
    #[case("PatientNam=x", "PatientNam")]
    #[case("0010001=x", "0010001")]
    #[case("00091010=x", "00091010")]
    #[case("00400275.00401001=x", "00400275.00401001")]
    #[case("RequestAttributesSequence=x", "RequestAttributesSequence")]
    #[case("PixelData=x", "PixelData")]
    #[case("StudyDate=20230229", "StudyDate")]
    #[case("StudyDate=2024*", "StudyDate")]
    #[case("StudyDate=20241231-20240101", "StudyDate")]
    #[case("StudyDate=2024-01-01", "StudyDate")]
    #[case("StudyTime=2500", "StudyTime")]
    #[case("StudyTime=10.5", "StudyTime")]
    #[case("StudyInstanceUID=1.2.abc", "StudyInstanceUID")]
    #[case("StudyInstanceUID=1.02.3", "StudyInstanceUID")]
    #[case("SeriesNumber=1*", "SeriesNumber")]
    #[case("PatientName=a&PatientName=b", "PatientName")]
    #[case("PatientName=%zz", "PatientName")]
    #[case("PatientName=%E", "PatientName")]
    #[case("PatientName=%FF%FE", "PatientName")]
    #[case("includefield=NoSuchKeyword", "includefield")]
    fn refuses_with_parameter_name(#[case] q: &str, #[case] param: &str) {
        let err = parse_query(QueryLevel::Study, q, 100).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&format!("`{param}`")), "{message}");
    }

    #[test]
    fn attribute_match_follows_the_query_rules() {
        let m = attribute_match(tags::PATIENT_NAME, VR::PN, "иванов*").unwrap();
        assert_eq!(m.kind, MatchKind::Wildcard("иванов*".into()));
        let m = attribute_match(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3\\1.2.4").unwrap();
        assert_eq!(
            m.kind,
            MatchKind::UidList(vec!["1.2.3".into(), "1.2.4".into()])
        );
        let m = attribute_match(tags::STUDY_DATE, VR::DA, "20240101-").unwrap();
        assert_eq!(m.kind, range(Some("20240101"), None));
        assert_eq!(
            attribute_match(tags::MODALITY, VR::CS, "").unwrap().kind,
            MatchKind::Universal
        );
        let err = attribute_match(tags::STUDY_DATE, VR::DA, "2024*").unwrap_err();
        assert!(err.to_string().contains("`00080020`"), "{err}");
    }

    #[test]
    fn refuses_huge_inputs() {
        let long = format!("PatientName={}", "a".repeat(MAX_VALUE_LEN + 1));
        assert!(matches!(
            parse_query(QueryLevel::Study, &long, 10),
            Err(QidoError::ValueTooLong { .. })
        ));
        let huge = "a".repeat(MAX_QUERY_LEN + 1);
        assert!(matches!(
            parse_query(QueryLevel::Study, &huge, 10),
            Err(QidoError::QueryTooLong { .. })
        ));
        let key = format!("{}=1", "K".repeat(10_000));
        let err = parse_query(QueryLevel::Study, &key, 10)
            .unwrap_err()
            .to_string();
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn default_tables() {
        assert_eq!(default_return_tags(QueryLevel::Study).len(), 16);
        assert_eq!(default_return_tags(QueryLevel::Series).len(), 10);
        assert_eq!(default_return_tags(QueryLevel::Instance).len(), 10);
        assert_eq!(return_tags(QueryLevel::Study, false, false), STUDY_RETURN);
        assert_eq!(return_tags(QueryLevel::Series, true, false), SERIES_RETURN);
        let all_series = return_tags(QueryLevel::Series, false, false);
        assert!(all_series.contains(&tags::PATIENT_NAME) && all_series.contains(&tags::MODALITY));
        // TimezoneOffsetFromUTC and RetrieveURL appear once.
        assert_eq!(all_series.len(), 16 + 10 - 2);
        let study_instances = return_tags(QueryLevel::Instance, true, false);
        assert!(study_instances.contains(&tags::SERIES_INSTANCE_UID));
        assert!(!study_instances.contains(&tags::PATIENT_NAME));
        assert_eq!(
            return_tags(QueryLevel::Instance, true, true),
            INSTANCE_RETURN
        );
        let all_instances = return_tags(QueryLevel::Instance, false, false);
        assert!(
            all_instances.contains(&tags::PATIENT_ID) && all_instances.contains(&tags::MODALITY)
        );
    }

    #[rstest]
    #[case(MatchKind::Universal, VR::PN, None, true)]
    #[case(single("иванов^иван"), VR::PN, Some("ИВАНОВ^ИВАН"), true)]
    #[case(single("ӘЛИЕВ"), VR::PN, Some("әлиев "), true)]
    #[case(single("Doe"), VR::LO, Some("DOE"), false)]
    #[case(single("CT"), VR::CS, Some("MR\\CT"), true)]
    #[case(single("CT"), VR::CS, None, false)]
    #[case(single("5"), VR::IS, Some("05 "), true)]
    #[case(single("1.5"), VR::DS, Some("1.50"), true)]
    #[case(MatchKind::Wildcard("қас*".into()), VR::PN, Some("ҚАСЫМОВ^ҒАЛЫМ"), true)]
    #[case(MatchKind::Wildcard("*^ҒАЛ?М".into()), VR::PN, Some("ҚАСЫМОВ^ғалым"), true)]
    #[case(MatchKind::Wildcard("A?C".into()), VR::SH, Some("abc"), false)]
    #[case(MatchKind::Wildcard("A*C*".into()), VR::SH, Some("AxxCyyC"), true)]
    #[case(MatchKind::Wildcard("*".into()), VR::SH, None, true)]
    #[case(MatchKind::Wildcard("?*".into()), VR::SH, Some(""), false)]
    #[case(MatchKind::UidList(vec!["1.2".into(), "1.3".into()]), VR::UI, Some("1.3"), true)]
    #[case(MatchKind::UidList(vec!["1.2".into()]), VR::UI, Some("1.2.3"), false)]
    #[case(
        range(Some("20240101"), Some("20241231")),
        VR::DA,
        Some("20240615"),
        true
    )]
    #[case(
        range(Some("20240101"), Some("20241231")),
        VR::DA,
        Some("20241231"),
        true
    )]
    #[case(range(Some("20240101"), None), VR::DA, Some("20231231"), false)]
    #[case(range(None, Some("20240101")), VR::DA, Some("20240102"), false)]
    #[case(
        range(Some("100000"), Some("113059.999999")),
        VR::TM,
        Some("1130"),
        true
    )]
    #[case(
        range(Some("100000"), Some("113059.999999")),
        VR::TM,
        Some("113059.5"),
        true
    )]
    #[case(
        range(Some("100000"), Some("113059.999999")),
        VR::TM,
        Some("0959"),
        false
    )]
    #[case(
        range(Some("20240101"), Some("2024")),
        VR::DT,
        Some("20241231235959"),
        true
    )]
    #[case(range(Some("20240101"), Some("2024")), VR::DT, Some("20250101"), false)]
    #[case(range(Some("2024"), None), VR::DT, Some("20240101120000+0300"), true)]
    fn matching(
        #[case] kind: MatchKind,
        #[case] vr: VR,
        #[case] value: Option<&str>,
        #[case] expected: bool,
    ) {
        assert_eq!(matches(&kind, vr, value), expected);
    }

    #[rstest]
    #[case("DOE*", "DOE%")]
    #[case("A?B", "A_B")]
    #[case("50%_off*", "50\\%\\_off%")]
    #[case("back\\slash", "back\\\\slash")]
    fn like_patterns(#[case] pattern: &str, #[case] expected: &str) {
        assert_eq!(wildcard_to_like(pattern, '\\'), expected);
    }

    /// A LIKE matcher (% and _ with escape) to check the translation against `glob`.
    fn like(pattern: &str, escape: char, text: &str) -> bool {
        let mut p: Vec<char> = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            p.push(match c {
                c if c == escape => match chars.next() {
                    Some('%') => '\u{E000}',
                    Some('_') => '\u{E001}',
                    Some(other) => other,
                    None => return false,
                },
                '%' => '*',
                '_' => '?',
                c => c,
            });
        }
        let text: Vec<char> = text
            .chars()
            .map(|c| match c {
                '%' => '\u{E000}',
                '_' => '\u{E001}',
                c => c,
            })
            .collect();
        glob(&p, &text)
    }

    proptest! {
        #[test]
        fn parse_never_panics(q in "\\PC{0,200}") {
            let _ = parse_query(QueryLevel::Study, &q, 100);
        }

        #[test]
        fn parse_never_panics_on_structured_input(
            key in prop::sample::select(vec!["PatientName", "StudyDate", "StudyTime", "AcquisitionDateTime", "StudyInstanceUID", "SeriesNumber", "limit", "offset", "includefield"]),
            value in "[0-9.*?,%+\\-a-zA-Zа-я]{0,40}",
        ) {
            let _ = parse_query(QueryLevel::Study, &format!("{key}={value}"), 100);
        }

        #[test]
        fn wildcard_and_like_agree(pattern in "[ab%_*?\\\\]{0,8}", text in "[ab%_\\\\]{0,8}") {
            let like_pattern = wildcard_to_like(&pattern, '\\');
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(glob(&p, &t), like(&like_pattern, '\\', &text));
        }

        #[test]
        fn matching_never_panics(pattern in "\\PC{0,20}", value in "\\PC{0,20}") {
            for vr in [VR::PN, VR::DA, VR::TM, VR::DT, VR::IS, VR::UI] {
                let _ = matches(&MatchKind::Wildcard(pattern.clone()), vr, Some(&value));
                let _ = matches(&MatchKind::Range { from: Some(pattern.clone()), to: Some(value.clone()) }, vr, Some(&value));
            }
        }
    }
}
