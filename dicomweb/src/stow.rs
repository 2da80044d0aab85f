//! The Store Instances Response (PS3.18 §10.5.3 and Annex I): what was stored, what
//! failed and why, as DICOM JSON or PS3.19 Native DICOM Model XML, and the HTTP status.
//!
//! Owns the response model and its encodings. Leaves out deciding the per-instance
//! outcome (ingest) and writing the HTTP response (the server).
//!
//! Free-text detail: PS3.18 Annex I has no attribute for a human-readable reason, so
//! the detail goes into Error Comment (0000,0902) of the item, the attribute DIMSE
//! uses for the same purpose. It is not truncated to the 64 characters of its VR (LO):
//! in JSON and XML the length is harmless and the whole reason is more useful.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;

/// Failure Reason (0008,1197) values (PS3.18 Table I.2-2, PS3.4 Table B.2-1).
pub mod failure {
    /// A7xx: refused, out of resources (storage full, memory).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// A9xx: the data set does not match the SOP Class, e.g. a required attribute such
    /// as the SOP Instance UID is missing, or the Study Instance UID does not match the
    /// study of the request URL (PS3.18 §10.5.2).
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xA900;
    /// Cxxx: cannot understand, e.g. the part is not a parseable DICOM instance or was
    /// truncated.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// C122: referenced transfer syntax not supported.
    pub const TRANSFER_SYNTAX_NOT_SUPPORTED: u16 = 0xC122;
    /// 0110: processing failure (internal error).
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    /// 0111: duplicate SOP Instance: a different object under an existing SOP Instance
    /// UID (PS3.7 C.4.1.1.4), refused by the conflict policy.
    pub const DUPLICATE_SOP_INSTANCE: u16 = 0x0111;
    /// 0122: referenced SOP Class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
}

/// Warning Reason (0008,1196) values (PS3.18 Table I.2-1, PS3.4 Table B.2-1).
pub mod warning {
    /// B000: coercion of data elements (values modified during storage).
    pub const COERCION_OF_DATA_ELEMENTS: u16 = 0xB000;
    /// B006: elements discarded.
    pub const ELEMENTS_DISCARDED: u16 = 0xB006;
    /// B007: data set does not match SOP Class, stored anyway.
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xB007;
}

/// An instance that was stored (an item of Referenced SOP Sequence (0008,1199)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferencedInstance {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// Where the instance can be retrieved (Retrieve URL (0008,1190)).
    pub retrieve_url: Option<String>,
    /// Set when stored with a warning (see [`warning`]).
    pub warning_reason: Option<u16>,
    /// Human-readable detail of the warning (Error Comment, see the module docs).
    pub warning_detail: Option<String>,
}

/// An instance that was not stored (an item of Failed SOP Sequence (0008,1198)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedInstance {
    /// Unknown when the part could not be parsed.
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    /// See [`failure`].
    pub failure_reason: u16,
    /// Human-readable reason (Error Comment, see the module docs).
    pub detail: String,
}

/// The response of one Store transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StowResponse {
    /// The study's Retrieve URL (Type 2: present, possibly empty).
    pub retrieve_url: Option<String>,
    pub referenced: Vec<ReferencedInstance>,
    pub failed: Vec<FailedInstance>,
}

/// A text element; an empty string is an empty value (no `Value` in JSON).
fn string_element(tag: Tag, vr: VR, value: &str) -> InMemElement {
    let value = if value.is_empty() {
        PrimitiveValue::Empty
    } else {
        PrimitiveValue::from(value)
    };
    InMemElement::new(tag, vr, value)
}

fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> InMemElement {
    InMemElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

impl StowResponse {
    /// The HTTP status (PS3.18 Table 10.5.3-1): 200 when every instance was stored
    /// without warnings; 202 when some were stored and others failed or carry
    /// warnings; 409 when none was stored; 400 when there was no instance at all (an
    /// empty request is bad syntax).
    pub fn http_status(&self) -> u16 {
        let warnings = self.referenced.iter().any(|r| r.warning_reason.is_some());
        match (self.referenced.is_empty(), self.failed.is_empty()) {
            (true, true) => 400,
            (true, false) => 409,
            (false, true) if !warnings => 200,
            (false, _) => 202,
        }
    }

    /// The Store Instances Response Module (PS3.18 Table I.1-1) as a data set.
    pub fn to_object(&self) -> InMemDicomObject {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(string_element(
            tags::RETRIEVE_URL,
            VR::UR,
            self.retrieve_url.as_deref().unwrap_or(""),
        ));
        if !self.failed.is_empty() {
            let items = self
                .failed
                .iter()
                .map(|f| {
                    let mut item = InMemDicomObject::new_empty();
                    if let Some(uid) = &f.sop_class_uid {
                        item.put(string_element(tags::REFERENCED_SOP_CLASS_UID, VR::UI, uid));
                    }
                    if let Some(uid) = &f.sop_instance_uid {
                        item.put(string_element(
                            tags::REFERENCED_SOP_INSTANCE_UID,
                            VR::UI,
                            uid,
                        ));
                    }
                    item.put(InMemElement::new(
                        tags::FAILURE_REASON,
                        VR::US,
                        PrimitiveValue::from(f.failure_reason),
                    ));
                    item.put(string_element(tags::ERROR_COMMENT, VR::LO, &f.detail));
                    item
                })
                .collect();
            obj.put(sequence(tags::FAILED_SOP_SEQUENCE, items));
        }
        if !self.referenced.is_empty() {
            let items = self
                .referenced
                .iter()
                .map(|r| {
                    let mut item = InMemDicomObject::new_empty();
                    item.put(string_element(
                        tags::REFERENCED_SOP_CLASS_UID,
                        VR::UI,
                        &r.sop_class_uid,
                    ));
                    item.put(string_element(
                        tags::REFERENCED_SOP_INSTANCE_UID,
                        VR::UI,
                        &r.sop_instance_uid,
                    ));
                    item.put(string_element(
                        tags::RETRIEVE_URL,
                        VR::UR,
                        r.retrieve_url.as_deref().unwrap_or(""),
                    ));
                    if let Some(reason) = r.warning_reason {
                        item.put(InMemElement::new(
                            tags::WARNING_REASON,
                            VR::US,
                            PrimitiveValue::from(reason),
                        ));
                    }
                    if let Some(detail) = &r.warning_detail {
                        item.put(string_element(tags::ERROR_COMMENT, VR::LO, detail));
                    }
                    item
                })
                .collect();
            obj.put(sequence(tags::REFERENCED_SOP_SEQUENCE, items));
        }
        obj
    }

    /// The response as DICOM JSON (`application/dicom+json`, PS3.18 Annex F), by
    /// dicom-json.
    pub fn to_json(&self) -> serde_json::Value {
        // Only strings, US and sequences are involved: serialisation cannot fail.
        dicom_json::to_value(&self.to_object()).unwrap_or(serde_json::Value::Null)
    }

    /// The response as PS3.19 Native DICOM Model XML (`application/dicom+xml`).
    pub fn to_xml(&self) -> String {
        let mut out = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<NativeDicomModel xmlns=\"http://dicom.nema.org/PS3.19/models/NativeDICOM\" xml:space=\"preserve\">",
        );
        write_xml_attributes(&self.to_object(), &mut out);
        out.push_str("</NativeDicomModel>\n");
        out
    }
}

