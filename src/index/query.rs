//! QIDO-RS → SQL translation and result rows, shared by every index backend.
//!
//! Owns: which attributes the index matches on (PS3.18 Table 6.7.1-1) and how
//! each matching kind of PS3.4 C.2.2.2 becomes a condition on the normalised
//! columns of `migrations/*/0001_init.sql`; the default return attributes of
//! PS3.18 Table 6.7.1-2; building a result row from the stored DICOM JSON; and
//! the normalisation of search columns at ingest (fold, dates, times), so that
//! stored values and query values go through the same functions.
//!
//! Leaves out: executing queries and decoding rows (the backends). SQL here is
//! written for both SQLite and PostgreSQL: values are always bound through
//! [`QueryBuilder`] (whose placeholders follow the dialect), `LIKE … ESCAPE '\'`,
//! `IS NULL` sort keys instead of `NULLS LAST`, and no dialect functions.

use std::collections::BTreeSet;

use aina_dicomweb::fold::{fold, fold_person_name_words, person_name_words};
use aina_dicomweb::qido::{
    AttributeMatch, IncludeFields, MatchKind, QidoQuery, QueryLevel, return_tags, wildcard_to_like,
};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use serde_json::{Map, Value, json};
use sqlx::{Database, Encode, QueryBuilder, Type};

use super::{IndexError, QidoRow, Scope};

/// The table an attribute lives in. The alias is how every query here names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Table {
    Study,
    Series,
    Instance,
}

impl Table {
    fn of(level: QueryLevel) -> Table {
        match level {
            QueryLevel::Study => Table::Study,
            QueryLevel::Series => Table::Series,
            QueryLevel::Instance => Table::Instance,
        }
    }

    fn alias(self) -> &'static str {
        match self {
            Table::Study => "st",
            Table::Series => "se",
            Table::Instance => "i",
        }
    }
}

/// How a column is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// UI: exact, list of UIDs.
    Uid,
    /// Case-sensitive text (LO, SH, CS): exact or wildcard.
    Text,
    /// CS that may be sent multi-valued (`CT\MR`): any of the values.
    Modality,
    /// PN on a folded column; `words` is the fuzzy-matching column if there is one.
    PersonName { words: Option<&'static str> },
    /// DA as 'YYYYMMDD'; `not_null` columns keep '' for absent.
    Date,
    /// TM as 'HHMMSS[.ffffff]'.
    Time,
    /// IS stored as an integer.
    Int,
    /// ModalitiesInStudy: any current series of the study has the modality.
    ModalitiesInStudy,
}

/// One attribute the index can match on.
struct MatchColumn {
    tag: Tag,
    table: Table,
    column: &'static str,
    kind: KeyKind,
}

const fn key(tag: Tag, table: Table, column: &'static str, kind: KeyKind) -> MatchColumn {
    MatchColumn {
        tag,
        table,
        column,
        kind,
    }
}

