//! C-FIND SCP (PS3.4 C.4.1) on the Patient Root and Study Root information
//! models, answered by the same index and matching rules as QIDO-RS.
//!
//! The identifier is read in its own character set (dicom-rs switches decoders
//! at Specific Character Set) and translated into an
//! [`aina_dicomweb::qido::QidoQuery`]: each key with a value is a matching key
//! ([`aina_dicomweb::qido::attribute_match`], PS3.4 C.2.2.2), each key is a
//! return key. Answers are built from the index's DICOM JSON rows and always
//! written in UTF-8 (ISO_IR 192, with Specific Character Set set).
//!
//! PATIENT level has no table of its own: studies are searched and grouped by
//! PatientID. Left out: sequence matching (sequence keys are returned empty),
//! relational queries (PS3.4 C.4.1.2.2, levels are not checked for unique keys
//! above them), and fuzzy person-name matching.

use aina_dicomweb::qido::{IncludeFields, QidoError, QidoQuery, QueryLevel, attribute_match};
use dicom_core::header::Header;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde_json::{Map, Value};

use super::status::{self, Status};
use crate::index::{QidoRow, Scope};

/// The most matches one C-FIND returns; beyond, the query is refused with A700
/// after the first matches so that the user narrows it rather than misses some.
pub const MAX_MATCHES: u32 = 10_000;

/// The answer to one C-FIND: each match's identifier, encoded in the
/// presentation context's transfer syntax, the pending status they go with, and
/// the final status.
#[derive(Debug)]
pub struct FindAnswer {
    pub matches: Vec<Vec<u8>>,
    pub pending: u16,
    pub last: Status,
}

/// A query level of the Query/Retrieve models (0008,0052).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Patient,
    Study,
    Series,
    Image,
}

impl Level {
    fn parse(model: &str, value: &str) -> Option<Level> {
        let level = match value {
            "PATIENT" => Level::Patient,
            "STUDY" => Level::Study,
            "SERIES" => Level::Series,
            "IMAGE" => Level::Image,
            _ => return None,
        };
        // Study Root has no PATIENT level (PS3.4 C.6.2).
        let allowed = level != Level::Patient
            || model == uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND;
        allowed.then_some(level)
    }

    fn name(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }

    fn qido(self) -> QueryLevel {
        match self {
            Level::Patient | Level::Study => QueryLevel::Study,
            Level::Series => QueryLevel::Series,
            Level::Image => QueryLevel::Instance,
        }
    }
}

/// A C-FIND request translated: the level, the index query, and the keys to
/// return with the VR they were asked with.
#[derive(Debug)]
struct Request {
    level: Level,
    query: QidoQuery,
    return_keys: Vec<(Tag, VR)>,
}

/// Attributes of the identifier that are not keys.
fn is_not_a_key(tag: Tag) -> bool {
    tag == tags::SPECIFIC_CHARACTER_SET || tag == tags::QUERY_RETRIEVE_LEVEL || tag.element() == 0
}

/// Reads and translates the identifier. `Err` is the C-FIND status to answer.
fn parse_request(model: &str, transfer_syntax: &str, identifier: &[u8]) -> Result<Request, Status> {
    let ts = TransferSyntaxRegistry.get(transfer_syntax).ok_or_else(|| {
        Status::with_comment(status::CANNOT_UNDERSTAND, "unknown transfer syntax")
    })?;
    let obj = InMemDicomObject::read_dataset_with_ts(identifier, ts).map_err(|e| {
        Status::with_comment(
            status::CANNOT_UNDERSTAND,
            format!("cannot read the identifier: {e}"),
        )
    })?;
    let level_value = obj
        .element_opt(tags::QUERY_RETRIEVE_LEVEL)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_matches(['\0', ' ']).to_ascii_uppercase())
        .unwrap_or_default();
    let level = Level::parse(model, &level_value).ok_or_else(|| {
        Status::with_comment(
            status::DATA_SET_MISMATCH,
            format!("QueryRetrieveLevel {level_value:?} is not valid for this model"),
        )
    })?;

    let mut matches = Vec::new();
    let mut return_keys = Vec::new();
    for element in obj.iter() {
        let (tag, vr) = (element.tag(), element.vr());
        if is_not_a_key(tag) {
            continue;
        }
        return_keys.push((tag, vr));
        if vr == VR::SQ {
            continue;
        }
        let value = element.to_str().map(|v| v.into_owned()).unwrap_or_default();
        let value = value.trim_matches(['\0', ' ']);
        if value.is_empty() {
            continue;
        }
        match attribute_match(tag, vr, value) {
            Ok(m) => matches.push(m),
            // Binary keys cannot be matched: returned, not matched (as keys the
            // index cannot match on; PS3.4 C.2.2.1 lets an SCP ignore them).
            Err(QidoError::UnsupportedMatching { .. }) => {}
            Err(e) => {
                return Err(Status::with_comment(
                    status::DATA_SET_MISMATCH,
                    e.to_string(),
                ));
            }
        }
    }
    let query = QidoQuery {
        level: level.qido(),
        matches,
        include: IncludeFields::Tags(return_keys.iter().map(|(t, _)| *t).collect()),
        // One more than returned, to know whether there are more.
        limit: MAX_MATCHES + 1,
        offset: 0,
        fuzzy: false,
    };
    Ok(Request {
        level,
        query,
        return_keys,
    })
}

