//! QIDO-RS (PS3.18 §10.6): searches for studies, series and instances, top-level
//! and nested. The query is parsed by `aina_dicomweb::qido`, answered by the
//! index; RetrieveURL is added here, where the base URL is known.

use aina_dicomweb::qido::{QidoQuery, QueryLevel, parse_query};
use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use crate::app::AppState;
use crate::auth::shares::ShareInfo;
use crate::index::Scope;

/// The most results one request returns; `limit` above it is clamped.
pub const MAX_LIMIT: u32 = 1000;

/// `GET /dicomweb/studies`
pub async fn search_studies(
    State(state): State<AppState>,
    share: Option<Extension<ShareInfo>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    search(state, headers, QueryLevel::Study, root_scope(share), q).await
}

/// `GET /dicomweb/series`
pub async fn search_series(
    State(state): State<AppState>,
    share: Option<Extension<ShareInfo>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    search(state, headers, QueryLevel::Series, root_scope(share), q).await
}

/// `GET /dicomweb/instances`
pub async fn search_instances(
    State(state): State<AppState>,
    share: Option<Extension<ShareInfo>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    search(state, headers, QueryLevel::Instance, root_scope(share), q).await
}

/// A search from the root: everything, or for a share link its one study
/// whatever the query says (the gate has checked the query names it; this
/// holds even if a key slipped past that check).
fn root_scope(share: Option<Extension<ShareInfo>>) -> Scope {
    Scope {
        study: share.map(|Extension(s)| s.study_instance_uid),
        ..Default::default()
    }
}

/// `GET /dicomweb/studies/{study}/series`
pub async fn search_study_series(
    State(state): State<AppState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let scope = Scope {
        study: Some(study),
        ..Default::default()
    };
    search(state, headers, QueryLevel::Series, scope, q).await
}

/// `GET /dicomweb/studies/{study}/instances`
pub async fn search_study_instances(
    State(state): State<AppState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let scope = Scope {
        study: Some(study),
        ..Default::default()
    };
    search(state, headers, QueryLevel::Instance, scope, q).await
}

/// `GET /dicomweb/studies/{study}/series/{series}/instances`
pub async fn search_series_instances(
    State(state): State<AppState>,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let scope = Scope {
        study: Some(study),
        series: Some(series),
        instance: None,
    };
    search(state, headers, QueryLevel::Instance, scope, q).await
}

async fn search(
    state: AppState,
    headers: HeaderMap,
    level: QueryLevel,
    scope: Scope,
    raw_query: Option<String>,
) -> Result<Response, ApiError> {
    for uid in [&scope.study, &scope.series].into_iter().flatten() {
        if !crate::ingest::is_valid_uid(uid) {
            return Err(ApiError::bad_request(format!(
                "{uid:?} in the path is not a valid UID"
            )));
        }
    }
    let query: QidoQuery = parse_query(level, raw_query.as_deref().unwrap_or(""), MAX_LIMIT)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let outcome = state.index.search(&query, &scope).await?;
    let base = super::base_url(&state, &headers);
    let rows: Vec<Value> = outcome
        .rows
        .into_iter()
        .map(|mut row| {
            if let Some(url) = retrieve_url(&base, level, &row) {
                row.insert("00081190".to_owned(), json!({"vr": "UR", "Value": [url]}));
            }
            // Attributes in tag order, as in a data set (keys are 8-digit hex).
            row.sort_keys();
            Value::Object(row)
        })
        .collect();
    let mut res = Value::Array(rows).to_string().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/dicom+json"),
    );
    let mut warnings = Vec::new();
    if !outcome.unsupported.is_empty() {
        let list: Vec<String> = outcome
            .unsupported
            .iter()
            .map(|t| format!("{:04X}{:04X}", t.group(), t.element()))
            .collect();
        warnings.push(format!(
            "299 aina \"The following attributes are not supported for matching and were ignored: {}\"",
            list.join(", ")
        ));
    }
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&w) {
            res.headers_mut().append(header::WARNING, v);
        }
    }
    Ok(res)
}

fn uid_of(row: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    row.get(key)?
        .get("Value")?
        .get(0)?
        .as_str()
        .map(str::to_owned)
}

/// RetrieveURL (0008,1190) of a result row.
fn retrieve_url(
    base: &str,
    level: QueryLevel,
    row: &serde_json::Map<String, Value>,
) -> Option<String> {
    let study = uid_of(row, "0020000D")?;
    match level {
        QueryLevel::Study => Some(format!("{base}/studies/{study}")),
        QueryLevel::Series => {
            let series = uid_of(row, "0020000E")?;
            Some(format!("{base}/studies/{study}/series/{series}"))
        }
        QueryLevel::Instance => {
            let series = uid_of(row, "0020000E")?;
            let sop = uid_of(row, "00080018")?;
            Some(format!(
                "{base}/studies/{study}/series/{series}/instances/{sop}"
            ))
        }
    }
}
