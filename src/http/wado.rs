//! WADO-RS (PS3.18 §10.4) retrieve of studies, series, instances, metadata,
//! frames and bulk data; and WADO-URI (PS3.18 §9) for `application/dicom`.
//!
//! Bodies are streamed: instance after instance, segment after segment, the next
//! few instances read while one is sent (`retrieve::read_ahead`). Responses
//! of immutable resources carry a strong ETag and a boundary derived from it, so
//! the same request gives the same bytes and `If-None-Match` answers 304.

use aina_dicomweb::multipart::RelatedWriter;
use aina_dicomweb::negotiate::{self, FrameEncoding, TransferSyntaxRequest};
use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::app::AppState;
use crate::index::{Scope, StoredInstance};
use crate::ingest::{BULK_BASE_MARKER, is_valid_uid};
use crate::retrieve::{self, Encoding, RetrieveError};

/// The Accept of a request: the `accept` query parameter wins over the header
/// (PS3.18 §8.3.3.1).
pub(super) fn accept(headers: &HeaderMap, raw_query: Option<&str>) -> Option<String> {
    raw_query
        .and_then(negotiate::accept_from_query)
        .or_else(|| {
            headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
}

pub(super) fn scope(
    study: String,
    series: Option<String>,
    instance: Option<String>,
) -> Result<Scope, ApiError> {
    for uid in std::iter::once(&study)
        .chain(series.iter())
        .chain(instance.iter())
    {
        if !is_valid_uid(uid) {
            return Err(ApiError::bad_request(format!(
                "{uid:?} in the path is not a valid UID"
            )));
        }
    }
    Ok(Scope {
        study: Some(study),
        series,
        instance,
    })
}

/// A strong ETag over the given parts, and a multipart boundary derived from it.
pub(super) fn etag_and_boundary<'a>(parts: impl IntoIterator<Item = &'a str>) -> (String, String) {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let hex = hex::encode(&h.finalize()[..16]);
    (format!("\"{hex}\""), format!("aina-{hex}"))
}

pub(super) fn not_modified(headers: &HeaderMap, etag: &str) -> Option<Response> {
    let inm = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    inm.split(',')
        .any(|t| {
            let t = t.trim();
            t == "*" || t == etag || t.strip_prefix("W/") == Some(etag)
        })
        .then(|| {
            let mut res = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(v) = HeaderValue::from_str(etag) {
                res.headers_mut().insert(header::ETAG, v);
            }
            res
        })
}

pub(super) fn with_headers(mut res: Response, content_type: &str, etag: Option<&str>) -> Response {
    if let Ok(v) = HeaderValue::from_str(content_type) {
        res.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    if let Some(etag) = etag
        && let Ok(v) = HeaderValue::from_str(etag)
    {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

/// `GET /dicomweb/studies/{study}`
pub async fn retrieve_study(
    State(state): State<AppState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    retrieve_instances(state, headers, q, scope(study, None, None)?).await
}

/// `GET /dicomweb/studies/{study}/series/{series}`
pub async fn retrieve_series(
    State(state): State<AppState>,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    retrieve_instances(state, headers, q, scope(study, Some(series), None)?).await
}

/// `GET /dicomweb/studies/{study}/series/{series}/instances/{instance}`
pub async fn retrieve_instance(
    State(state): State<AppState>,
    Path((study, series, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let scope = scope(study, Some(series), Some(instance))?;
    retrieve_instances(state, headers, q, scope).await
}

/// How each instance is sent, decided before the first byte so that a 406 is
/// still possible.
fn encodings(
    request: &TransferSyntaxRequest,
    instances: &[StoredInstance],
) -> Result<Vec<Encoding>, RetrieveError> {
    instances
        .iter()
        .map(|inst| {
            let stored = inst.transfer_syntax_uid.as_str();
            let wanted = match request {
                TransferSyntaxRequest::Original => None,
                // No transfer-syntax asked: Explicit VR Little Endian where that is a
                // re-encoding, the stored compressed form otherwise (PS3.18 §8.7.3
                // lets the server keep compressed pixel data; decoding is `render`'s).
                TransferSyntaxRequest::Default if retrieve::is_uncompressed(stored) => {
                    Some(negotiate::DEFAULT_TRANSFER_SYNTAX)
                }
                TransferSyntaxRequest::Default => None,
                TransferSyntaxRequest::Uid(uid) => Some(uid.as_str()),
            };
            retrieve::choose_encoding(stored, wanted)
        })
        .collect()
}

async fn retrieve_instances(
    state: AppState,
    headers: HeaderMap,
    raw_query: Option<String>,
    scope: Scope,
) -> Result<Response, ApiError> {
    let accept = accept(&headers, raw_query.as_deref());
    let request = negotiate::negotiate_instances(accept.as_deref())
        .map_err(|e| ApiError::not_acceptable(e.to_string()))?;
    let instances = state.retrieve.instances(&scope).await?;
    let encodings = encodings(&request, &instances)?;
    let tags: Vec<String> = instances
        .iter()
        .zip(&encodings)
        .map(|(i, e)| format!("{}:{}", i.sha256, retrieve::sent_transfer_syntax(i, e)))
        .collect();
    let (etag, boundary) = etag_and_boundary(tags.iter().map(String::as_str));
    if let Some(res) = not_modified(&headers, &etag) {
        return Ok(res);
    }
    let mut writer = RelatedWriter::with_boundary(boundary);
    let content_type = writer.content_type("application/dicom");

    // A task feeds the body through a small channel; the next few instances are
    // read while one is being sent (`read_ahead`), in order. An error midway can
    // only cut the body short.
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let retrieve = state.retrieve.clone();
    let render = state.render.clone();
    tokio::spawn(async move {
        let bodies = retrieve::read_ahead(instances.into_iter().zip(encodings), move |(i, e)| {
            encoded(&retrieve, &render, i, e.clone())
        });
        let mut bodies = std::pin::pin!(bodies);
        while let Some(((inst, encoding), mut body)) = bodies.next().await {
            let ts = retrieve::sent_transfer_syntax(&inst, &encoding).to_owned();
            let header =
                writer.part_header(&format!("application/dicom; transfer-syntax={ts}"), &[]);
            if tx.send(Ok(header)).await.is_err() {
                return;
            }
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| {
                    tracing::error!(error = ?e, sop_instance_uid = inst.sop_instance_uid, "retrieve failed midway");
                    std::io::Error::other(e.message)
                });
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        }
        let _ = tx.send(Ok(writer.closing())).await;
    });
    Ok(with_headers(
        Body::from_stream(rx).into_response(),
        &content_type,
        Some(&etag),
    ))
}

/// An instance as `encoding` asks: decompression by the render service, the
/// rest by retrieve.
fn encoded(
    retrieve: &retrieve::Retrieve,
    render: &crate::render::Render,
    inst: &StoredInstance,
    encoding: Encoding,
) -> futures::stream::BoxStream<'static, Result<Bytes, ApiError>> {
    match encoding {
        Encoding::Decompressed => {
            let render = render.clone();
            let inst = inst.clone();
            futures::stream::once(
                async move { Ok(render.decompressed_instance(&inst).await?.bytes) },
            )
            .boxed()
        }
        other => retrieve
            .encoded(inst, other)
            .map(|r| r.map_err(ApiError::from))
            .boxed(),
    }
}

/// `GET /dicomweb/studies/{study}/metadata`
pub async fn retrieve_study_metadata(
    State(state): State<AppState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    metadata(state, headers, q, scope(study, None, None)?).await
}

/// `GET /dicomweb/studies/{study}/series/{series}/metadata`
pub async fn retrieve_series_metadata(
    State(state): State<AppState>,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    metadata(state, headers, q, scope(study, Some(series), None)?).await
}

/// `GET /dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata`
pub async fn retrieve_instance_metadata(
    State(state): State<AppState>,
    Path((study, series, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    metadata(
        state,
        headers,
        q,
        scope(study, Some(series), Some(instance))?,
    )
    .await
}

/// Metadata is the DICOM JSON stored at ingest, joined into an array; only the
/// BulkDataURI base is filled in, by a string replacement on a marker that cannot
/// occur elsewhere (it follows the unescaped key `"BulkDataURI":"`).
async fn metadata(
    state: AppState,
    headers: HeaderMap,
    raw_query: Option<String>,
    scope: Scope,
) -> Result<Response, ApiError> {
    let accept = accept(&headers, raw_query.as_deref());
    let media = negotiate::negotiate_metadata(accept.as_deref())
        .map_err(|e| ApiError::not_acceptable(e.to_string()))?;
    let docs = state.retrieve.metadata(&scope).await?;
    let base = super::base_url(&state, &headers);
    let total: usize = docs.iter().map(String::len).sum();
    let mut body = String::with_capacity(total + docs.len() + 2);
    body.push('[');
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(d);
    }
    body.push(']');
    let marker = format!("\"BulkDataURI\":\"{BULK_BASE_MARKER}");
    let body = body.replace(&marker, &format!("\"BulkDataURI\":\"{base}"));
    let (etag, _) = etag_and_boundary([body.as_str()]);
    if let Some(res) = not_modified(&headers, &etag) {
        return Ok(res);
    }
    Ok(with_headers(body.into_response(), media, Some(&etag)))
}

/// Parses `1,3,5` (1-based, no duplicates needed, at most 4096 numbers).
pub(super) fn parse_frame_list(list: &str) -> Result<Vec<u32>, ApiError> {
    let frames: Vec<u32> = list
        .split(',')
        .map(|f| {
            f.trim()
                .parse::<u32>()
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "frame list {list:?}: {f:?} is not a frame number (1, 2, …)"
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    if frames.len() > 4096 {
        return Err(ApiError::bad_request("at most 4096 frames per request"));
    }
    Ok(frames)
}

/// `GET …/instances/{instance}/frames/{frames}`
pub async fn retrieve_frames(
    State(state): State<AppState>,
    Path((study, series, instance, frames)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let frames = parse_frame_list(&frames)?;
    let scope = scope(study, Some(series), Some(instance))?;
    frames_response(state, headers, q, scope, Some(frames)).await
}

/// `GET …/instances/{instance}/bulkdata/{path}`: Pixel Data (7FE00010) is sent
/// frame by frame as for `/frames`; other elements as one octet-stream part.
pub async fn retrieve_bulkdata(
    State(state): State<AppState>,
    Path((study, series, instance, path)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let scope = scope(study, Some(series), Some(instance))?;
    if path.eq_ignore_ascii_case("7FE00010") {
        return frames_response(state, headers, q, scope, None).await;
    }
    let inst = single(&state, &scope).await?;
    let (etag, boundary) = etag_and_boundary([inst.sha256.as_str(), path.as_str()]);
    if let Some(res) = not_modified(&headers, &etag) {
        return Ok(res);
    }
    let value = state.retrieve.bulk_value(&inst, &path).await?;
    let mut writer = RelatedWriter::with_boundary(boundary);
    let body = [
        writer.part_header("application/octet-stream", &[]),
        value,
        writer.closing(),
    ]
    .concat();
    Ok(with_headers(
        body.into_response(),
        &writer.content_type("application/octet-stream"),
        Some(&etag),
    ))
}

pub(super) async fn single(state: &AppState, scope: &Scope) -> Result<StoredInstance, ApiError> {
    let mut found = state.retrieve.instances(scope).await?;
    found
        .pop()
        .ok_or_else(|| ApiError::not_found("instance not found"))
}

async fn frames_response(
    state: AppState,
    headers: HeaderMap,
    raw_query: Option<String>,
    scope: Scope,
    frames: Option<Vec<u32>>,
) -> Result<Response, ApiError> {
    let accept = accept(&headers, raw_query.as_deref());
    let choice = negotiate::negotiate_frames(accept.as_deref())
        .map_err(|e| ApiError::not_acceptable(e.to_string()))?;
    let inst = single(&state, &scope).await?;
    let encoding = choice.select(&inst.transfer_syntax_uid).ok_or_else(|| {
        ApiError::not_acceptable(format!(
            "frames are stored as {} ({}); ask for that media type, application/octet-stream with transfer-syntax=*, or */*",
            negotiate::frame_media_type(&inst.transfer_syntax_uid),
            inst.transfer_syntax_uid
        ))
    })?;
    let (part_type, ts) = match &encoding {
        FrameEncoding::Uncompressed if retrieve::is_uncompressed(&inst.transfer_syntax_uid) => {
            ("application/octet-stream", None)
        }
        // Compressed frames asked uncompressed are decoded (render).
        FrameEncoding::Uncompressed => ("application/octet-stream", None),
        FrameEncoding::AsStored {
            media_type,
            transfer_syntax_uid,
        } => (*media_type, Some(transfer_syntax_uid.clone())),
    };
    let frames = match frames {
        Some(f) => f,
        None => {
            let count = inst.number_of_frames.unwrap_or(1).max(1);
            (1..=count as u32).collect()
        }
    };
    let list: Vec<String> = frames.iter().map(u32::to_string).collect();
    let (etag, boundary) = etag_and_boundary([inst.sha256.as_str(), part_type, &list.join(",")]);
    if let Some(res) = not_modified(&headers, &etag) {
        return Ok(res);
    }
    let decode = matches!(encoding, FrameEncoding::Uncompressed)
        && !retrieve::is_uncompressed(&inst.transfer_syntax_uid);
    let data = if decode {
        let mut out = Vec::with_capacity(frames.len());
        for &n in &frames {
            out.push(state.render.decompressed_frame(&inst, n).await?.bytes);
        }
        out
    } else {
        state.retrieve.frames(&inst, &frames).await?
    };
    let mut writer = RelatedWriter::with_boundary(boundary);
    let part_ct = match &ts {
        Some(ts) => format!("{part_type}; transfer-syntax={ts}"),
        None => part_type.to_owned(),
    };
    let mut body =
        Vec::with_capacity(data.iter().map(Bytes::len).sum::<usize>() + 256 * data.len());
    for d in &data {
        body.extend_from_slice(&writer.part_header(&part_ct, &[]));
        body.extend_from_slice(d);
    }
    body.extend_from_slice(&writer.closing());
    let content_type = match &ts {
        Some(ts) => format!("{}; transfer-syntax={ts}", writer.content_type(part_type)),
        None => writer.content_type(part_type),
    };
    Ok(with_headers(
        body.into_response(),
        &content_type,
        Some(&etag),
    ))
}

/// WADO-URI query parameters (PS3.18 §9.1).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WadoUriParams {
    pub(super) request_type: Option<String>,
    #[serde(rename = "studyUID")]
    pub(super) study_uid: Option<String>,
    #[serde(rename = "seriesUID")]
    pub(super) series_uid: Option<String>,
    #[serde(rename = "objectUID")]
    pub(super) object_uid: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) transfer_syntax: Option<String>,
    pub(super) window_center: Option<String>,
    pub(super) window_width: Option<String>,
    pub(super) rows: Option<String>,
    pub(super) columns: Option<String>,
    pub(super) frame_number: Option<String>,
    pub(super) image_quality: Option<String>,
    pub(super) region: Option<String>,
    #[serde(rename = "presentationUID")]
    pub(super) presentation_uid: Option<String>,
}

/// `GET /wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…` (also under
/// `/dicomweb/wado`): the instance as `application/dicom`, or rendered as
/// `image/jpeg` (the default content type), `image/png` or `image/webp` with
/// `windowCenter`/`windowWidth`, `rows`/`columns`, `frameNumber`, `imageQuality`.
pub async fn wado_uri(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<WadoUriParams>,
) -> Result<Response, ApiError> {
    if p.request_type.as_deref() != Some("WADO") {
        return Err(ApiError::bad_request("requestType must be WADO"));
    }
    let (Some(study), Some(series), Some(object)) = (
        p.study_uid.clone(),
        p.series_uid.clone(),
        p.object_uid.clone(),
    ) else {
        return Err(ApiError::bad_request(
            "studyUID, seriesUID and objectUID are required",
        ));
    };
    let content_type = p
        .content_type
        .clone()
        .unwrap_or_else(|| "image/jpeg".to_owned());
    let wants_dicom = content_type
        .split(',')
        .map(str::trim)
        .any(|c| c.eq_ignore_ascii_case("application/dicom"));
    if !wants_dicom {
        let scope = scope(study, Some(series), Some(object))?;
        return super::render::wado_uri_rendered(&state, &headers, &p, &content_type, scope).await;
    }
    let scope = scope(study, Some(series), Some(object))?;
    let inst = single(&state, &scope).await?;
    let wanted = match p.transfer_syntax.as_deref() {
        None | Some("*") => None,
        Some(ts) => Some(ts),
    };
    let encoding = retrieve::choose_encoding(&inst.transfer_syntax_uid, wanted)?;
    let ts = retrieve::sent_transfer_syntax(&inst, &encoding).to_owned();
    let (etag, _) = etag_and_boundary([inst.sha256.as_str(), ts.as_str()]);
    if let Some(res) = not_modified(&headers, &etag) {
        return Ok(res);
    }
    let stream = encoded(&state.retrieve, &state.render, &inst, encoding).map(|r| {
        r.map_err(|e| {
            tracing::error!(error = ?e, "WADO-URI retrieve failed midway");
            std::io::Error::other(e.message)
        })
    });
    let mut res = with_headers(
        Body::from_stream(stream).into_response(),
        "application/dicom",
        Some(&etag),
    );
    if ts == inst.transfer_syntax_uid {
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(inst.size_bytes));
    }
    let disposition = format!("attachment; filename=\"{}.dcm\"", inst.sop_instance_uid);
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}