/// PS3.18 Table 6.7.1-1 (and a few more study keys a PACS list filters on).
const MATCH_COLUMNS: &[MatchColumn] = &[
    key(
        tags::STUDY_INSTANCE_UID,
        Table::Study,
        "study_instance_uid",
        KeyKind::Uid,
    ),
    key(tags::STUDY_DATE, Table::Study, "study_date", KeyKind::Date),
    key(tags::STUDY_TIME, Table::Study, "study_time", KeyKind::Time),
    key(
        tags::ACCESSION_NUMBER,
        Table::Study,
        "accession_number",
        KeyKind::Text,
    ),
    key(
        tags::MODALITIES_IN_STUDY,
        Table::Study,
        "modality",
        KeyKind::ModalitiesInStudy,
    ),
    key(
        tags::REFERRING_PHYSICIAN_NAME,
        Table::Study,
        "referring_physician_name_fold",
        KeyKind::PersonName { words: None },
    ),
    key(
        tags::PATIENT_NAME,
        Table::Study,
        "patient_name_fold",
        KeyKind::PersonName {
            words: Some("patient_name_words"),
        },
    ),
    key(tags::PATIENT_ID, Table::Study, "patient_id", KeyKind::Text),
    key(
        tags::ISSUER_OF_PATIENT_ID,
        Table::Study,
        "issuer_of_patient_id",
        KeyKind::Text,
    ),
    key(
        tags::PATIENT_BIRTH_DATE,
        Table::Study,
        "patient_birth_date",
        KeyKind::Date,
    ),
    key(
        tags::PATIENT_SEX,
        Table::Study,
        "patient_sex",
        KeyKind::Text,
    ),
    key(tags::STUDY_ID, Table::Study, "study_id", KeyKind::Text),
    key(
        tags::STUDY_DESCRIPTION,
        Table::Study,
        "study_description",
        KeyKind::Text,
    ),
    key(tags::MODALITY, Table::Series, "modality", KeyKind::Modality),
    key(
        tags::SERIES_INSTANCE_UID,
        Table::Series,
        "series_instance_uid",
        KeyKind::Uid,
    ),
    key(
        tags::SERIES_NUMBER,
        Table::Series,
        "series_number",
        KeyKind::Int,
    ),
    key(
        tags::PERFORMED_PROCEDURE_STEP_START_DATE,
        Table::Series,
        "performed_procedure_step_start_date",
        KeyKind::Date,
    ),
    key(
        tags::PERFORMED_PROCEDURE_STEP_START_TIME,
        Table::Series,
        "performed_procedure_step_start_time",
        KeyKind::Time,
    ),
    key(
        tags::BODY_PART_EXAMINED,
        Table::Series,
        "body_part_examined",
        KeyKind::Text,
    ),
    key(
        tags::SERIES_DESCRIPTION,
        Table::Series,
        "series_description",
        KeyKind::Text,
    ),
    key(
        tags::SOP_CLASS_UID,
        Table::Instance,
        "sop_class_uid",
        KeyKind::Uid,
    ),
    key(
        tags::SOP_INSTANCE_UID,
        Table::Instance,
        "sop_instance_uid",
        KeyKind::Uid,
    ),
    key(
        tags::INSTANCE_NUMBER,
        Table::Instance,
        "instance_number",
        KeyKind::Int,
    ),
];

/// The DICOM JSON key of a tag: 8 uppercase hex digits (PS3.18 F.2.1.1).
pub(crate) fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

/// What a search returns besides rows: how to build them.
#[derive(Debug, Clone)]
pub(crate) struct SearchPlan {
    pub level: QueryLevel,
    /// Instance level: whether `metadata_json` is selected (for `includefield`).
    pub with_metadata: bool,
    /// `None` = every available attribute (`includefield=all`).
    returned: Option<BTreeSet<String>>,
    /// Keys ignored because the index cannot match on them.
    pub unsupported: Vec<Tag>,
}

/// The stored values of one result row, as a backend decodes them.
#[derive(Debug, Clone, Default)]
pub(crate) struct RowData {
    pub study_instance_uid: String,
    pub study_attrs: String,
    pub modalities_in_study: String,
    pub number_of_series: i64,
    pub study_instances: i64,
    pub series: Option<SeriesRowData>,
    pub instance: Option<InstanceRowData>,
}

/// Series columns of a series- or instance-level row.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeriesRowData {
    pub series_instance_uid: String,
    pub series_attrs: String,
    pub series_instances: i64,
}

/// Instance columns of an instance-level row.
#[derive(Debug, Clone, Default)]
pub(crate) struct InstanceRowData {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub instance_number: Option<i64>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub bits_allocated: Option<i64>,
    pub number_of_frames: Option<i64>,
    pub metadata_json: Option<String>,
}