/// What the audit log keeps of a C-FIND identifier.
pub struct AuditKeys {
    pub patient_id: Option<String>,
    pub study_uid: Option<String>,
    /// The non-empty keys, `(gggg,eeee)=value; …`.
    pub detail: String,
}

/// The keys a C-FIND asked with, for the audit log (the log is PHI-safe
/// storage; the process log never sees them).
pub fn audit_keys(transfer_syntax: &str, identifier: &[u8]) -> AuditKeys {
    let mut keys = AuditKeys {
        patient_id: None,
        study_uid: None,
        detail: String::new(),
    };
    let Some(ts) = TransferSyntaxRegistry.get(transfer_syntax) else {
        return keys;
    };
    let Ok(obj) = dicom_object::InMemDicomObject::read_dataset_with_ts(identifier, ts) else {
        keys.detail = "unreadable identifier".to_owned();
        return keys;
    };
    let mut parts = Vec::new();
    for element in &obj {
        let Ok(value) = element.to_str() else {
            continue;
        };
        let value = value.trim_end_matches(['\0', ' ']).to_owned();
        if value.is_empty() {
            continue;
        }
        let tag = element.header().tag;
        if tag == tags::PATIENT_ID {
            keys.patient_id = Some(value.clone());
        } else if tag == tags::STUDY_INSTANCE_UID {
            keys.study_uid = Some(value.clone());
        }
        parts.push(format!(
            "({:04X},{:04X})={}",
            tag.0,
            tag.1,
            value.chars().take(128).collect::<String>()
        ));
    }
    keys.detail = parts.join("; ");
    keys
}

/// Answers one C-FIND-RQ on `model` (an abstract syntax of
/// [`super::presentation::FIND_SOP_CLASSES`]).
#[tracing::instrument(skip_all, fields(model))]
pub async fn find(
    index: &dyn crate::index::Index,
    our_ae_title: &str,
    model: &str,
    transfer_syntax: &str,
    identifier: &[u8],
) -> FindAnswer {
    let request = match parse_request(model, transfer_syntax, identifier) {
        Ok(r) => r,
        Err(last) => {
            return FindAnswer {
                matches: Vec::new(),
                pending: status::PENDING,
                last,
            };
        }
    };
    let outcome = match index.search(&request.query, &Scope::default()).await {
        Ok(o) => o,
        Err(crate::index::IndexError::Invalid(reason)) => {
            return FindAnswer {
                matches: Vec::new(),
                pending: status::PENDING,
                last: Status::with_comment(status::DATA_SET_MISMATCH, reason),
            };
        }
        Err(e) => {
            tracing::error!(error = &e as &dyn std::error::Error, "C-FIND search failed");
            return FindAnswer {
                matches: Vec::new(),
                pending: status::PENDING,
                last: Status::with_comment(status::OUT_OF_RESOURCES, "index failed"),
            };
        }
    };
    let mut rows = outcome.rows;
    let mut last = Status::ok(status::SUCCESS);
    if rows.len() > MAX_MATCHES as usize {
        rows.truncate(MAX_MATCHES as usize);
        last = Status::with_comment(
            status::OUT_OF_RESOURCES,
            format!("more than {MAX_MATCHES} matches; narrow the query"),
        );
    }
    if request.level == Level::Patient {
        rows = group_by_patient(rows);
    }
    // Encoding is CPU work proportional to the matches: off the async threads.
    let ts = transfer_syntax.to_owned();
    let ae = our_ae_title.to_owned();
    let encoded = tokio::task::spawn_blocking(move || {
        rows.iter()
            .map(|row| encode(&answer(&request, row, &ae), &ts))
            .collect::<Result<Vec<_>, String>>()
    })
    .await;
    let matches = match encoded {
        Ok(Ok(m)) => m,
        Ok(Err(reason)) => {
            tracing::error!(reason, "C-FIND answer cannot be encoded");
            return FindAnswer {
                matches: Vec::new(),
                pending: status::PENDING,
                last: Status::with_comment(status::OUT_OF_RESOURCES, "cannot encode the answer"),
            };
        }
        Err(e) => {
            tracing::error!(error = &e as &dyn std::error::Error, "C-FIND task failed");
            return FindAnswer {
                matches: Vec::new(),
                pending: status::PENDING,
                last: Status::with_comment(status::OUT_OF_RESOURCES, "search task failed"),
            };
        }
    };
    tracing::info!(matches = matches.len(), "C-FIND answered");
    FindAnswer {
        matches,
        // PS3.4 C.4.1.1.4: FF01 tells the SCU some optional keys were not matched.
        pending: if outcome.unsupported.is_empty() {
            status::PENDING
        } else {
            status::PENDING_KEYS_UNSUPPORTED
        },
        last,
    }
}

