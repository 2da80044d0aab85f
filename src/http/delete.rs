//! DICOMweb DELETE of a study, a series or an instance (administrators; the
//! route table says so). The index rows go first, in one transaction, so no
//! row ever points at a missing object; then the objects, their derived
//! previews and thumbnails, and what the render cache holds of them. An
//! object that cannot be removed is left behind, logged, for `aina verify
//! --repair` to remove: the delete has happened. One whose instance was
//! stored again while the removals ran is kept.
//!
//! Success is `204 No Content`, as dcm4chee-arc answers its
//! `DELETE …/rs/studies/{study}`; nothing stored under the path is `404`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::auth::AuditNote;
use super::error::ApiError;
use super::wado::scope;
use crate::app::AppState;
use crate::index::Scope;
use crate::ingest::remove_deleted_object;

/// `DELETE /dicomweb/studies/{study}`
pub async fn delete_study(
    State(state): State<AppState>,
    Path(study): Path<String>,
) -> Result<Response, ApiError> {
    delete(state, scope(study, None, None)?).await
}

/// `DELETE /dicomweb/studies/{study}/series/{series}`
pub async fn delete_series(
    State(state): State<AppState>,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    delete(state, scope(study, Some(series), None)?).await
}

/// `DELETE /dicomweb/studies/{study}/series/{series}/instances/{instance}`
pub async fn delete_instance(
    State(state): State<AppState>,
    Path((study, series, instance)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    delete(state, scope(study, Some(series), Some(instance))?).await
}

async fn delete(state: AppState, scope: Scope) -> Result<Response, ApiError> {
    let deleted = state.index.delete(&scope).await?;
    if deleted.objects.is_empty() {
        return Err(ApiError::not_found("nothing stored matches"));
    }
    // The rows are committed: from here on the delete has happened, and a
    // failure only leaves bytes behind (logged by key, never by patient).
    let shas: Vec<String> = deleted.objects.iter().map(|(_, sha)| sha.clone()).collect();
    state.render.forget_cached(&shas);
    // A few instances at a time: a large study on S3 is thousands of round
    // trips, and the client is waiting. In a task of its own, so that a
    // client hanging up does not stop it halfway and leave orphans.
    let objects = deleted.objects.clone();
    let cleanup = tokio::spawn({
        let state = state.clone();
        async move {
            futures::stream::iter(objects)
                .map(|(key, sha256)| remove_objects(state.clone(), key, sha256))
                .buffer_unordered(8)
                .fold(0usize, |sum, n| async move { sum + n })
                .await
        }
    });
    let left = cleanup.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "removing deleted objects failed; `aina verify` lists what is left");
        deleted.objects.len()
    });
    tracing::info!(
        study = scope.study.as_deref().unwrap_or_default(),
        series = scope.series.as_deref().unwrap_or_default(),
        instance = scope.instance.as_deref().unwrap_or_default(),
        instances = deleted.instances.len(),
        objects = deleted.objects.len(),
        left_behind = left,
        "deleted"
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(AuditNote {
        patient_id: deleted.patient_id,
        instances: deleted.instances,
        ..Default::default()
    });
    Ok(response)
}

/// Removes one deleted instance version's object and derived objects; how
/// many of the two removals failed (logged, by key or SHA-256 only). A
/// version stored again meanwhile keeps both.
async fn remove_objects(state: AppState, key: String, sha256: String) -> usize {
    let mut left = 0;
    match remove_deleted_object(&*state.index, &state.store, &key).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(
                key,
                "deleted instance stored again meanwhile; its object kept"
            );
            return 0;
        }
        Err(e) => {
            left += 1;
            tracing::warn!(key, error = %e, "deleted instance's object not removed; a leftover for `aina verify --repair`");
        }
    }
    if let Err(e) = state.render.delete_derived(&sha256).await {
        left += 1;
        tracing::warn!(sha256, error = %e, "deleted instance's previews or thumbnail not removed");
    }
    left
}
