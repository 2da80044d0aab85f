//! FHIR R4 over HTTP (`/fhir`): ImagingStudy read and search, the
//! CapabilityStatement, and OperationOutcome for every error. Resources are
//! built in [`crate::fhir`] from the same index QIDO-RS reads.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir_model::r4b::codes::{IssueSeverity, IssueType};
use serde::Serialize;

use crate::app::AppState;
use crate::fhir::{
    INSTANCE_INCLUDE, SERIES_INCLUDE, STUDY_INCLUDE, outcome, parse_search, searchset, text,
};
use crate::index::{QidoRow, Scope};
use aina_dicomweb::qido::{QueryLevel, parse_query};

/// FHIR's JSON media type.
const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
/// Instances read per index query when filling a study's series.
const INSTANCE_PAGE: u32 = 1000;

/// An error as FHIR says it: a status and an OperationOutcome.
pub struct FhirError {
    status: StatusCode,
    code: IssueType,
    message: String,
}

impl FhirError {
    fn new(status: StatusCode, code: IssueType, message: impl Into<String>) -> Self {
        FhirError {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, IssueType::Invalid, message)
    }
}

impl From<crate::index::IndexError> for FhirError {
    fn from(e: crate::index::IndexError) -> Self {
        match e {
            crate::index::IndexError::Invalid(m) => FhirError::invalid(m),
            other => {
                tracing::error!(error = %other, "FHIR: the index failed");
                FhirError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    IssueType::Transient,
                    "the archive's index could not answer; try again",
                )
            }
        }
    }
}

impl From<fhir_model::BuilderError> for FhirError {
    fn from(e: fhir_model::BuilderError) -> Self {
        tracing::error!(error = %e, "FHIR: building a resource failed");
        FhirError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueType::Exception,
            "the archive could not build the resource",
        )
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let severity = if self.status.is_server_error() {
            IssueSeverity::Fatal
        } else {
            IssueSeverity::Error
        };
        match outcome(severity, self.code, &self.message) {
            Ok(o) => fhir_json(self.status, &o),
            Err(_) => (self.status, self.message).into_response(),
        }
    }
}

fn fhir_json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "FHIR: serialising failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// JSON is all this server speaks: an Accept that rules it out is refused.
fn check_accept(headers: &HeaderMap) -> Result<(), FhirError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let ok = accept.split(',').any(|range| {
        let media = range.split(';').next().unwrap_or_default().trim();
        matches!(
            media,
            "*/*"
                | "application/*"
                | "application/json"
                | "application/fhir+json"
                // DSTU2's name, still sent by older clients.
                | "application/json+fhir"
                | ""
        )
    });
    if ok {
        Ok(())
    } else {
        Err(FhirError::new(
            StatusCode::NOT_ACCEPTABLE,
            IssueType::NotSupported,
            format!("Accept {accept:?}: this server answers application/fhir+json only"),
        ))
    }
}

fn fhir_base(state: &AppState, headers: &HeaderMap) -> String {
    format!("{}/fhir", super::site_url(state, headers))
}

/// Rows of one QIDO-RS query.
async fn qido(
    state: &AppState,
    level: QueryLevel,
    scope: &Scope,
    query: &str,
    limit: u32,
) -> Result<Vec<QidoRow>, FhirError> {
    let query = parse_query(level, query, limit).map_err(|e| FhirError::invalid(e.to_string()))?;
    Ok(state.index.search(&query, scope).await?.rows)
}

/// The ImagingStudy of a study row: its series and instances read too.
async fn study_resource(
    state: &AppState,
    study: &QidoRow,
    dicomweb_root: &str,
) -> Result<fhir_model::r4b::resources::ImagingStudy, FhirError> {
    let scope = Scope {
        study: Some(text(study, "0020000D").unwrap_or_default()),
        ..Default::default()
    };
    let series = qido(
        state,
        QueryLevel::Series,
        &scope,
        &format!("includefield={SERIES_INCLUDE}&limit=1000"),
        1000,
    )
    .await?;
    // Asking for attributes beyond the defaults reads each instance's stored
    // metadata: worth it for projection images (a mammogram's view, `R CC`),
    // small single frames; not for a CT's thousand slices.
    let include = if crate::fhir::views_worth_reading(study) {
        format!("includefield={INSTANCE_INCLUDE}&")
    } else {
        String::new()
    };
    let mut instances = Vec::new();
    loop {
        let page = qido(
            state,
            QueryLevel::Instance,
            &scope,
            &format!("{include}limit={INSTANCE_PAGE}&offset={}", instances.len()),
            INSTANCE_PAGE,
        )
        .await?;
        let full = page.len() == INSTANCE_PAGE as usize;
        instances.extend(page);
        if !full {
            break;
        }
    }
    Ok(crate::fhir::imaging_study(
        study,
        &series,
        &instances,
        dicomweb_root,
    )?)
}

