//! DICOM JSON (PS3.18 Annex F) for WADO-RS metadata, with large binary values replaced
//! by `BulkDataURI`s (F.2.6) that point back into the instance.
//!
//! Owns: which elements become bulk data, the bulk data path syntax and its inverse,
//! and the Specific Character Set of the output. Each element's own encoding is left
//! to dicom-json. Leaves out serving the bulk data (the server reads the element found
//! by [`find_bulk_element`]).
//!
//! Bulk data paths, relative to `bulk_base`: `TTTTTTTT` (8 uppercase hex digits) for
//! a top-level element, and `SSSSSSSS/N/TTTTTTTT` inside sequences, where `N` is the
//! 1-based item number (as PS3.19 numbers items), nesting as deep as the data.
//!
//! Character set: JSON is always UTF-8 (PS3.18 F.2) and dicom-object has already
//! decoded every string from the instance's character set, so a Specific Character Set
//! (0008,0005) present in the data is written as `ISO_IR 192`; copying the original
//! term would tell a client that converts back to binary DICOM the wrong encoding.
//! Person names become `{"Alphabetic", "Ideographic", "Phonetic"}` objects (F.2.2),
//! empty groups omitted, as dicom-json does.

use dicom_core::header::Header;
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;
use serde_json::{Map, Value as Json, json};

/// Errors producing DICOM JSON or resolving a bulk data path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// dicom-json could not serialise an element (an inconsistent value).
    #[error("serialising element {tag} to DICOM JSON failed")]
    Serialize {
        tag: String,
        #[source]
        source: serde_json::Error,
    },
    /// A bulk data path does not follow the syntax of this module.
    #[error("invalid bulk data path `{path}`: {reason}")]
    InvalidBulkPath { path: String, reason: &'static str },
}

/// One step of a bulk data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkPathStep {
    /// An element of the current data set.
    Element(Tag),
    /// The 1-based item of the sequence named by the preceding step.
    Item(usize),
}

/// Deepest sequence nesting accepted in a bulk data path.
const MAX_PATH_DEPTH: usize = 16;

fn tag_hex(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.0, tag.1)
}

/// Whether an element is sent as bulk data: pixel data of any kind always, other
/// binary VRs when longer than `inline_limit` bytes.
fn is_bulk(tag: Tag, vr: VR, value: &PrimitiveValue, inline_limit: usize) -> bool {
    matches!(
        tag,
        tags::PIXEL_DATA | tags::FLOAT_PIXEL_DATA | tags::DOUBLE_FLOAT_PIXEL_DATA
    ) || (matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    ) && value.calculate_byte_len() > inline_limit)
}

fn data_set(
    obj: &InMemDicomObject,
    bulk_base: &str,
    prefix: &str,
    inline_limit: usize,
) -> Result<Map<String, Json>, JsonError> {
    let mut map = Map::new();
    for elem in obj {
        let tag = elem.tag();
        let key = tag_hex(tag);
        let bulk = || json!({ "vr": elem.vr().to_string(), "BulkDataURI": format!("{bulk_base}/{prefix}{key}") });
        let value = match elem.value() {
            Value::Sequence(seq) => {
                let mut items = Vec::with_capacity(seq.items().len());
                for (i, item) in seq.items().iter().enumerate() {
                    let item_prefix = format!("{prefix}{key}/{}/", i + 1);
                    items.push(Json::Object(data_set(
                        item,
                        bulk_base,
                        &item_prefix,
                        inline_limit,
                    )?));
                }
                let mut m = Map::new();
                m.insert("vr".into(), "SQ".into());
                if !items.is_empty() {
                    m.insert("Value".into(), Json::Array(items));
                }
                Json::Object(m)
            }
            // Encapsulated pixel data: dicom-json would drop its value silently.
            Value::PixelSequence(_) => bulk(),
            Value::Primitive(v) if is_bulk(tag, elem.vr(), v, inline_limit) => bulk(),
            Value::Primitive(PrimitiveValue::Empty) => json!({ "vr": elem.vr().to_string() }),
            Value::Primitive(_) if tag == tags::SPECIFIC_CHARACTER_SET => {
                json!({ "vr": "CS", "Value": ["ISO_IR 192"] })
            }
            Value::Primitive(_) => {
                dicom_json::to_value(elem).map_err(|source| JsonError::Serialize {
                    tag: key.clone(),
                    source,
                })?
            }
        };
        map.insert(key, value);
    }
    Ok(map)
}

/// Serialises `obj` (the data set, without file meta) as a DICOM JSON object for
/// WADO-RS metadata (PS3.18 §10.4.1.1.2, Annex F).
///
/// Pixel Data, Float Pixel Data and Double Float Pixel Data, native or encapsulated,
/// and every other OB/OD/OF/OL/OV/OW/UN value longer than `inline_limit` bytes become
/// `{"vr": …, "BulkDataURI": "{bulk_base}/{path}"}` (path syntax in the module docs;
/// a trailing `/` of `bulk_base` is ignored). Shorter binary values are `InlineBinary`.
pub fn to_dicom_json(
    obj: &InMemDicomObject,
    bulk_base: &str,
    inline_limit: usize,
) -> Result<Json, JsonError> {
    data_set(obj, bulk_base.trim_end_matches('/'), "", inline_limit).map(Json::Object)
}