/// Escapes text for XML 1.0 content and attribute values; characters XML 1.0 cannot
/// carry (most C0 controls) become U+FFFD.
fn escape_xml(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// Writes the attributes of `obj` as `<DicomAttribute>` elements (PS3.19 A.1). Covers
/// what a Store response holds: text and numeric values and sequences.
fn write_xml_attributes(obj: &InMemDicomObject, out: &mut String) {
    for elem in obj {
        let tag = elem.tag();
        out.push_str(&format!(
            "<DicomAttribute tag=\"{:04X}{:04X}\" vr=\"{}\"",
            tag.0,
            tag.1,
            elem.vr()
        ));
        if let Some(entry) = StandardDataDictionary.by_tag(tag) {
            out.push_str(" keyword=\"");
            escape_xml(entry.alias(), out);
            out.push('"');
        }
        out.push('>');
        match elem.value() {
            Value::Sequence(seq) => {
                for (i, item) in seq.items().iter().enumerate() {
                    out.push_str(&format!("<Item number=\"{}\">", i + 1));
                    write_xml_attributes(item, out);
                    out.push_str("</Item>");
                }
            }
            Value::Primitive(PrimitiveValue::Empty) | Value::PixelSequence(_) => {}
            Value::Primitive(v) => {
                for (i, s) in v.to_multi_str().iter().enumerate() {
                    out.push_str(&format!("<Value number=\"{}\">", i + 1));
                    escape_xml(s, out);
                    out.push_str("</Value>");
                }
            }
        }
        out.push_str("</DicomAttribute>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn stored(warning: Option<u16>) -> ReferencedInstance {
        ReferencedInstance {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.1.1".into(),
            sop_instance_uid: "2.25.1".into(),
            retrieve_url: Some(
                "http://h/dicomweb/studies/2.25.9/series/2.25.8/instances/2.25.1".into(),
            ),
            warning_reason: warning,
            warning_detail: warning.map(|_| "PatientName coerced".into()),
        }
    }

    fn failed() -> FailedInstance {
        FailedInstance {
            sop_class_uid: None,
            sop_instance_uid: Some("2.25.2".into()),
            failure_reason: failure::CANNOT_UNDERSTAND,
            detail: "instance 2 truncated <in pixel data> & \"gone\"".into(),
        }
    }

    #[rstest]
    #[case(vec![], vec![], 400)]
    #[case(vec![stored(None)], vec![], 200)]
    #[case(vec![stored(None), stored(Some(warning::COERCION_OF_DATA_ELEMENTS))], vec![], 202)]
    #[case(vec![stored(None)], vec![failed()], 202)]
    #[case(vec![], vec![failed(), failed()], 409)]
    fn status(
        #[case] referenced: Vec<ReferencedInstance>,
        #[case] failed: Vec<FailedInstance>,
        #[case] expected: u16,
    ) {
        let r = StowResponse {
            retrieve_url: None,
            referenced,
            failed,
        };
        assert_eq!(r.http_status(), expected);
    }

    #[test]
    fn json_model() {
        let r = StowResponse {
            retrieve_url: Some("http://h/dicomweb/studies/2.25.9".into()),
            referenced: vec![stored(Some(warning::COERCION_OF_DATA_ELEMENTS))],
            failed: vec![failed()],
        };
        let j = r.to_json();
        assert_eq!(
            j["00081190"],
            json!({"vr": "UR", "Value": ["http://h/dicomweb/studies/2.25.9"]})
        );
        let f = &j["00081198"]["Value"][0];
        assert_eq!(f["00081197"], json!({"vr": "US", "Value": [0xC000]}));
        assert_eq!(f["00081155"]["Value"][0], "2.25.2");
        assert!(f.get("00081150").is_none());
        assert_eq!(
            f["00000902"]["Value"][0],
            "instance 2 truncated <in pixel data> & \"gone\""
        );
        let s = &j["00081199"]["Value"][0];
        assert_eq!(s["00081150"]["Value"][0], "1.2.840.10008.5.1.4.1.1.1.1");
        assert_eq!(s["00081196"], json!({"vr": "US", "Value": [0xB000]}));
        assert_eq!(s["00000902"]["Value"][0], "PatientName coerced");
        assert_eq!(s["00081190"]["vr"], "UR");
    }

    #[test]
    fn json_without_retrieve_url_keeps_type_2_attribute() {
        let r = StowResponse {
            retrieve_url: None,
            referenced: vec![],
            failed: vec![failed()],
        };
        let j = r.to_json();
        assert_eq!(j["00081190"], json!({"vr": "UR"}));
        assert!(j.get("00081199").is_none());
    }

    #[test]
    fn xml_model() {
        let r = StowResponse {
            retrieve_url: Some("http://h/s?a=1&b=2".into()),
            referenced: vec![stored(None)],
            failed: vec![failed()],
        };
        let x = r.to_xml();
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<NativeDicomModel"));
        assert!(x.contains(
            "<DicomAttribute tag=\"00081190\" vr=\"UR\" keyword=\"RetrieveURL\"><Value number=\"1\">http://h/s?a=1&amp;b=2</Value></DicomAttribute>"
        ));
        assert!(x.contains("<DicomAttribute tag=\"00081199\" vr=\"SQ\" keyword=\"ReferencedSOPSequence\"><Item number=\"1\">"));
        assert!(x.contains(
            "<DicomAttribute tag=\"00081197\" vr=\"US\" keyword=\"FailureReason\"><Value number=\"1\">49152</Value></DicomAttribute>"
        ));
        assert!(x.contains("instance 2 truncated &lt;in pixel data&gt; &amp; &quot;gone&quot;"));
        assert!(x.trim_end().ends_with("</NativeDicomModel>"));
        // Balanced elements.
        assert_eq!(
            x.matches("<DicomAttribute").count(),
            x.matches("</DicomAttribute>").count()
        );
        assert_eq!(x.matches("<Item ").count(), x.matches("</Item>").count());
    }

    #[test]
    fn xml_replaces_control_characters() {
        let mut out = String::new();
        escape_xml("a\u{0}b\u{1b}c\td", &mut out);
        assert_eq!(out, "a\u{FFFD}b\u{FFFD}c\td");
    }
}
