//! DICOMweb DELETE of a study, a series or an instance (administrators; the
//! route table says so). The index rows go first, in one transaction, so no
//! row ever points at a missing object; then the objects and their derived
//! previews and thumbnails. An object that cannot be removed is left as an
//! orphan, logged, for `aina verify` to list: the delete has happened.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::auth::AuditNote;
use super::error::ApiError;
use super::wado::scope;
use crate::app::AppState;
use crate::index::Scope;
use crate::render::derived::{preview_key, thumbnail_key};

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
    for (key, sha256, frames) in &deleted.objects {
        let derived = (1..=*frames)
            .map(|f| preview_key(sha256, f))
            .chain(std::iter::once(thumbnail_key(sha256)));
        for key in std::iter::once(key.clone()).chain(derived) {
            if let Err(e) = state.store.delete(&key).await {
                tracing::warn!(key, error = %e, "deleted instance's object not removed; an orphan for `aina verify`");
            }
        }
    }
    tracing::info!(
        study = scope.study.as_deref().unwrap_or_default(),
        series = scope.series.as_deref().unwrap_or_default(),
        instance = scope.instance.as_deref().unwrap_or_default(),
        instances = deleted.instances.len(),
        objects = deleted.objects.len(),
        "deleted"
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(AuditNote {
        patient_id: deleted.patient_id,
        instances: deleted.instances,
    });
    Ok(response)
}