/// Builds the search query (select list per level, conditions, order, paging).
///
/// The select list, by level: study `study_instance_uid, study_attrs,
/// modalities_in_study, number_of_series, study_instances`; series adds
/// `series_instance_uid, series_attrs, series_instances`; instance adds
/// `sop_instance_uid, sop_class_uid, instance_number, pixel_rows, pixel_columns,
/// bits_allocated, number_of_frames` and, if [`SearchPlan::with_metadata`],
/// `metadata_json`.
pub(crate) fn build_search<DB>(
    query: &QidoQuery,
    scope: &Scope,
) -> Result<(QueryBuilder<DB>, SearchPlan), IndexError>
where
    DB: Database,
    DB::Arguments: Default,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    let level = query.level;
    let with_metadata = level == QueryLevel::Instance && query.include != IncludeFields::Defaults;
    let mut qb = QueryBuilder::<DB>::new(
        "SELECT st.study_instance_uid, st.attrs_json AS study_attrs, st.modalities_in_study, \
         st.number_of_series, st.number_of_instances AS study_instances",
    );
    match level {
        QueryLevel::Study => {
            // Studies whose every instance was removed keep no row, but a study
            // holding only superseded versions does: hide it.
            qb.push(" FROM studies st WHERE st.number_of_instances > 0");
        }
        QueryLevel::Series => {
            qb.push(
                ", se.series_instance_uid, se.attrs_json AS series_attrs, \
                 se.number_of_instances AS series_instances \
                 FROM series se JOIN studies st ON st.study_instance_uid = se.study_instance_uid \
                 WHERE se.number_of_instances > 0",
            );
        }
        QueryLevel::Instance => {
            qb.push(
                ", se.series_instance_uid, se.attrs_json AS series_attrs, \
                 se.number_of_instances AS series_instances, \
                 i.sop_instance_uid, i.sop_class_uid, i.instance_number, i.pixel_rows, \
                 i.pixel_columns, i.bits_allocated, i.number_of_frames",
            );
            if with_metadata {
                qb.push(", i.metadata_json");
            }
            qb.push(
                " FROM instances i \
                 JOIN series se ON se.series_instance_uid = i.series_instance_uid \
                 JOIN studies st ON st.study_instance_uid = i.study_instance_uid \
                 WHERE i.superseded_at IS NULL",
            );
        }
    }

    // The scope is matching on the UIDs of the path; it does not add return keys.
    let scope_keys = [
        (tags::STUDY_INSTANCE_UID, &scope.study),
        (tags::SERIES_INSTANCE_UID, &scope.series),
        (tags::SOP_INSTANCE_UID, &scope.instance),
    ];
    for (tag, uid) in scope_keys {
        if let Some(uid) = uid {
            let column = match_column(tag).expect("scope UIDs are match columns");
            let m = AttributeMatch {
                tag,
                vr: dicom_core::VR::UI,
                kind: MatchKind::Single(uid.clone()),
            };
            push_match(&mut qb, level, column, &m, false)?;
        }
    }

    let mut unsupported = Vec::new();
    for m in &query.matches {
        if m.kind == MatchKind::Universal {
            continue;
        }
        match match_column(m.tag) {
            Some(column) => push_match(&mut qb, level, column, m, query.fuzzy)?,
            None => {
                if !unsupported.contains(&m.tag) {
                    unsupported.push(m.tag);
                }
            }
        }
    }

    // Stable order for limit/offset paging; `(x IS NULL)` puts absent values last
    // in both dialects (SQLite sorts NULL first, PostgreSQL last).
    match level {
        QueryLevel::Study => {
            qb.push(" ORDER BY st.study_date DESC, st.study_time DESC, st.study_instance_uid");
        }
        QueryLevel::Series => {
            qb.push(
                " ORDER BY (se.series_number IS NULL), se.series_number, se.series_instance_uid",
            );
        }
        QueryLevel::Instance => {
            qb.push(" ORDER BY (i.instance_number IS NULL), i.instance_number, i.sop_instance_uid");
        }
    }
    // A limit of 0 is taken as "no limit" rather than "no rows": the parser clamps
    // the client's value, 0 can only mean it was left unset. SQLite cannot OFFSET
    // without LIMIT, hence a huge bound.
    let limit = if query.limit == 0 {
        i64::MAX
    } else {
        i64::from(query.limit)
    };
    let offset = i64::try_from(query.offset)
        .map_err(|_| IndexError::Invalid(format!("offset {} is too large", query.offset)))?;
    qb.push(" LIMIT ").push_bind(limit);
    qb.push(" OFFSET ").push_bind(offset);

    let returned = returned_keys(query, scope);
    Ok((
        qb,
        SearchPlan {
            level,
            with_metadata,
            returned,
            unsupported,
        },
    ))
}