/// `GET /fhir/ImagingStudy/{id}`: the id is the Study Instance UID.
pub async fn read_imaging_study(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(study): Path<String>,
) -> Result<Response, FhirError> {
    check_accept(&headers)?;
    if !aina_dicomweb::qido::is_uid(&study) {
        return Err(FhirError::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            "no ImagingStudy with that id (ids are Study Instance UIDs)",
        ));
    }
    let scope = Scope {
        study: Some(study.clone()),
        ..Default::default()
    };
    let rows = qido(
        &state,
        QueryLevel::Study,
        &scope,
        &format!("includefield={STUDY_INCLUDE}"),
        1,
    )
    .await?;
    let Some(row) = rows.first() else {
        return Err(FhirError::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            format!("no ImagingStudy {study}"),
        ));
    };
    let root = super::base_url(&state, &headers);
    let resource = study_resource(&state, row, &root).await?;
    let mut response = fhir_json(StatusCode::OK, &resource);
    note_patient(&mut response, row);
    Ok(response)
}

/// The audit record names the patient whose study was read.
fn note_patient(response: &mut Response, row: &QidoRow) {
    response.extensions_mut().insert(super::auth::AuditNote {
        patient_id: text(row, "00100020"),
        ..Default::default()
    });
}

/// `GET /fhir/ImagingStudy?…`: a searchset Bundle, newest studies first.
pub async fn search_imaging_studies(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, FhirError> {
    check_accept(&headers)?;
    let raw = raw.unwrap_or_default();
    if raw.len() > 4096 {
        return Err(FhirError::invalid(
            "the query string is longer than 4096 bytes",
        ));
    }
    let params: Vec<(String, String)> = query_pairs(&raw)?;
    let strict = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("handling=strict"));
    let search = parse_search(&params, strict).map_err(FhirError::invalid)?;

    let mut url = reqwest013::Url::parse("http://q/").expect("a constant URL parses");
    {
        let mut query = url.query_pairs_mut();
        for (key, value) in &search.matches {
            query.append_pair(key, value);
        }
        query.append_pair("includefield", STUDY_INCLUDE);
        // One more than a page tells whether there is a next page.
        query.append_pair("limit", &(search.count + 1).to_string());
        query.append_pair("offset", &search.offset.to_string());
    }
    let mut rows = if search.count == 0 || search.impossible {
        Vec::new()
    } else {
        qido(
            &state,
            QueryLevel::Study,
            &Scope::default(),
            url.query().unwrap_or_default(),
            crate::fhir::MAX_COUNT + 1,
        )
        .await?
    };
    let more = rows.len() > search.count as usize;
    rows.truncate(search.count as usize);

    let root = super::base_url(&state, &headers);
    let mut studies = Vec::with_capacity(rows.len());
    for row in &rows {
        studies.push(study_resource(&state, row, &root).await?);
    }
    let base = fhir_base(&state, &headers);
    let page = |offset: u64| {
        let mut link =
            reqwest013::Url::parse(&format!("{base}/ImagingStudy")).unwrap_or_else(|_| {
                reqwest013::Url::parse("http://localhost/fhir/ImagingStudy").expect("constant")
            });
        {
            let mut q = link.query_pairs_mut();
            for (k, v) in params
                .iter()
                .filter(|(k, _)| k != "_offset" && k != "_count")
            {
                q.append_pair(k, v);
            }
            q.append_pair("_count", &search.count.to_string());
            q.append_pair("_offset", &offset.to_string());
        }
        link.to_string()
    };
    let next = more.then(|| page(search.offset + u64::from(search.count)));
    let bundle = searchset(studies, &base, page(search.offset), next, &search.ignored)?;
    let mut response = fhir_json(StatusCode::OK, &bundle);
    // A search by patient is recorded with that patient.
    if let Some((_, id)) = search.matches.iter().find(|(k, _)| *k == "PatientID") {
        response.extensions_mut().insert(super::auth::AuditNote {
            patient_id: Some(id.clone()),
            ..Default::default()
        });
    }
    Ok(response)
}

