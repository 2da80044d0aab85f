//! QIDO-RS query model (PS3.18 §8.3.4) — types only; parsing is implemented in this module.

use dicom_core::{Tag, VR};

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
    Range { from: Option<String>, to: Option<String> },
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
