//! FHIR ImagingStudy for EHRs (`/fhir`, handlers in `http::fhir`): studies as
//! FHIR R4 resources built from the index's QIDO-RS rows, and FHIR search
//! parameters turned into one QIDO-RS study query.
//!
//! The types come from `fhir-model` (its R4B model: ImagingStudy, Bundle,
//! OperationOutcome and CapabilityStatement are the same as R4's, and
//! `fhirVersion` says 4.0.1). Each study carries a contained `Endpoint`
//! (`dicom-wado-rs`) at the DICOMweb root, so a client that found a study
//! can fetch its pixels.

use fhir_model::r4b::codes::{
    BundleType, EndpointStatus, IssueSeverity, IssueType, SearchEntryMode,
};
use fhir_model::r4b::resources::{
    Bundle, BundleEntry, BundleEntrySearch, BundleLink, Endpoint, ImagingStudy, ImagingStudySeries,
    ImagingStudySeriesInstance, OperationOutcome, OperationOutcomeIssue, Resource,
};
use fhir_model::r4b::types::{CodeableConcept, Coding, Identifier, Reference};
use fhir_model::{BuilderError, Date, DateTime, Instant};
use serde_json::Value;

use crate::index::QidoRow;

/// DICOM's code system for modalities (PS3.16 CID 29).
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
/// The identifier system of DICOM UIDs (values `urn:oid:…`).
const DICOM_UID: &str = "urn:dicom:uid";
/// The id of the contained DICOMweb endpoint.
const ENDPOINT_ID: &str = "dicomweb";

/// Attributes the study query must return beyond QIDO-RS's defaults.
pub const STUDY_INCLUDE: &str = "00081030,00100021,00201206,00201208,00080201";
/// Attributes the series query must return beyond the defaults.
pub const SERIES_INCLUDE: &str = "0008103E,00400244,00400245,00180015,00200060";
/// Attributes the instance query must return beyond the defaults: Image
/// Laterality and View Position, which name a mammogram's view (`R CC`).
pub const INSTANCE_INCLUDE: &str = "00200062,00185101";
/// Modalities whose images are projections named by their view (mammography,
/// radiography, intra-oral, panoramic): their instances get a title.
const PROJECTION: [&str; 6] = ["MG", "CR", "DX", "RG", "IO", "PX"];

/// Whether a study's instances are read with their views
/// ([`INSTANCE_INCLUDE`]): when every modality in it is a projection one.
pub fn views_worth_reading(study: &QidoRow) -> bool {
    let modalities = texts(study, "00080061");
    !modalities.is_empty() && modalities.iter().all(|m| PROJECTION.contains(&m.as_str()))
}

/// SNOMED CT, for body sites and laterality.
const SCT: &str = "http://snomed.info/sct";

fn value<'r>(row: &'r QidoRow, tag: &str) -> Option<&'r Vec<Value>> {
    row.get(tag)?.get("Value")?.as_array()
}

