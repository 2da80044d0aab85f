//! `GET /audit`: the audit log for administrators, filtered and paged (see
//! [`AuditFilter`]; unknown parameters are refused).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};

use super::error::ApiError;
use crate::app::AppState;
use crate::auth::audit::{AuditFilter, AuditRecord};

pub async fn search_audit(
    State(state): State<AppState>,
    filter: Result<Query<AuditFilter>, QueryRejection>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    let Query(filter) = filter.map_err(|e| ApiError::bad_request(e.body_text()))?;
    // Everything recorded up to this request, the admin's own included.
    state.audit.flush().await;
    Ok(Json(state.audit_log.search(&filter).await?))
}