/// Parses a bulk data path (the part of a `BulkDataURI` after the bulk base; a leading
/// `/` is ignored) into steps: `Element`, then pairs of `Item`, `Element`.
pub fn parse_bulk_path(path: &str) -> Result<Vec<BulkPathStep>, JsonError> {
    let err = |reason| JsonError::InvalidBulkPath {
        path: path.chars().take(200).collect(),
        reason,
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.len() > 2 * MAX_PATH_DEPTH + 1 {
        return Err(err("nested too deeply"));
    }
    if segments.len().is_multiple_of(2) {
        return Err(err("must end with a tag"));
    }
    let mut steps = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        if i.is_multiple_of(2) {
            if segment.len() != 8 || !segment.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err("expected a tag of 8 hexadecimal digits"));
            }
            let group = u16::from_str_radix(&segment[..4], 16).map_err(|_| err("bad tag"))?;
            let element = u16::from_str_radix(&segment[4..], 16).map_err(|_| err("bad tag"))?;
            steps.push(BulkPathStep::Element(Tag(group, element)));
        } else {
            let item = segment
                .parse::<usize>()
                .ok()
                .filter(|&n| n >= 1 && segment.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| err("expected an item number from 1"))?;
            steps.push(BulkPathStep::Item(item));
        }
    }
    Ok(steps)
}