fn match_column(tag: Tag) -> Option<&'static MatchColumn> {
    MATCH_COLUMNS.iter().find(|c| c.tag == tag)
}

fn returned_keys(query: &QidoQuery, scope: &Scope) -> Option<BTreeSet<String>> {
    // PS3.18 Table 6.7.1-2 plus the levels above when not nested (§10.6.3.3).
    let mut tags = return_tags(query.level, scope.study.is_some(), scope.series.is_some());
    // The HTTP layer builds RetrieveURL from the UIDs of the levels above.
    match query.level {
        QueryLevel::Study => {}
        QueryLevel::Series => tags.push(tags::STUDY_INSTANCE_UID),
        QueryLevel::Instance => {
            tags.extend([tags::STUDY_INSTANCE_UID, tags::SERIES_INSTANCE_UID]);
        }
    }
    tags.extend(query.matches.iter().map(|m| m.tag));
    match &query.include {
        IncludeFields::All => return None,
        IncludeFields::Tags(extra) => tags.extend_from_slice(extra),
        IncludeFields::Defaults => {}
    }
    Some(tags.into_iter().map(tag_key).collect())
}

/// Pushes ` AND <condition>` for one matching key, reaching into a deeper table
/// with `EXISTS` when the key lives below the query level (e.g. Modality at study
/// level: a study matches if any of its series does).
fn push_match<DB>(
    qb: &mut QueryBuilder<DB>,
    level: QueryLevel,
    column: &MatchColumn,
    m: &AttributeMatch,
    fuzzy: bool,
) -> Result<(), IndexError>
where
    DB: Database,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    let here = Table::of(level);
    if column.kind == KeyKind::ModalitiesInStudy {
        // Matched on the series rather than the joined column so each modality is
        // compared whole (no `'%CT%'` hitting 'OCT').
        qb.push(
            " AND EXISTS (SELECT 1 FROM series ms WHERE ms.study_instance_uid = \
             st.study_instance_uid AND ms.number_of_instances > 0",
        );
        push_condition(qb, "ms.modality", None, KeyKind::Modality, m, fuzzy)?;
        qb.push(")");
        return Ok(());
    }
    let words = match column.kind {
        KeyKind::PersonName { words: Some(w) } => Some(format!("{}.{w}", column.table.alias())),
        _ => None,
    };
    let qualified = format!("{}.{}", column.table.alias(), column.column);
    if column.table <= here {
        return push_condition(qb, &qualified, words.as_deref(), column.kind, m, fuzzy);
    }
    match (here, column.table) {
        (Table::Study, Table::Series) => qb.push(
            " AND EXISTS (SELECT 1 FROM series se WHERE se.study_instance_uid = \
             st.study_instance_uid AND se.number_of_instances > 0",
        ),
        (Table::Study, _) => qb.push(
            " AND EXISTS (SELECT 1 FROM instances i WHERE i.study_instance_uid = \
             st.study_instance_uid AND i.superseded_at IS NULL",
        ),
        _ => qb.push(
            " AND EXISTS (SELECT 1 FROM instances i WHERE i.series_instance_uid = \
             se.series_instance_uid AND i.superseded_at IS NULL",
        ),
    };
    push_condition(qb, &qualified, words.as_deref(), column.kind, m, fuzzy)?;
    qb.push(")");
    Ok(())
}

