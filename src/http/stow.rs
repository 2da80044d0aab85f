//! STOW-RS (PS3.18 §10.5): `POST /studies` and `POST /studies/{study}`.
//!
//! The multipart/related body is read part by part; each part is ingested while
//! the next one is read (two in flight), so a request of any size needs memory
//! for about two instances. A part that fails is reported in FailedSOPSequence
//! and the rest of the request still lands; a body cut off mid-upload keeps what
//! arrived whole.

use std::collections::VecDeque;

use aina_dicomweb::multipart::{MultipartError, RelatedReader, parse_related_content_type};
use aina_dicomweb::stow::{self, FailedInstance, ReferencedInstance, StowResponse};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;

use super::auth::AuditNote;
use super::error::ApiError;
use crate::app::AppState;
use crate::ingest::{Accepted, Disposition, IngestError, Refused};

/// `POST /dicomweb/studies`
pub async fn store_instances(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    store(state, headers, None, body).await
}

/// `POST /dicomweb/studies/{study}`
pub async fn store_instances_in_study(
    State(state): State<AppState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !crate::ingest::is_valid_uid(&study) {
        return Err(ApiError::bad_request(format!(
            "study {study:?} in the path is not a valid UID"
        )));
    }
    store(state, headers, Some(study), body).await
}