/// The first value of an attribute of a QIDO-RS row, as text.
pub(crate) fn text(row: &QidoRow, tag: &str) -> Option<String> {
    let v = value(row, tag)?.first()?;
    let s = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

fn texts(row: &QidoRow, tag: &str) -> Vec<String> {
    value(row, tag)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn count(row: &QidoRow, tag: &str) -> Option<u32> {
    let v = value(row, tag)?.first()?;
    v.as_u64()
        .or_else(|| v.as_str()?.trim().parse().ok())
        .and_then(|n| u32::try_from(n).ok())
}

/// A Person Name for people to read: `Family^Given^Middle` as
/// `Family Given Middle` (the order charts in Kazakhstan use), from the
/// alphabetic group, else the ideographic or phonetic one.
fn person_name(row: &QidoRow, tag: &str) -> Option<String> {
    let pn = value(row, tag)?.first()?;
    let group = ["Alphabetic", "Ideographic", "Phonetic"]
        .iter()
        .find_map(|g| pn.get(g)?.as_str().filter(|s| !s.trim().is_empty()))?;
    let parts: Vec<&str> = group
        .split('^')
        .take(3)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// A DICOM DA (`YYYYMMDD`) as a FHIR date.
fn date(da: &str) -> Option<Date> {
    let (y, m, d) = (da.get(0..4)?, da.get(4..6)?, da.get(6..8)?);
    let month = fhir_model::time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = fhir_model::time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?);
    date.ok().map(Date::Date)
}

/// When a study or series started: date and time with the study's offset
/// from UTC when it has one; the date alone otherwise (a FHIR dateTime with
/// a time must have a zone, and guessing one would move the study).
fn started(da: Option<String>, tm: Option<String>, offset: Option<String>) -> Option<DateTime> {
    let day = date(da.as_deref()?)?;
    let (Some(tm), Some(offset), Date::Date(d)) = (tm, offset, &day) else {
        return Some(DateTime::Date(day));
    };
    let digits = |s: Option<&str>| s.and_then(|s| s.parse::<u8>().ok());
    let (h, min, sec) = (
        digits(tm.get(0..2)),
        digits(tm.get(2..4)).or(Some(0)),
        digits(tm.get(4..6)).or(Some(0)),
    );
    let sign = match offset.get(0..1) {
        Some("+") => 1i8,
        Some("-") => -1,
        _ => return Some(DateTime::Date(day)),
    };
    let (oh, om) = (digits(offset.get(1..3)), digits(offset.get(3..5)));
    let time = fhir_model::time::Time::from_hms(h?, min?, sec?).ok();
    let zone = fhir_model::time::UtcOffset::from_hms(
        sign * i8::try_from(oh?).ok()?,
        sign * i8::try_from(om?).ok()?,
        0,
    )
    .ok();
    match (time, zone) {
        (Some(time), Some(zone)) => Some(DateTime::DateTime(Instant(
            fhir_model::time::PrimitiveDateTime::new(*d, time).assume_offset(zone),
        ))),
        _ => Some(DateTime::Date(day)),
    }
}

fn coding(system: &str, code: &str) -> Result<Coding, BuilderError> {
    Coding::builder()
        .system(system.to_owned())
        .code(code.to_owned())
        .build()
}

/// Body Part Examined (0018,0015) as a series' bodySite: the SNOMED CT code
/// PS3.16 Annex L gives for the parts the clinics' studies show most (chest:
/// fluorography and X-ray; breast: mammography), else the DICOM term as the
/// display alone rather than a guessed code.
fn body_site(part: &str) -> Result<Coding, BuilderError> {
    let code = match part.to_ascii_uppercase().as_str() {
        "CHEST" => Some(("51185008", "Chest")),
        "BREAST" => Some(("76752008", "Breast")),
        _ => None,
    };
    match code {
        Some((code, display)) => Coding::builder()
            .system(SCT.to_owned())
            .code(code.to_owned())
            .display(display.to_owned())
            .build(),
        None => Coding::builder().display(part.to_owned()).build(),
    }
}

/// A DICOM laterality (R, L, B) as FHIR's (SNOMED CT, the bodysite-laterality
/// value set); U (unpaired) and anything else has none.
fn laterality(value: &str) -> Option<Result<Coding, BuilderError>> {
    let (code, display) = match value {
        "R" => ("419465000", "Unilateral right"),
        "L" => ("419161000", "Unilateral left"),
        "B" => ("51440002", "Bilateral"),
        _ => return None,
    };
    Some(
        Coding::builder()
            .system(SCT.to_owned())
            .code(code.to_owned())
            .display(display.to_owned())
            .build(),
    )
}

/// The contained endpoint: DICOMweb (WADO-RS) at `dicomweb_root`.
fn endpoint(dicomweb_root: &str) -> Result<Endpoint, BuilderError> {
    Endpoint::builder()
        .id(ENDPOINT_ID.to_owned())
        .status(EndpointStatus::Active)
        .connection_type(coding(
            "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "dicom-wado-rs",
        )?)
        // No code system lists DICOM payloads; the MIME type below says it.
        .payload_type(vec![Some(
            CodeableConcept::builder()
                .text("DICOM".to_owned())
                .build()?,
        )])
        .payload_mime_type(vec![Some("application/dicom".to_owned())])
        .address(dicomweb_root.to_owned())
        .build()
}

/// One study as an ImagingStudy: `study` is its QIDO-RS study row (with
/// [`STUDY_INCLUDE`]), `series` its series rows (with [`SERIES_INCLUDE`]),
/// `instances` its instance rows.
pub fn imaging_study(
    study: &QidoRow,
    series: &[QidoRow],
    instances: &[QidoRow],
    dicomweb_root: &str,
) -> Result<ImagingStudy, BuilderError> {
    let uid = text(study, "0020000D").unwrap_or_default();
    let mut identifiers = vec![Some(
        Identifier::builder()
            .system(DICOM_UID.to_owned())
            .value(format!("urn:oid:{uid}"))
            .build()?,
    )];
    if let Some(accession) = text(study, "00080050") {
        identifiers.push(Some(
            Identifier::builder()
                .r#type(
                    CodeableConcept::builder()
                        .coding(vec![Some(coding(
                            "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "ACSN",
                        )?)])
                        .build()?,
                )
                .value(accession)
                .build()?,
        ));
    }
    let mut subject = Reference::builder().r#type("Patient".to_owned());
    if let Some(id) = text(study, "00100020") {
        let mut identifier = Identifier::builder().value(id);
        if let Some(issuer) = text(study, "00100021") {
            identifier = identifier.assigner(Reference::builder().display(issuer).build()?);
        }
        subject = subject.identifier(identifier.build()?);
    }
    if let Some(name) = person_name(study, "00100010") {
        subject = subject.display(name);
    }
    let offset = text(study, "00080201");
    let endpoint_ref = || {
        Reference::builder()
            .reference(format!("#{ENDPOINT_ID}"))
            .build()
    };

    let mut all_series = Vec::with_capacity(series.len());
    for s in series {
        let series_uid = text(s, "0020000E").unwrap_or_default();
        let mut one = ImagingStudySeries::builder()
            .uid(series_uid.clone())
            .modality(coding(
                DCM,
                &text(s, "00080060").unwrap_or_else(|| "OT".to_owned()),
            )?)
            .endpoint(vec![Some(endpoint_ref()?)]);
        if let Some(n) = count(s, "00200011") {
            one = one.number(n);
        }
        if let Some(d) = text(s, "0008103E") {
            one = one.description(d);
        }
        if let Some(n) = count(s, "00201209") {
            one = one.number_of_instances(n);
        }
        if let Some(at) = started(text(s, "00400244"), text(s, "00400245"), offset.clone()) {
            one = one.started(at);
        }
        if let Some(part) = text(s, "00180015") {
            one = one.body_site(body_site(&part)?);
        }
        let in_series: Vec<&QidoRow> = instances
            .iter()
            .filter(|i| text(i, "0020000E").as_deref() == Some(series_uid.as_str()))
            .collect();
        // The series' Laterality, else its images' when they all agree (a
        // mammography series of both breasts has none).
        let image_sides: std::collections::BTreeSet<_> =
            in_series.iter().map(|i| text(i, "00200062")).collect();
        let series_side = text(s, "00200060").and_then(|v| laterality(&v));
        let image_side = match image_sides.len() {
            1 => image_sides.into_iter().next().flatten(),
            _ => None,
        };
        if let Some(coding) = series_side.or_else(|| image_side.as_deref().and_then(laterality)) {
            one = one.laterality(coding?);
        }
        let mut members = Vec::new();
        for i in in_series {
            let mut instance = ImagingStudySeriesInstance::builder()
                .uid(text(i, "00080018").unwrap_or_default())
                .sop_class(coding(
                    "urn:ietf:rfc:3986",
                    &format!("urn:oid:{}", text(i, "00080016").unwrap_or_default()),
                )?);
            if let Some(n) = count(i, "00200013") {
                instance = instance.number(n);
            }
            // The view as a chart lists it: `R CC`, `L MLO`, `PA` (U, an
            // unpaired part, says nothing there).
            let view: Vec<String> = [
                text(i, "00200062").filter(|side| side != "U"),
                text(i, "00185101"),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !view.is_empty() {
                instance = instance.title(view.join(" "));
            }
            members.push(Some(instance.build()?));
        }
        if !members.is_empty() {
            one = one.instance(members);
        }
        all_series.push(Some(one.build()?));
    }

    let mut resource = ImagingStudy::builder()
        .id(uid)
        .identifier(identifiers)
        .status(fhir_model::r4b::codes::ImagingStudyStatus::Available)
        .subject(subject.build()?)
        .contained(vec![Resource::Endpoint(endpoint(dicomweb_root)?)])
        .endpoint(vec![Some(endpoint_ref()?)])
        .modality(
            texts(study, "00080061")
                .iter()
                .map(|m| coding(DCM, m).map(Some))
                .collect::<Result<_, _>>()?,
        );
    if let Some(at) = started(text(study, "00080020"), text(study, "00080030"), offset) {
        resource = resource.started(at);
    }
    if let Some(n) = count(study, "00201206") {
        resource = resource.number_of_series(n);
    }
    if let Some(n) = count(study, "00201208") {
        resource = resource.number_of_instances(n);
    }
    if let Some(d) = text(study, "00081030") {
        resource = resource.description(d);
    }
    if let Some(name) = person_name(study, "00080090") {
        resource = resource.referrer(Reference::builder().display(name).build()?);
    }
    if !all_series.is_empty() {
        resource = resource.series(all_series);
    }
    resource.build()
}

/// An OperationOutcome with one issue.
pub fn outcome(
    severity: IssueSeverity,
    code: IssueType,
    diagnostics: &str,
) -> Result<OperationOutcome, BuilderError> {
    outcome_of(&[(severity, code, diagnostics.to_owned())])
}

/// An OperationOutcome with these issues.
pub fn outcome_of(
    issues: &[(IssueSeverity, IssueType, String)],
) -> Result<OperationOutcome, BuilderError> {
    OperationOutcome::builder()
        .issue(
            issues
                .iter()
                .map(|(severity, code, diagnostics)| {
                    OperationOutcomeIssue::builder()
                        .severity(*severity)
                        .code(*code)
                        .diagnostics(diagnostics.clone())
                        .build()
                        .map(Some)
                })
                .collect::<Result<_, _>>()?,
        )
        .build()
}

/// A search's answer: the studies found, the `self` and (when there may be
/// more) `next` links, and the parameters ignored as an outcome entry.
pub fn searchset(
    studies: Vec<ImagingStudy>,
    base: &str,
    self_link: String,
    next_link: Option<String>,
    notes: &[String],
) -> Result<Bundle, BuilderError> {
    let mut links = vec![Some(
        BundleLink::builder()
            .relation("self".to_owned())
            .url(self_link)
            .build()?,
    )];
    if let Some(next) = next_link {
        links.push(Some(
            BundleLink::builder()
                .relation("next".to_owned())
                .url(next)
                .build()?,
        ));
    }
    let mut entries = Vec::with_capacity(studies.len() + 1);
    for study in studies {
        let id = study.id.clone().unwrap_or_default();
        entries.push(Some(
            BundleEntry::builder()
                .full_url(format!("{base}/ImagingStudy/{id}"))
                .resource(Resource::ImagingStudy(study))
                .search(
                    BundleEntrySearch::builder()
                        .mode(SearchEntryMode::Match)
                        .build()?,
                )
                .build()?,
        ));
    }
    if !notes.is_empty() {
        let issues: Vec<_> = notes
            .iter()
            .map(|n| (IssueSeverity::Warning, IssueType::NotSupported, n.clone()))
            .collect();
        entries.push(Some(
            BundleEntry::builder()
                .resource(Resource::OperationOutcome(outcome_of(&issues)?))
                .search(
                    BundleEntrySearch::builder()
                        .mode(SearchEntryMode::Outcome)
                        .build()?,
                )
                .build()?,
        ));
    }
    let mut bundle = Bundle::builder().r#type(BundleType::Searchset).link(links);
    if !entries.is_empty() {
        bundle = bundle.entry(entries);
    }
    bundle.build()
}

/// A FHIR search, as parsed: the QIDO-RS study query it becomes, and notes on
/// the parameters ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Search {
    /// QIDO-RS matching keys, `(keyword, value)`.
    pub matches: Vec<(&'static str, String)>,
    /// Entries per page.
    pub count: u32,
    /// Entries skipped (our own paging parameter, `_offset`, in `next` links).
    pub offset: u64,
    /// One note per parameter ignored.
    pub ignored: Vec<String>,
    /// The parameters exclude each other (two different study ids, dates
    /// that cannot both hold): nothing matches.
    pub impossible: bool,
}

impl Search {
    /// Adds a match; FHIR ANDs parameters, so a second, different value for
    /// the same key matches nothing (QIDO-RS would OR repeated UIDs).
    fn require(&mut self, key: &'static str, value: String) {
        match self.matches.iter().find(|(k, _)| *k == key) {
            Some((_, v)) if *v != value => self.impossible = true,
            Some(_) => {}
            None => self.matches.push((key, value)),
        }
    }
}

/// Entries per page when `_count` is absent, and at most.
pub const DEFAULT_COUNT: u32 = 20;
pub const MAX_COUNT: u32 = 100;

/// Parses ImagingStudy search parameters (already percent-decoded). Unknown
/// parameters are ignored with a note, or refused with `strict`
/// (`Prefer: handling=strict`); bad values are always refused.
pub fn parse_search(params: &[(String, String)], strict: bool) -> Result<Search, String> {
    let mut search = Search {
        count: DEFAULT_COUNT,
        ..Default::default()
    };
    let mut low: Option<String> = None;
    let mut high: Option<String> = None;
    let mut seen_count = false;
    for (name, raw) in params {
        let value = raw.trim();
        let once = |seen: bool| {
            if seen {
                Err(format!("{name} is given more than once"))
            } else {
                Ok(())
            }
        };
        match name.as_str() {
            "patient.identifier"
            | "subject:Patient.identifier"
            | "subject.identifier"
            | "patient:Patient.identifier" => {
                // `system|value`: one archive, one patient ID domain, so
                // the system is not matched.
                let id = value.rsplit_once('|').map_or(value, |(_, v)| v);
                if id.is_empty() || id.len() > 64 || id.contains(['*', '?', ',', '\\']) {
                    return Err(format!("{name}={raw:?}: expected a patient identifier"));
                }
                search.require("PatientID", id.to_owned());
            }
            "identifier" => {
                let (system, v) = value.split_once('|').unwrap_or(("", value));
                if let Some(uid) = v.strip_prefix("urn:oid:") {
                    if !aina_dicomweb::qido::is_uid(uid) || !matches!(system, "" | DICOM_UID) {
                        return Err(format!("identifier={raw:?}: not a Study Instance UID"));
                    }
                    search.require("StudyInstanceUID", uid.to_owned());
                } else if !v.is_empty() && v.len() <= 16 && !v.contains(['*', '?', ',', '\\']) {
                    // Anything else is an accession number (its own system
                    // is the ordering system's, not ours to check).
                    search.require("AccessionNumber", v.to_owned());
                } else {
                    return Err(format!(
                        "identifier={raw:?}: expected urn:oid:<Study Instance UID> or an \
                         accession number"
                    ));
                }
            }
            "_id" => {
                if !aina_dicomweb::qido::is_uid(value) {
                    return Err(format!("_id={raw:?}: not an ImagingStudy id"));
                }
                search.require("StudyInstanceUID", value.to_owned());
            }
            "modality" => {
                let code = value.rsplit_once('|').map_or(value, |(_, c)| c);
                if code.contains(',') {
                    return Err(format!(
                        "modality={raw:?}: one modality per search (search again for another)"
                    ));
                }
                if code.is_empty()
                    || code.len() > 16
                    || !code
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                {
                    return Err(format!(
                        "modality={raw:?}: expected a DICOM modality code such as MG"
                    ));
                }
                search.require("ModalitiesInStudy", code.to_owned());
            }
            "started" => {
                let (lo, hi) = date_bound(value).map_err(|e| format!("started={raw:?}: {e}"))?;
                if let Some(lo) = lo {
                    low = Some(low.map_or(lo.clone(), |l| l.max(lo)));
                }
                if let Some(hi) = hi {
                    high = Some(high.map_or(hi.clone(), |h| h.min(hi)));
                }
            }
            "_count" => {
                once(seen_count)?;
                seen_count = true;
                let n: i64 = value
                    .parse()
                    .map_err(|_| format!("_count={raw:?}: expected a whole number"))?;
                if n < 0 {
                    return Err(format!("_count={raw:?}: must not be negative"));
                }
                if n > i64::from(MAX_COUNT) {
                    search.ignored.push(format!(
                        "_count={n} is more than {MAX_COUNT}: {MAX_COUNT} per page"
                    ));
                }
                search.count = u32::try_from(n.min(i64::from(MAX_COUNT))).unwrap_or(MAX_COUNT);
            }
            "_offset" => {
                search.offset = value
                    .parse()
                    .map_err(|_| format!("_offset={raw:?}: expected a whole number"))?;
            }
            // Asks for JSON, which is all there is.
            "_format" if matches!(value, "json" | "application/json" | "application/fhir+json") => {
            }
            "_format" => {
                return Err(format!("_format={raw:?}: this server answers JSON only"));
            }
            _ if narrows(name) => {
                return Err(format!(
                    "search parameter {name:?} is not supported; ignoring it would answer \
                     with studies it excludes (search by patient.identifier, identifier, \
                     started, modality)"
                ));
            }
            _ => {
                let note = format!("search parameter {name:?} is not supported and was ignored");
                if strict {
                    return Err(format!(
                        "search parameter {name:?} is not supported (Prefer: handling=strict)"
                    ));
                }
                search.ignored.push(note);
            }
        }
    }
    match (low, high) {
        (None, None) => {}
        (lo, hi) => {
            let (lo, hi) = (lo.unwrap_or_default(), hi.unwrap_or_default());
            if !lo.is_empty() && !hi.is_empty() && lo > hi {
                search.impossible = true;
            }
            search.matches.push(("StudyDate", format!("{lo}-{hi}")));
        }
    }
    Ok(search)
}

/// ImagingStudy's search parameters (and the common ones) that narrow a
/// search: not implemented ones are refused rather than ignored, since
/// ignoring a filter hands an EHR studies it did not ask for (another
/// patient's, with `patient=`). Parameters that only shape the answer
/// (`_sort`, `_summary`, `_elements`, …) and names FHIR does not know are
/// ignored with a note, as FHIR's lenient handling says.
fn narrows(name: &str) -> bool {
    const FILTERS: [&str; 27] = [
        "patient",
        "subject",
        "identifier",
        "started",
        "modality",
        "_id",
        "series",
        "status",
        "bodysite",
        "dicom-class",
        "instance",
        "performer",
        "reason",
        "referrer",
        "interpreter",
        "encounter",
        "endpoint",
        "basedon",
        "_lastUpdated",
        "_tag",
        "_profile",
        "_security",
        "_text",
        "_content",
        "_list",
        "_has",
        "_filter",
    ];
    let base = name.split([':', '.']).next().unwrap_or(name);
    FILTERS.contains(&base)
}

/// A `started` value (`[prefix]YYYY[-MM[-DD]][Thh:mm…]`) as inclusive DICOM
/// date bounds. A time is not matched: the index matches study dates, so a
/// dateTime counts for its whole day.
fn date_bound(value: &str) -> Result<(Option<String>, Option<String>), String> {
    let (prefix, rest) = match value.get(..2) {
        Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &value[2..]),
        Some("ne" | "sa" | "eb" | "ap") => {
            return Err("the prefixes ne, sa, eb and ap are not supported".into());
        }
        _ => ("eq", value),
    };
    let (day_part, time_part) = rest.split_once('T').unwrap_or((rest, ""));
    if !time_part.is_empty() && !valid_time(time_part) {
        return Err("expected a time such as T09:30:00Z or T09:30:00+05:00 after the date".into());
    }
    // A dateTime is matched by its day: gt and lt cannot leave out the rest
    // of that day, so they include it.
    let prefix = match (prefix, time_part.is_empty()) {
        ("gt", false) => "ge",
        ("lt", false) => "le",
        (p, _) => p,
    };
    let fields: Vec<&str> = day_part.split('-').collect();
    let bad = || "expected a date such as 2026-03-14, 2026-03 or 2026".to_owned();
    let number = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let year = fields.first().and_then(|y| number(y, 4)).ok_or_else(bad)?;
    let month = fields
        .get(1)
        .map(|m| number(m, 2).filter(|m| (1..=12).contains(m)));
    let day = fields.get(2).map(|d| number(d, 2));
    if fields.len() > 3 || month == Some(None) || day == Some(None) {
        return Err(bad());
    }
    let (month, day) = (month.flatten(), day.flatten());
    let month_days = |m: u32| match m {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if let (Some(m), Some(d)) = (month, day)
        && !(1..=month_days(m)).contains(&d)
    {
        return Err(bad());
    }
    let first = format!("{year:04}{:02}{:02}", month.unwrap_or(1), day.unwrap_or(1));
    let last_month = month.unwrap_or(12);
    let last = format!(
        "{year:04}{last_month:02}{:02}",
        day.unwrap_or_else(|| month_days(last_month))
    );
    // gt and lt exclude the named period: the day after its last day, the
    // day before its first (dates as numbers step over month ends cleanly
    // enough for a range bound).
    Ok(match prefix {
        "eq" => (Some(first), Some(last)),
        "ge" => (Some(first), None),
        "le" => (None, Some(last)),
        "gt" => (Some(next_day(&last)), None),
        _ => (None, Some(previous_day(&first))),
    })
}

/// `hh:mm[:ss[.fff]]` and a zone (`Z` or `±hh:mm`), as FHIR's dateTime has.
fn valid_time(t: &str) -> bool {
    let (clock, zone) = match t.find(['Z', '+', '-']) {
        Some(i) => t.split_at(i),
        None => return false,
    };
    let two = |s: &str, max: u32| s.len() == 2 && s.parse::<u32>().is_ok_and(|n| n <= max);
    let mut parts = clock.split(':');
    let (Some(h), Some(m)) = (parts.next(), parts.next()) else {
        return false;
    };
    let seconds_ok = match parts.next() {
        None => true,
        Some(sec) => {
            let (whole, fraction) = sec.split_once('.').unwrap_or((sec, "0"));
            two(whole, 60) && !fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit())
        }
    };
    let zone_ok = zone == "Z"
        || zone
            .get(1..)
            .and_then(|z| z.split_once(':'))
            .is_some_and(|(zh, zm)| two(zh, 14) && two(zm, 59));
    two(h, 23) && two(m, 59) && seconds_ok && parts.next().is_none() && zone_ok
}

fn parse_da(da: &str) -> Option<fhir_model::time::Date> {
    match date(da)? {
        Date::Date(d) => Some(d),
        _ => None,
    }
}

fn format_da(d: fhir_model::time::Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
}

fn next_day(da: &str) -> String {
    parse_da(da)
        .and_then(|d| d.next_day())
        .map_or_else(|| da.to_owned(), format_da)
}

fn previous_day(da: &str) -> String {
    parse_da(da)
        .and_then(|d| d.previous_day())
        .map_or_else(|| da.to_owned(), format_da)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(q: &[(&str, &str)]) -> Result<Search, String> {
        let params: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse_search(&params, false)
    }

    fn row(v: Value) -> QidoRow {
        v.as_object().unwrap().clone()
    }

    fn cs(v: &str) -> Value {
        serde_json::json!({"vr": "CS", "Value": [v]})
    }

    /// Body site, laterality, view titles and referrer from the rows; a
    /// series whose images disagree on the side has no laterality.
    #[test]
    fn series_sites_sides_and_views() {
        let uid = |v: &str| serde_json::json!({"vr": "UI", "Value": [v]});
        let study = row(serde_json::json!({
            "0020000D": uid("1.2"),
            "00080090": {"vr": "PN", "Value": [{"Alphabetic": "Ким^Виктор"}]},
        }));
        let series = [
            row(
                serde_json::json!({"0020000E": uid("1.2.1"), "00080060": cs("MG"), "00180015": cs("BREAST")}),
            ),
            row(
                serde_json::json!({"0020000E": uid("1.2.2"), "00080060": cs("MG"), "00180015": cs("BREAST")}),
            ),
            row(
                serde_json::json!({"0020000E": uid("1.2.3"), "00080060": cs("CR"), "00180015": cs("KNEE"), "00200060": cs("L")}),
            ),
        ];
        let image = |series: &str, sop: &str, side: &str, view: &str| {
            row(serde_json::json!({
                "0020000E": uid(series), "00080018": uid(sop), "00080016": uid("1.2.840.10008.5.1.4.1.1.1.2"),
                "00200062": cs(side), "00185101": cs(view),
            }))
        };
        let instances = [
            image("1.2.1", "1", "R", "CC"),
            image("1.2.1", "2", "R", "MLO"),
            image("1.2.2", "3", "R", "CC"),
            image("1.2.2", "4", "L", "CC"),
            image("1.2.3", "5", "U", "AP"),
        ];
        let r = imaging_study(&study, &series, &instances, "http://x/dicomweb").unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["referrer"]["display"], "Ким Виктор");
        let s = &json["series"];
        assert_eq!(s[0]["bodySite"]["code"], "76752008");
        assert_eq!(s[0]["laterality"]["code"], "419465000", "both images right");
        assert_eq!(s[0]["instance"][1]["title"], "R MLO");
        assert!(s[1].get("laterality").is_none(), "R and L: no side");
        assert_eq!(s[1]["instance"][1]["title"], "L CC");
        assert_eq!(s[2]["bodySite"], serde_json::json!({"display": "KNEE"}));
        assert_eq!(s[2]["laterality"]["code"], "419161000", "the series' own");
        assert_eq!(s[2]["instance"][0]["title"], "AP", "U says nothing");

        // Views are read for projection studies only (a CT's instances
        // would each bring their whole stored metadata).
        let modalities =
            |m: &[&str]| row(serde_json::json!({"00080061": {"vr": "CS", "Value": m}}));
        assert!(views_worth_reading(&modalities(&["MG"])));
        assert!(views_worth_reading(&modalities(&["CR", "DX"])));
        assert!(!views_worth_reading(&modalities(&["CT", "DX"])));
        assert!(!views_worth_reading(&modalities(&[])));
    }

    #[test]
    fn started_ranges() {
        let s = search(&[("started", "ge2024-02"), ("started", "lt2024-03-01")]).unwrap();
        assert_eq!(s.matches, [("StudyDate", "20240201-20240229".to_owned())]);
        let s = search(&[("started", "2023")]).unwrap();
        assert_eq!(s.matches, [("StudyDate", "20230101-20231231".to_owned())]);
        // A dateTime counts for its day: gt keeps the rest of that day.
        let s = search(&[("started", "gt2023-12-31T10:00:00Z")]).unwrap();
        assert_eq!(s.matches, [("StudyDate", "20231231-".to_owned())]);
        let s = search(&[("started", "lt2024-01-01T10:00:00+05:00")]).unwrap();
        assert_eq!(s.matches, [("StudyDate", "-20240101".to_owned())]);
        assert!(search(&[("started", "2024-01-01T99:zz")]).is_err());
        assert!(
            search(&[("started", "2024-01-01T10:00")]).is_err(),
            "a time needs a zone"
        );
        let s = search(&[("started", "le2024-02-29")]).unwrap();
        assert_eq!(s.matches, [("StudyDate", "-20240229".to_owned())]);
        for bad in [
            "2023-02-30",
            "2023-13",
            "20230101",
            "ap2023",
            "ge",
            "2023-1-01",
        ] {
            assert!(search(&[("started", bad)]).is_err(), "{bad}");
        }
        // Dates that exclude each other match nothing (FHIR ANDs them).
        assert!(
            search(&[("started", "ge2024"), ("started", "lt2023")])
                .unwrap()
                .impossible
        );
    }

    #[test]
    fn identifiers_and_patients() {
        let s = search(&[
            ("identifier", "urn:dicom:uid|urn:oid:1.2.840.1"),
            ("patient.identifier", "urn:oid:1.2.3|KZ-77"),
            (
                "modality",
                "http://dicom.nema.org/resources/ontology/DCM|MG",
            ),
        ])
        .unwrap();
        assert_eq!(
            s.matches,
            [
                ("StudyInstanceUID", "1.2.840.1".to_owned()),
                ("PatientID", "KZ-77".to_owned()),
                ("ModalitiesInStudy", "MG".to_owned()),
            ]
        );
        let s = search(&[("identifier", "ACC123")]).unwrap();
        assert_eq!(s.matches, [("AccessionNumber", "ACC123".to_owned())]);
        // Two different study ids: nothing, not either (QIDO-RS would OR them).
        let s = search(&[("_id", "1.2.3"), ("identifier", "urn:oid:1.2.4")]).unwrap();
        assert!(s.impossible);
        let s = search(&[("_id", "1.2.3"), ("identifier", "urn:oid:1.2.3")]).unwrap();
        assert_eq!((s.impossible, s.matches.len()), (false, 1));
        assert!(search(&[("_format", "xml")]).is_err());
        assert!(search(&[("identifier", "urn:oid:1.02")]).is_err());
        assert!(search(&[("patient.identifier", "KZ*")]).is_err());
        assert!(search(&[("modality", "MG,CR")]).is_err());
        assert!(search(&[("modality", "mg")]).is_err());
    }

    #[test]
    fn counts_and_unknown_parameters() {
        assert_eq!(search(&[]).unwrap().count, DEFAULT_COUNT);
        assert!(search(&[("_count", "-1")]).is_err());
        assert!(search(&[("_count", "99999999999999999999999")]).is_err());
        let s = search(&[("_count", "5000")]).unwrap();
        assert_eq!((s.count, s.ignored.len()), (MAX_COUNT, 1));
        let s = search(&[("_count", "0")]).unwrap();
        assert_eq!(s.count, 0);
        // Ignoring a filter would widen the answer: refused, lenient or not.
        for filter in [
            "patient",
            "subject",
            "bodysite",
            "patient.identifier:exact",
            "_has:x",
        ] {
            assert!(search(&[(filter, "x")]).is_err(), "{filter}");
        }
        // What only shapes the answer, or is no FHIR parameter, is ignored.
        let s = search(&[("_sort", "-started"), ("PatientName", "x")]).unwrap();
        assert_eq!(s.ignored.len(), 2);
        let strict = parse_search(&[("_sort".into(), "x".into())], true);
        assert!(strict.unwrap_err().contains("_sort"));
    }

    #[test]
    fn started_keeps_the_zone_or_drops_the_time() {
        let with_zone = started(
            Some("20240314".into()),
            Some("093015".into()),
            Some("+0500".into()),
        );
        assert_eq!(
            serde_json::to_value(with_zone).unwrap(),
            serde_json::json!("2024-03-14T09:30:15+05:00")
        );
        let without = started(Some("20240314".into()), Some("093015".into()), None);
        assert_eq!(
            serde_json::to_value(without).unwrap(),
            serde_json::json!("2024-03-14")
        );
        assert!(started(Some("2024".into()), None, None).is_none());
    }
}