/// Pushes ` AND (…)` comparing `column` (a static, qualified column name) with
/// the bound, normalised query value.
fn push_condition<DB>(
    qb: &mut QueryBuilder<DB>,
    column: &str,
    words: Option<&str>,
    kind: KeyKind,
    m: &AttributeMatch,
    fuzzy: bool,
) -> Result<(), IndexError>
where
    DB: Database,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    let name = tag_key(m.tag);
    let refuse = |what: &str| {
        Err(IndexError::Invalid(format!(
            "{what} matching is not allowed for ({:04X},{:04X})",
            m.tag.group(),
            m.tag.element()
        )))
    };
    match (kind, &m.kind) {
        (_, MatchKind::Universal) => {}
        (KeyKind::PersonName { .. }, MatchKind::Single(v) | MatchKind::Wildcard(v)) => {
            match words {
                Some(words) if fuzzy => {
                    // Fuzzy: every query word starts some word of the name, in any
                    // order and any component ("иван" finds "Сергей Иванов").
                    for w in person_name_words(v) {
                        qb.push(" AND ")
                            .push(words)
                            .push(" LIKE ")
                            .push_bind(format!("% {}%", like(&w)))
                            .push(" ESCAPE '\\'");
                    }
                }
                _ => {
                    // Component-wise (PS3.4 C.2.2.2.1): components the query leaves
                    // out match anything, so "Иванов" finds "Иванов^Сергей".
                    let pattern = person_name_pattern(v);
                    qb.push(" AND (")
                        .push(column)
                        .push(" LIKE ")
                        .push_bind(pattern.clone())
                        .push(" ESCAPE '\\' OR ")
                        .push(column)
                        .push(" LIKE ")
                        .push_bind(format!("{pattern}^%"))
                        .push(" ESCAPE '\\')");
                    push_prefix_range(qb, column, &pattern);
                }
            }
        }
        (KeyKind::PersonName { .. }, _) => return refuse("list or range"),
        (KeyKind::Int, MatchKind::Single(v)) => {
            let n = parse_int(&name, v)?;
            qb.push(" AND ").push(column).push(" = ").push_bind(n);
        }
        (KeyKind::Int, MatchKind::UidList(vs)) => {
            let ns = vs
                .iter()
                .map(|v| parse_int(&name, v))
                .collect::<Result<Vec<_>, _>>()?;
            push_in(qb, column, ns);
        }
        (KeyKind::Int, _) => return refuse("wildcard or range"),
        (KeyKind::Date | KeyKind::Time, MatchKind::Range { from, to }) => {
            let norm = |v: &str| match kind {
                KeyKind::Date => normalize_date(v),
                _ => normalize_time(v),
            };
            // '' stands for "absent" in NOT NULL date columns; it never matches a range.
            qb.push(" AND ").push(column).push(" <> ''");
            if let Some(from) = from.as_deref().map(norm).filter(|v| !v.is_empty()) {
                qb.push(" AND ").push(column).push(" >= ").push_bind(from);
            }
            if let Some(mut to) = to.as_deref().map(norm).filter(|v| !v.is_empty()) {
                if kind == KeyKind::Time && !to.contains('.') {
                    // "-1000" includes 10:00:00.5: compare against the last fraction.
                    to.push_str(".999999");
                }
                qb.push(" AND ").push(column).push(" <= ").push_bind(to);
            }
        }
        (_, MatchKind::Range { .. }) => return refuse("range"),
        (KeyKind::Date, MatchKind::Single(v)) => {
            qb.push(" AND ")
                .push(column)
                .push(" = ")
                .push_bind(normalize_date(v));
        }
        (KeyKind::Time, MatchKind::Single(v)) => {
            qb.push(" AND ")
                .push(column)
                .push(" = ")
                .push_bind(normalize_time(v));
        }
        (KeyKind::Modality, MatchKind::Single(v)) if v.contains('\\') => {
            let vs = v.split('\\').map(|s| s.trim().to_owned()).collect();
            push_in(qb, column, vs);
        }
        (_, MatchKind::Single(v)) => {
            qb.push(" AND ")
                .push(column)
                .push(" = ")
                .push_bind(v.trim().to_owned());
        }
        (_, MatchKind::UidList(vs)) => {
            push_in(qb, column, vs.iter().map(|v| v.trim().to_owned()).collect());
        }
        (_, MatchKind::Wildcard(p)) => {
            let pattern = like(p.trim());
            qb.push(" AND ")
                .push(column)
                .push(" LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\'");
            push_prefix_range(qb, column, &pattern);
        }
    }
    Ok(())
}