/// Decodes `a=b&c=d` (percent and `+` escapes).
fn query_pairs(raw: &str) -> Result<Vec<(String, String)>, FhirError> {
    let url = reqwest013::Url::parse(&format!("http://q/?{raw}"))
        .map_err(|_| FhirError::invalid("the query string cannot be read"))?;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs
        .iter()
        .any(|(k, v)| k.contains('\u{FFFD}') || v.contains('\u{FFFD}'))
    {
        return Err(FhirError::invalid("the query string is not UTF-8"));
    }
    Ok(pairs)
}

/// `GET /fhir/metadata`: what this FHIR server does (public, as FHIR
/// clients read it before they authenticate).
pub async fn capability_statement(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match capability(&fhir_base(&state, &headers)) {
        Ok(statement) => fhir_json(StatusCode::OK, &statement),
        Err(e) => FhirError::from(e).into_response(),
    }
}

fn capability(
    base: &str,
) -> Result<fhir_model::r4b::resources::CapabilityStatement, fhir_model::BuilderError> {
    use fhir_model::r4b::codes::{
        CapabilityStatementKind, FHIRVersion, PublicationStatus, ResourceType,
        RestfulCapabilityMode, SearchParamType,
    };
    use fhir_model::r4b::resources::{
        CapabilityStatement, CapabilityStatementImplementation, CapabilityStatementRest,
        CapabilityStatementRestResource, CapabilityStatementRestResourceInteraction,
        CapabilityStatementRestResourceSearchParam, CapabilityStatementSoftware,
    };
    let param = |name: &str, kind: SearchParamType, doc: &str| {
        CapabilityStatementRestResourceSearchParam::builder()
            .name(name.to_owned())
            .r#type(kind)
            .documentation(doc.to_owned())
            .build()
            .map(Some)
    };
    let interaction = |code: &str| {
        CapabilityStatementRestResourceInteraction::builder()
            .code(code.to_owned())
            .build()
            .map(Some)
    };
    let resource = CapabilityStatementRestResource::builder()
        .r#type(ResourceType::ImagingStudy)
        .interaction(vec![interaction("read")?, interaction("search-type")?])
        .search_param(vec![
            param("_id", SearchParamType::Token, "The Study Instance UID.")?,
            param(
                "identifier",
                SearchParamType::Token,
                "urn:oid:<Study Instance UID> (system urn:dicom:uid), or an accession number.",
            )?,
            param(
                "patient.identifier",
                SearchParamType::Token,
                "The Patient ID (also as subject:Patient.identifier); a system is accepted and not matched.",
            )?,
            param(
                "started",
                SearchParamType::Date,
                "Study date; prefixes eq, ge, gt, le, lt; repeat for a range. Times count for their whole day.",
            )?,
            param(
                "modality",
                SearchParamType::Token,
                "A DICOM modality code (system http://dicom.nema.org/resources/ontology/DCM); one per search.",
            )?,
            param("_count", SearchParamType::Number, "Entries per page, 0 to 100 (default 20).")?,
            param(
                "_offset",
                SearchParamType::Number,
                "Entries skipped: the paging of the next links (by offset: studies stored between pages can shift them).",
            )?,
        ])
        .build()?;
    let rest = CapabilityStatementRest::builder()
        .mode(RestfulCapabilityMode::Server)
        .documentation(
            "ImagingStudy, read-only, from the archive's index; pixels through the DICOMweb \
             endpoint each study names."
                .to_owned(),
        )
        .resource(vec![Some(resource)])
        .build()?;
    let today = fhir_model::time::OffsetDateTime::now_utc().date();
    CapabilityStatement::builder()
        .status(PublicationStatus::Active)
        .date(fhir_model::DateTime::Date(fhir_model::Date::Date(today)))
        .publisher("Aina".to_owned())
        .kind(CapabilityStatementKind::Instance)
        .software(
            CapabilityStatementSoftware::builder()
                .name("Aina".to_owned())
                .version(env!("CARGO_PKG_VERSION").to_owned())
                .build()?,
        )
        .implementation(
            CapabilityStatementImplementation::builder()
                .description("Aina PACS".to_owned())
                .url(base.to_owned())
                .build()?,
        )
        .fhir_version(FHIRVersion::N401)
        .format(vec![
            Some("json".to_owned()),
            Some(FHIR_JSON_TYPE.to_owned()),
        ])
        .rest(vec![Some(rest)])
        .build()
}

const FHIR_JSON_TYPE: &str = "application/fhir+json";