fn key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

fn first_string(row: &QidoRow, tag: Tag) -> Option<String> {
    row.get(&key(tag))?
        .get("Value")?
        .get(0)?
        .as_str()
        .map(str::to_owned)
}

fn first_int(row: &QidoRow, tag: Tag) -> i64 {
    row.get(&key(tag))
        .and_then(|v| v.get("Value")?.get(0)?.as_i64())
        .unwrap_or(0)
}

/// Study rows grouped by PatientID, first row of each patient kept (the index
/// orders by study date, newest first), with the patient's counts
/// (NumberOfPatientRelatedStudies/Series/Instances, PS3.4 C.6.1.1.2) added.
fn group_by_patient(rows: Vec<QidoRow>) -> Vec<QidoRow> {
    let mut patients: Vec<(Option<String>, QidoRow, [i64; 3])> = Vec::new();
    for row in rows {
        let id = first_string(&row, tags::PATIENT_ID);
        let counts = [
            1,
            first_int(&row, tags::NUMBER_OF_STUDY_RELATED_SERIES),
            first_int(&row, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        ];
        match patients.iter_mut().find(|(p, _, _)| *p == id) {
            Some((_, _, total)) => {
                for (t, c) in total.iter_mut().zip(counts) {
                    *t += c;
                }
            }
            None => patients.push((id, row, counts)),
        }
    }
    patients
        .into_iter()
        .map(|(_, mut row, [studies, series, instances])| {
            for (tag, n) in [
                (tags::NUMBER_OF_PATIENT_RELATED_STUDIES, studies),
                (tags::NUMBER_OF_PATIENT_RELATED_SERIES, series),
                (tags::NUMBER_OF_PATIENT_RELATED_INSTANCES, instances),
            ] {
                row.insert(key(tag), serde_json::json!({"vr": "IS", "Value": [n]}));
            }
            row
        })
        .collect()
}

/// The response identifier of one match: the requested keys, filled from the
/// row where it has them and empty otherwise (PS3.4 C.4.1.1.3.2).
fn answer(request: &Request, row: &QidoRow, our_ae_title: &str) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        PrimitiveValue::from("ISO_IR 192"),
    ));
    obj.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(request.level.name()),
    ));
    for &(tag, vr) in &request.return_keys {
        let element = if tag == tags::RETRIEVE_AE_TITLE {
            Some(DataElement::new(
                tag,
                VR::AE,
                PrimitiveValue::from(our_ae_title),
            ))
        } else {
            row.get(&key(tag)).and_then(|v| from_json(tag, v))
        };
        obj.put(element.unwrap_or_else(|| DataElement::new(tag, vr, PrimitiveValue::Empty)));
    }
    obj
}

/// One attribute of DICOM JSON (PS3.18 F.2) back as a data element; `None` when
/// it cannot be (a BulkDataURI, say): the key is then returned empty.
fn from_json(tag: Tag, value: &Value) -> Option<dicom_object::mem::InMemElement> {
    let mut map = Map::new();
    map.insert(key(tag), value.clone());
    let mut obj: InMemDicomObject = dicom_json::from_value(Value::Object(map)).ok()?;
    obj.take(tag)
}