async fn store(
    state: AppState,
    headers: HeaderMap,
    study: Option<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unsupported_media_type(
                "STOW-RS needs Content-Type: multipart/related; type=\"application/dicom\"",
            )
        })?;
    let related = parse_related_content_type(content_type)
        .map_err(|e| ApiError::unsupported_media_type(e.to_string()))?;
    if let Some(t) = &related.type_
        && !t.eq_ignore_ascii_case("application/dicom")
    {
        return Err(ApiError::unsupported_media_type(format!(
            "multipart/related type {t:?} is not supported; send type=\"application/dicom\" (PS3.10 files)"
        )));
    }
    let xml = aina_dicomweb::negotiate::wants_xml(
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
    );
    let base = super::base_url(&state, &headers);
    let mut reader = RelatedReader::new(body.into_data_stream(), related.boundary);
    let mut response = StowResponse::default();
    let mut note = AuditNote::default();
    if let Some(s) = &study {
        response.retrieve_url = Some(format!("{base}/studies/{s}"));
    }
    let mut in_flight = VecDeque::new();
    let mut parts = 0usize;
    let max = state.ingest.max_instance_bytes();
    loop {
        // The slot is taken before the part is read into memory (see Ingest::slot).
        let slot = state.ingest.slot().await;
        let next = match reader.next_part().await {
            Ok(Some(part)) => part,
            Ok(None) => break,
            Err(e) => {
                if parts == 0
                    && in_flight.is_empty()
                    && !matches!(e, MultipartError::Truncated { .. })
                {
                    return Err(ApiError::bad_request(format!(
                        "cannot read the multipart/related body: {e}"
                    )));
                }
                response.failed.push(unreadable(parts + 1, &e));
                break;
            }
        };
        parts += 1;
        let mut part = next;
        if let Some(ct) = part.content_type()
            && !ct
                .trim()
                .to_ascii_lowercase()
                .starts_with("application/dicom")
        {
            response.failed.push(FailedInstance {
                sop_class_uid: None,
                sop_instance_uid: None,
                failure_reason: stow::failure::CANNOT_UNDERSTAND,
                detail: format!("part {parts} has Content-Type {ct:?}, expected application/dicom"),
            });
            if let Err(e) = drain(&mut part).await {
                response.failed.push(unreadable(parts, &e));
                break;
            }
            continue;
        }
        let mut buf = BytesMut::new();
        let mut too_large = false;
        let read = loop {
            match part.chunk().await {
                Ok(Some(chunk)) => {
                    if too_large || (buf.len() + chunk.len()) as u64 > max {
                        too_large = true;
                        buf = BytesMut::new();
                    } else {
                        buf.extend_from_slice(&chunk);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = read {
            response.failed.push(unreadable(parts, &e));
            break;
        }
        if too_large {
            response.failed.push(FailedInstance {
                sop_class_uid: None,
                sop_instance_uid: None,
                failure_reason: stow::failure::OUT_OF_RESOURCES,
                detail: format!(
                    "part {parts} is larger than the maximum instance size of {max} bytes"
                ),
            });
            continue;
        }
        let ingest = state.ingest.clone();
        let study = study.clone();
        let bytes = buf.freeze();
        in_flight.push_back(tokio::spawn(async move {
            ingest.ingest(slot, bytes, study.as_deref()).await
        }));
        if in_flight.len() >= 2
            && let Some(task) = in_flight.pop_front()
        {
            record(&mut response, &mut note, &base, task.await);
        }
    }
    while let Some(task) = in_flight.pop_front() {
        record(&mut response, &mut note, &base, task.await);
    }
    if parts == 0 {
        return Err(ApiError::bad_request(
            "the multipart/related body has no parts",
        ));
    }
    let mut res = respond(&response, xml);
    res.extensions_mut().insert(note);
    Ok(res)
}

fn unreadable(part: usize, e: &MultipartError) -> FailedInstance {
    let detail = match e {
        MultipartError::Truncated { .. } => {
            format!(
                "part {part}: the request body ended before the part was complete (upload cut off)"
            )
        }
        other => format!("part {part}: cannot read the part: {other}"),
    };
    FailedInstance {
        sop_class_uid: None,
        sop_instance_uid: None,
        failure_reason: stow::failure::CANNOT_UNDERSTAND,
        detail,
    }
}

async fn drain(part: &mut aina_dicomweb::multipart::Part<'_>) -> Result<(), MultipartError> {
    while part.chunk().await?.is_some() {}
    Ok(())
}

/// Adds one instance's outcome to the response, and a stored one to the
/// audit note (one audit event per instance).
fn record(
    response: &mut StowResponse,
    note: &mut AuditNote,
    base: &str,
    result: Result<Result<Accepted, Refused>, tokio::task::JoinError>,
) {
    match result {
        Ok(Ok(a)) => {
            let (warning_reason, warning_detail) = match &a.disposition {
                Disposition::Stored | Disposition::AlreadyStored => (
                    a.warning
                        .as_ref()
                        .map(|_| stow::warning::COERCION_OF_DATA_ELEMENTS),
                    a.warning.clone(),
                ),
                Disposition::KeptBothVersions { previous_sha256 } => (
                    Some(stow::warning::COERCION_OF_DATA_ELEMENTS),
                    Some(format!(
                        "SOP Instance UID was stored with different content (sha256 {previous_sha256}); both versions kept, this one is current"
                    )),
                ),
                Disposition::Replaced => (
                    Some(stow::warning::COERCION_OF_DATA_ELEMENTS),
                    Some(
                        "SOP Instance UID was stored with different content; replaced by this one"
                            .to_owned(),
                    ),
                ),
            };
            note.instances.push((
                a.study_instance_uid.clone(),
                a.series_instance_uid.clone(),
                a.sop_instance_uid.clone(),
            ));
            response.referenced.push(ReferencedInstance {
                retrieve_url: Some(format!(
                    "{base}/studies/{}/series/{}/instances/{}",
                    a.study_instance_uid, a.series_instance_uid, a.sop_instance_uid
                )),
                sop_class_uid: a.sop_class_uid,
                sop_instance_uid: a.sop_instance_uid,
                warning_reason,
                warning_detail,
            });
        }
        Ok(Err(refused)) => {
            if !refused.error.is_input_error() {
                tracing::error!(error = ?refused.error, "instance not stored");
            }
            let failure_reason = match &*refused.error {
                IngestError::Conflict { .. } => stow::failure::DUPLICATE_SOP_INSTANCE,
                IngestError::StudyMismatch { .. } => {
                    stow::failure::DATA_SET_DOES_NOT_MATCH_SOP_CLASS
                }
                IngestError::TooLarge { .. } => stow::failure::OUT_OF_RESOURCES,
                IngestError::UnknownTransferSyntax(_) => {
                    stow::failure::TRANSFER_SYNTAX_NOT_SUPPORTED
                }
                e if !e.is_input_error() => stow::failure::PROCESSING_FAILURE,
                _ => stow::failure::CANNOT_UNDERSTAND,
            };
            let detail = if refused.error.is_input_error() {
                error_chain(&*refused.error)
            } else {
                "the archive could not store the instance; see the server log".to_owned()
            };
            response.failed.push(FailedInstance {
                sop_class_uid: refused.sop_class_uid,
                sop_instance_uid: refused.sop_instance_uid,
                failure_reason,
                detail,
            });
        }
        Err(join) => {
            tracing::error!(error = %join, "ingest task failed");
            response.failed.push(FailedInstance {
                sop_class_uid: None,
                sop_instance_uid: None,
                failure_reason: stow::failure::PROCESSING_FAILURE,
                detail: "the archive could not store the instance; see the server log".to_owned(),
            });
        }
    }
}

/// The message of an input error with its causes, for the sender.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        source = c.source();
    }
    s
}

fn respond(response: &StowResponse, xml: bool) -> Response {
    let status = StatusCode::from_u16(response.http_status()).unwrap_or(StatusCode::OK);
    let (content_type, body) = if xml {
        ("application/dicom+xml", response.to_xml())
    } else {
        ("application/dicom+json", response.to_json().to_string())
    };
    let mut res = (status, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}