/// The element a bulk data path (from [`parse_bulk_path`]) names in `obj`, if any.
pub fn find_bulk_element<'a>(
    obj: &'a InMemDicomObject,
    path: &[BulkPathStep],
) -> Option<&'a InMemElement> {
    let mut current = obj;
    let mut steps = path.iter();
    loop {
        let BulkPathStep::Element(tag) = steps.next()? else {
            return None;
        };
        let elem = current.get(*tag)?;
        match steps.next() {
            None => return Some(elem),
            Some(BulkPathStep::Item(n)) => {
                current = elem.value().items()?.get(n.checked_sub(1)?)?
            }
            Some(BulkPathStep::Element(_)) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::value::DataSetSequence;
    use rstest::rstest;
    use std::path::PathBuf;

    fn corpus(name: &str) -> Option<InMemDicomObject> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/corpus/files")
            .join(name);
        if !path.exists() {
            println!("skipping: {} not found", path.display());
            return None;
        }
        let file = dicom_object::open_file(&path).expect("corpus file opens");
        Some(file.into_inner())
    }

    /// Every BulkDataURI in `json`, with its path relative to `base`.
    fn bulk_uris(json: &Json, base: &str, out: &mut Vec<String>) {
        match json {
            Json::Object(m) => {
                if let Some(Json::String(uri)) = m.get("BulkDataURI") {
                    out.push(uri.strip_prefix(base).expect("uri under base").to_owned());
                }
                m.values().for_each(|v| bulk_uris(v, base, out));
            }
            Json::Array(a) => a.iter().for_each(|v| bulk_uris(v, base, out)),
            _ => {}
        }
    }

    /// Each bulk URI resolves to a binary or pixel element of `obj`.
    fn check_bulk_round_trip(obj: &InMemDicomObject, json: &Json, base: &str) -> usize {
        let mut uris = Vec::new();
        bulk_uris(json, base, &mut uris);
        for uri in &uris {
            let steps = parse_bulk_path(uri).expect("path parses");
            let elem = find_bulk_element(obj, &steps).unwrap_or_else(|| panic!("{uri} resolves"));
            assert!(
                matches!(
                    elem.vr(),
                    VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
                ),
                "{uri} is {:?}",
                elem.vr()
            );
        }
        uris.len()
    }

    const BASE: &str = "http://h/dicomweb/studies/1/series/2/instances/3/bulk";

    #[test]
    fn ct_small() {
        let Some(obj) = corpus("pydicom__CT_small.dcm") else {
            return;
        };
        let json = to_dicom_json(&obj, &format!("{BASE}/"), 1024).unwrap();
        assert_eq!(json["7FE00010"]["BulkDataURI"], format!("{BASE}/7FE00010"));
        assert_eq!(json["00100010"]["vr"], "PN");
        assert!(json["00100010"]["Value"][0]["Alphabetic"].is_string());
        assert_eq!(json["00080060"]["Value"][0], "CT");
        assert!(check_bulk_round_trip(&obj, &json, &format!("{BASE}/")) >= 1);
    }

    #[test]
    fn encapsulated_pixel_data_is_bulk() {
        let Some(obj) = corpus("pydicom-data__emri_small_RLE.dcm") else {
            return;
        };
        let json = to_dicom_json(&obj, BASE, 1024).unwrap();
        assert_eq!(json["7FE00010"]["BulkDataURI"], format!("{BASE}/7FE00010"));
        assert!(json["7FE00010"].get("InlineBinary").is_none());
        check_bulk_round_trip(&obj, &json, &format!("{BASE}/"));
    }

    #[test]
    fn cyrillic_name_survives_as_utf8() {
        let Some(obj) = corpus("pydicom__chrRuss.dcm") else {
            return;
        };
        let json = to_dicom_json(&obj, BASE, 1024).unwrap();
        let name = json["00100010"]["Value"][0]["Alphabetic"].as_str().unwrap();
        assert!(name.contains("Люкceмбypг"), "{name}");
        assert_eq!(
            json["00080005"],
            json!({"vr": "CS", "Value": ["ISO_IR 192"]})
        );
        let text = serde_json::to_string(&json).unwrap();
        assert!(text.contains("Люкceмбypг"));
    }

    #[test]
    fn overlays_and_large_binaries_are_bulk() {
        let Some(obj) = corpus("pydicom-data__MR-SIEMENS-DICOM-WithOverlays.dcm") else {
            return;
        };
        let json = to_dicom_json(&obj, BASE, 64).unwrap();
        assert_eq!(json["60003000"]["BulkDataURI"], format!("{BASE}/60003000"));
        let count = check_bulk_round_trip(&obj, &json, &format!("{BASE}/"));
        assert!(count >= 2, "{count}");
        // With a huge inline limit only pixel data stays bulk.
        let json = to_dicom_json(&obj, BASE, usize::MAX).unwrap();
        assert!(json["60003000"]["InlineBinary"].is_string());
        assert!(json["7FE00010"]["BulkDataURI"].is_string());
    }

    #[test]
    fn whole_corpus_serialises() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/files");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            println!("skipping: {} not found", dir.display());
            return;
        };
        for entry in entries.flatten() {
            let Ok(file) = dicom_object::open_file(entry.path()) else {
                continue;
            };
            let obj = file.into_inner();
            let json = to_dicom_json(&obj, BASE, 256)
                .unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
            check_bulk_round_trip(&obj, &json, &format!("{BASE}/"));
        }
    }

    fn nested() -> InMemDicomObject {
        let mut inner = InMemDicomObject::new_empty();
        inner.put(InMemElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(vec![1u8, 2, 3, 4]),
        ));
        inner.put(InMemElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(2u16),
        ));
        let mut obj = InMemDicomObject::new_empty();
        obj.put(InMemElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::from("ISO_IR 144"),
        ));
        obj.put(InMemElement::new(
            tags::ICON_IMAGE_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![InMemDicomObject::new_empty(), inner]),
        ));
        obj.put(InMemElement::new(
            tags::REFERENCED_IMAGE_SEQUENCE,
            VR::SQ,
            DataSetSequence::<InMemDicomObject>::from(vec![]),
        ));
        obj.put(InMemElement::new(
            Tag(0x0009, 0x1001),
            VR::UN,
            PrimitiveValue::from(vec![9u8; 8]),
        ));
        obj
    }

    #[test]
    fn nested_paths() {
        let obj = nested();
        let json = to_dicom_json(&obj, "b", 4).unwrap();
        assert_eq!(
            json["00880200"]["Value"][1]["7FE00010"],
            json!({"vr": "OW", "BulkDataURI": "b/00880200/2/7FE00010"})
        );
        assert_eq!(
            json["00880200"]["Value"][1]["00280010"],
            json!({"vr": "US", "Value": [2]})
        );
        assert_eq!(json["00081140"], json!({"vr": "SQ"}));
        assert_eq!(json["00091001"]["BulkDataURI"], "b/00091001");
        assert_eq!(json["00080005"]["Value"][0], "ISO_IR 192");
        let json = to_dicom_json(&obj, "b", 8).unwrap();
        assert_eq!(json["00091001"]["InlineBinary"], "CQkJCQkJCQk=");
        let steps = parse_bulk_path("00880200/2/7FE00010").unwrap();
        assert_eq!(
            steps,
            vec![
                BulkPathStep::Element(tags::ICON_IMAGE_SEQUENCE),
                BulkPathStep::Item(2),
                BulkPathStep::Element(tags::PIXEL_DATA)
            ]
        );
        assert_eq!(
            find_bulk_element(&obj, &steps).unwrap().tag(),
            tags::PIXEL_DATA
        );
        assert!(
            find_bulk_element(&obj, &parse_bulk_path("00880200/3/7FE00010").unwrap()).is_none()
        );
        assert!(
            find_bulk_element(&obj, &parse_bulk_path("00880200/1/7FE00010").unwrap()).is_none()
        );
        assert!(find_bulk_element(&obj, &parse_bulk_path("/00091001").unwrap()).is_some());
    }

    #[rstest]
    #[case("")]
    #[case("7FE0001")]
    #[case("7FE0001G")]
    #[case("00880200/1")]
    #[case("00880200/0/7FE00010")]
    #[case("00880200/+1/7FE00010")]
    #[case("00880200/x/7FE00010")]
    #[case("00880200//7FE00010")]
    fn bad_paths(#[case] path: &str) {
        assert!(matches!(
            parse_bulk_path(path),
            Err(JsonError::InvalidBulkPath { .. })
        ));
    }

    #[test]
    fn deep_paths_are_refused() {
        let deep = vec!["00880200"; 40].join("/1/");
        assert!(parse_bulk_path(&deep).is_err());
    }
}