fn encode(obj: &InMemDicomObject, transfer_syntax: &str) -> Result<Vec<u8>, String> {
    let ts = TransferSyntaxRegistry
        .get(transfer_syntax)
        .ok_or_else(|| format!("unknown transfer syntax {transfer_syntax}"))?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aina_dicomweb::qido::MatchKind;

    fn encode_identifier(obj: &InMemDicomObject, ts: &str) -> Vec<u8> {
        encode(obj, ts).unwrap()
    }

    #[test]
    fn translates_an_identifier_in_its_character_set() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::from("ISO_IR 144"),
        ));
        obj.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from("STUDY"),
        ));
        obj.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from("Иванов*"),
        ));
        obj.put(DataElement::new(
            tags::STUDY_DATE,
            VR::DA,
            PrimitiveValue::from("20240101-"),
        ));
        obj.put(DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::Empty,
        ));
        let bytes = encode_identifier(&obj, uids::IMPLICIT_VR_LITTLE_ENDIAN);
        // ISO_IR 144 is one byte per Cyrillic letter: the name was not written as UTF-8.
        assert!(!bytes.windows(2).any(|w| w == "И".as_bytes()));
        let r = parse_request(
            uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
            &bytes,
        )
        .unwrap();
        assert_eq!(r.level, Level::Study);
        assert_eq!(r.query.matches.len(), 2);
        let name = r.query.matches.iter().find(|m| m.tag == tags::PATIENT_NAME);
        assert_eq!(name.unwrap().kind, MatchKind::Wildcard("Иванов*".into()));
        assert_eq!(r.return_keys.len(), 3);
    }

    #[test]
    fn refuses_bad_levels_and_values() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from("PATIENT"),
        ));
        let bytes = encode_identifier(&obj, uids::EXPLICIT_VR_LITTLE_ENDIAN);
        let err = parse_request(
            uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
            &bytes,
        )
        .unwrap_err();
        assert_eq!(err.code, status::DATA_SET_MISMATCH);
        obj.put(DataElement::new(
            tags::STUDY_DATE,
            VR::DA,
            PrimitiveValue::from("2024*"),
        ));
        let bytes = encode_identifier(&obj, uids::EXPLICIT_VR_LITTLE_ENDIAN);
        let err = parse_request(
            uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
            &bytes,
        )
        .unwrap_err();
        assert_eq!(err.code, status::DATA_SET_MISMATCH);
        let err = parse_request(
            uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
            &[0xff; 7],
        )
        .unwrap_err();
        assert_eq!(err.code, status::CANNOT_UNDERSTAND);
    }

    #[test]
    fn answers_fill_requested_keys_in_utf8() {
        let request = Request {
            level: Level::Study,
            query: QidoQuery {
                level: QueryLevel::Study,
                matches: Vec::new(),
                include: IncludeFields::Defaults,
                limit: 1,
                offset: 0,
                fuzzy: false,
            },
            return_keys: vec![
                (tags::PATIENT_NAME, VR::PN),
                (tags::STUDY_INSTANCE_UID, VR::UI),
                (tags::MODALITIES_IN_STUDY, VR::CS),
                (tags::ACCESSION_NUMBER, VR::SH),
                (tags::RETRIEVE_AE_TITLE, VR::AE),
            ],
        };
        let row: QidoRow = serde_json::from_str(
            r#"{"00100010":{"vr":"PN","Value":[{"Alphabetic":"Қасымов^Ғалым"}]},
                "0020000D":{"vr":"UI","Value":["2.25.7"]},
                "00080061":{"vr":"CS","Value":["DX","MG"]}}"#,
        )
        .unwrap();
        let obj = answer(&request, &row, "AINA");
        let bytes = encode(&obj, uids::EXPLICIT_VR_LITTLE_ENDIAN).unwrap();
        assert!(
            bytes
                .windows("Қасымов".len())
                .any(|w| w == "Қасымов".as_bytes())
        );
        let back = InMemDicomObject::read_dataset_with_ts(
            &bytes[..],
            TransferSyntaxRegistry
                .get(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .unwrap(),
        )
        .unwrap();
        let s = |t| back.element(t).unwrap().to_str().unwrap().into_owned();
        assert_eq!(s(tags::PATIENT_NAME), "Қасымов^Ғалым");
        assert_eq!(s(tags::MODALITIES_IN_STUDY), "DX\\MG");
        assert_eq!(s(tags::ACCESSION_NUMBER), "");
        assert_eq!(s(tags::RETRIEVE_AE_TITLE), "AINA");
        assert_eq!(s(tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
    }

    #[test]
    fn patients_are_grouped_with_counts() {
        let row = |id: &str, series: i64| -> QidoRow {
            serde_json::from_value(serde_json::json!({
                "00100020": {"vr": "LO", "Value": [id]},
                "00201206": {"vr": "IS", "Value": [series]},
                "00201208": {"vr": "IS", "Value": [series * 2]},
            }))
            .unwrap()
        };
        let grouped = group_by_patient(vec![row("A", 1), row("B", 2), row("A", 3)]);
        assert_eq!(grouped.len(), 2);
        assert_eq!(
            first_int(&grouped[0], tags::NUMBER_OF_PATIENT_RELATED_STUDIES),
            2
        );
        assert_eq!(
            first_int(&grouped[0], tags::NUMBER_OF_PATIENT_RELATED_SERIES),
            4
        );
        assert_eq!(
            first_int(&grouped[0], tags::NUMBER_OF_PATIENT_RELATED_INSTANCES),
            8
        );
    }
}