/// Adds `column >= prefix AND column < prefix || U+10FFFF` for the literal
/// prefix of a LIKE pattern. Redundant with the LIKE, but a plain range is what
/// lets the planner use the column's index for "иванов*" whatever the dialect
/// and however the pattern is bound (SQLite's LIKE optimisation needs the
/// pattern at prepare time; PostgreSQL needs `text_pattern_ops` or `COLLATE "C"`
/// on the index, which the PostgreSQL migration must give the column).
fn push_prefix_range<DB>(qb: &mut QueryBuilder<DB>, column: &str, like_pattern: &str)
where
    DB: Database,
    String: for<'t> Encode<'t, DB> + Type<DB>,
{
    let prefix = like_prefix(like_pattern);
    if prefix.is_empty() {
        return;
    }
    let upper = format!("{prefix}{}", char::MAX);
    qb.push(" AND ")
        .push(column)
        .push(" >= ")
        .push_bind(prefix)
        .push(" AND ")
        .push(column)
        .push(" < ")
        .push_bind(upper);
}

/// The literal text of a LIKE pattern (escape `\\`) before its first wildcard.
fn like_prefix(like_pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = like_pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' | '_' => break,
            '\\' => match chars.next() {
                Some(c) => out.push(c),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

fn push_in<DB, T>(qb: &mut QueryBuilder<DB>, column: &str, values: Vec<T>)
where
    DB: Database,
    T: for<'t> Encode<'t, DB> + Type<DB>,
{
    if values.is_empty() {
        // An empty list matches nothing rather than everything.
        qb.push(" AND 1 = 0");
        return;
    }
    qb.push(" AND ").push(column).push(" IN (");
    let mut list = qb.separated(", ");
    for v in values {
        list.push_bind(v);
    }
    qb.push(")");
}

fn parse_int(name: &str, v: &str) -> Result<i64, IndexError> {
    v.trim()
        .parse()
        .map_err(|_| IndexError::Invalid(format!("{name}: {v:?} is not an integer")))
}

/// Builds the [`super::Index::instances`] / [`super::Index::metadata`] query over
/// the current instances in `scope`. Columns: `study_instance_uid,
/// series_instance_uid, sop_instance_uid, sop_class_uid, transfer_syntax_uid,
/// sha256, size_bytes, object_key, container_index, number_of_frames` and
/// `metadata_json`.
/// What an instances query reads: the retrieval columns, or the stored metadata
/// alone (a series' JSON can be megabytes; retrieval never needs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InstanceColumns {
    Retrieval,
    Metadata,
}

pub(crate) fn build_instances<DB>(
    scope: &Scope,
    columns: InstanceColumns,
) -> Result<QueryBuilder<DB>, IndexError>
where
    DB: Database,
    DB::Arguments: Default,
    String: for<'t> Encode<'t, DB> + Type<DB>,
{
    if scope.study.is_none() && scope.series.is_none() && scope.instance.is_none() {
        return Err(IndexError::Invalid(
            "a study, series or instance is required".to_owned(),
        ));
    }
    let mut qb = QueryBuilder::<DB>::new(match columns {
        InstanceColumns::Retrieval => {
            "SELECT i.study_instance_uid, i.series_instance_uid, i.sop_instance_uid, \
             i.sop_class_uid, i.transfer_syntax_uid, i.sha256, i.size_bytes, i.object_key, \
             i.container_index, i.number_of_frames"
        }
        InstanceColumns::Metadata => "SELECT i.metadata_json",
    });
    qb.push(
        " FROM instances i JOIN series se ON se.series_instance_uid = i.series_instance_uid \
         WHERE i.superseded_at IS NULL",
    );
    if let Some(s) = &scope.study {
        qb.push(" AND i.study_instance_uid = ").push_bind(s.clone());
    }
    if let Some(s) = &scope.series {
        qb.push(" AND i.series_instance_uid = ")
            .push_bind(s.clone());
    }
    if let Some(s) = &scope.instance {
        qb.push(" AND i.sop_instance_uid = ").push_bind(s.clone());
    }
    qb.push(
        " ORDER BY (se.series_number IS NULL), se.series_number, se.series_instance_uid, \
         (i.instance_number IS NULL), i.instance_number, i.sop_instance_uid",
    );
    Ok(qb)
}

/// Builds one QIDO-RS result from the stored DICOM JSON and computed columns,
/// keeping the attributes the plan returns.
pub(crate) fn build_row(plan: &SearchPlan, data: RowData) -> QidoRow {
    let mut all = Map::new();
    merge_json(&mut all, &data.study_attrs);
    if let Some(series) = &data.series {
        merge_json(&mut all, &series.series_attrs);
    }
    if let Some(metadata) = data
        .instance
        .as_ref()
        .and_then(|i| i.metadata_json.as_ref())
    {
        merge_json(&mut all, metadata);
    }

    // Computed attributes override whatever the stored JSON says: counts and
    // availability are the archive's, not the modality's.
    let mut set = |tag: Tag, vr: &str, values: Vec<Value>| {
        let mut element = Map::new();
        element.insert("vr".to_owned(), Value::from(vr));
        if !values.is_empty() {
            element.insert("Value".to_owned(), Value::Array(values));
        }
        all.insert(tag_key(tag), Value::Object(element));
    };
    set(
        tags::STUDY_INSTANCE_UID,
        "UI",
        vec![json!(data.study_instance_uid)],
    );
    set(
        tags::MODALITIES_IN_STUDY,
        "CS",
        data.modalities_in_study
            .split('\\')
            .filter(|m| !m.is_empty())
            .map(Value::from)
            .collect(),
    );
    set(
        tags::NUMBER_OF_STUDY_RELATED_SERIES,
        "IS",
        vec![json!(data.number_of_series)],
    );
    set(
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        "IS",
        vec![json!(data.study_instances)],
    );
    set(tags::INSTANCE_AVAILABILITY, "CS", vec![json!("ONLINE")]);
    if let Some(series) = &data.series {
        set(
            tags::SERIES_INSTANCE_UID,
            "UI",
            vec![json!(series.series_instance_uid)],
        );
        set(
            tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
            "IS",
            vec![json!(series.series_instances)],
        );
    }
    if let Some(i) = &data.instance {
        set(
            tags::SOP_INSTANCE_UID,
            "UI",
            vec![json!(i.sop_instance_uid)],
        );
        set(tags::SOP_CLASS_UID, "UI", vec![json!(i.sop_class_uid)]);
        let numbers = [
            (tags::INSTANCE_NUMBER, "IS", i.instance_number),
            (tags::ROWS, "US", i.rows),
            (tags::COLUMNS, "US", i.columns),
            (tags::BITS_ALLOCATED, "US", i.bits_allocated),
            (tags::NUMBER_OF_FRAMES, "IS", i.number_of_frames),
        ];
        for (tag, vr, n) in numbers {
            if let Some(n) = n {
                set(tag, vr, vec![json!(n)]);
            }
        }
    }

    match &plan.returned {
        None => all,
        Some(keys) => all.into_iter().filter(|(k, _)| keys.contains(k)).collect(),
    }
}

fn merge_json(into: &mut Map<String, Value>, json: &str) {
    if json.is_empty() {
        return;
    }
    match serde_json::from_str::<Map<String, Value>>(json) {
        Ok(map) => into.extend(map),
        // Written by ingest, so this is a bug or a damaged database: answer with what
        // the columns give rather than failing the whole search.
        Err(e) => tracing::warn!(error = %e, "stored DICOM JSON is not an object; ignored"),
    }
}

/// Adds to `existing` (a stored DICOM JSON object) the attributes of `new` it
/// lacks, so the first instance's values win and later instances fill gaps.
/// Returns `None` when nothing changes.
pub(crate) fn fill_json(existing: &str, new: &str) -> Option<String> {
    let mut old: Map<String, Value> = serde_json::from_str(existing).unwrap_or_default();
    let new: Map<String, Value> = serde_json::from_str(new).ok()?;
    let mut changed = false;
    for (k, v) in new {
        if !old.contains_key(&k) {
            old.insert(k, v);
            changed = true;
        }
    }
    changed.then(|| Value::Object(old).to_string())
}

// ---- normalisation of search columns, applied alike at ingest and query time ----

/// DA as 'YYYYMMDD': drops the separators of the old ACR-NEMA form `YYYY.MM.DD`.
pub(crate) fn normalize_date(v: &str) -> String {
    v.trim().chars().filter(|c| c.is_ascii_digit()).collect()
}

/// TM as 'HHMMSS[.ffffff]': drops ':' and pads missing minutes/seconds with zeros
/// (so '0930' and '093000' compare equal and ranges compare lexically).
pub(crate) fn normalize_time(v: &str) -> String {
    let v: String = v.trim().chars().filter(|c| *c != ':').collect();
    if v.is_empty() {
        return v;
    }
    let (whole, fraction) = match v.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (v.as_str(), None),
    };
    let mut out = format!("{whole:0<6}");
    if let Some(f) = fraction.filter(|f| !f.is_empty()) {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// The folded Alphabetic group of a PN, trailing empty components removed:
/// the column single-value and wildcard matching compare against.
pub(crate) fn person_name_fold(pn: &str) -> String {
    let alphabetic = pn.split('=').next().unwrap_or("");
    fold(alphabetic.trim_end_matches([' ', '^']))
}

/// All words of a PN (every group and component), folded, as " w1 w2 " so that
/// `LIKE '% w%'` is a word-prefix match.
pub(crate) fn person_name_words_column(pn: &str) -> String {
    fold_person_name_words(pn)
}

/// The LIKE pattern of a PN query value: folded, components the query leaves
/// empty in the middle match anything.
fn person_name_pattern(v: &str) -> String {
    let folded = person_name_fold(v);
    folded
        .split('^')
        .map(|c| {
            if c.is_empty() {
                "%".to_owned()
            } else {
                like(c)
            }
        })
        .collect::<Vec<_>>()
        .join("^")
}

/// A DICOM wildcard pattern as a LIKE pattern for `ESCAPE '\'`, the escape
/// character every query here declares.
fn like(pattern: &str) -> String {
    wildcard_to_like(pattern, '\\')
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn like_escapes_sql_wildcards() {
        assert_eq!(like("a*b?c%d_e\\"), "a%b_c\\%d\\_e\\\\");
    }

    #[test]
    fn like_prefix_stops_at_first_wildcard() {
        assert_eq!(like_prefix("ив\\%ан%ов"), "ив%ан");
        assert_eq!(like_prefix("%x"), "");
        assert_eq!(like_prefix("a_b"), "a");
    }

    #[test]
    fn times_pad_and_keep_fractions() {
        assert_eq!(normalize_time("0930"), "093000");
        assert_eq!(normalize_time("09:30:15.25"), "093015.25");
        assert_eq!(normalize_time(""), "");
    }

    #[test]
    fn person_names_fold_and_split() {
        assert_eq!(person_name_fold("Иванов^Сергей^^"), "иванов^сергей");
        assert_eq!(person_name_fold("Yamada^Tarou=山田^太郎"), "yamada^tarou");
        assert_eq!(
            person_name_words_column("Әбілқасымова^Гүлнұр Серікқызы"),
            " әбілқасымова гүлнұр серікқызы "
        );
        assert_eq!(person_name_pattern("^Сергей"), "%^сергей");
    }
}
