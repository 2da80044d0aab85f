//! Share links over HTTP: made and revoked by readers, clinicians and admins
//! (`/shares`), opened by anyone holding one (`/s/{token}`), which sets the
//! share cookie and lands on the viewer, read-only on the one study
//! (`auth::share_reaches` decides what the link reaches).

use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::{SHARE_COOKIE, client_address, cookie_header};
use super::error::ApiError;
use crate::app::AppState;
use crate::auth::audit::{Action, AuditEvent, Outcome};
use crate::auth::shares::parse_token;
use crate::auth::{Method, Principal, Role};
use crate::index::Scope;

/// Minutes a link lives when the request does not say: a week.
const DEFAULT_MINUTES: u64 = 7 * 24 * 60;

/// The body of `POST /shares`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewShare {
    /// The Study Instance UID the link opens.
    study: String,
    /// Lifetime, 1 minute to 90 days (default 7 days).
    expires_in_minutes: Option<u64>,
    /// Who it is for, say (shown in the list, never in the link).
    note: Option<String>,
}

/// `POST /shares` `{"study", "expires_in_minutes"?, "note"?}`: a new link;
/// its token and URL are in the answer, and only there.
pub async fn create_share(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Extension(principal): axum::Extension<Principal>,
    body: Result<Json<NewShare>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if !aina_dicomweb::qido::is_uid(&body.study) {
        return Err(ApiError::bad_request(format!(
            "{:?} is not a Study Instance UID",
            body.study
        )));
    }
    let scope = Scope {
        study: Some(body.study.clone()),
        ..Default::default()
    };
    // The link is for a study that is here: no link to nothing, and the
    // patient goes into the audit record.
    let Some(patient) = study_patient(&state, &scope).await? else {
        return Err(ApiError::not_found(format!("no study {}", body.study)));
    };
    let minutes = body.expires_in_minutes.unwrap_or(DEFAULT_MINUTES);
    let lifetime = Duration::from_secs(minutes.saturating_mul(60));
    let created = state
        .shares
        .create_share(
            &body.study,
            &owner(&principal),
            lifetime,
            body.note.as_deref(),
        )
        .await?;
    let mut answer = serde_json::to_value(&created.info).unwrap_or_default();
    answer["token"] = json!(created.token);
    answer["url"] = json!(format!(
        "{}/s/{}",
        super::site_url(&state, &headers),
        created.token
    ));
    let mut response = (StatusCode::CREATED, Json(answer)).into_response();
    response.extensions_mut().insert(super::auth::AuditNote {
        patient_id: patient,
        study_uid: Some(body.study),
        ..Default::default()
    });
    Ok(response)
}

/// Who owns the links a principal makes: its method and name, since user
/// names, token names and OIDC subjects are separate name spaces (a token
/// named like a user must not reach that user's links).
fn owner(principal: &Principal) -> String {
    format!("{}:{}", principal.method.as_str(), principal.name)
}

/// The study's Patient ID: `Some(None)` for a study without one, `None` when
/// there is no such study.
async fn study_patient(
    state: &AppState,
    scope: &Scope,
) -> Result<Option<Option<String>>, ApiError> {
    let query = aina_dicomweb::qido::parse_query(aina_dicomweb::qido::QueryLevel::Study, "", 1)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let found = state.index.search(&query, scope).await?;
    Ok(found
        .rows
        .first()
        .map(|row| crate::fhir::text(row, "00100020")))
}

/// `GET /shares` filters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareFilter {
    study: Option<String>,
}

/// `GET /shares[?study=UID]`: an admin sees every link, anyone else their own.
pub async fn list_shares(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    filter: Result<Query<ShareFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(filter) = filter.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mine = (principal.role != Role::Admin).then(|| owner(&principal));
    let shares = state
        .shares
        .shares(filter.study.as_deref(), mine.as_deref())
        .await?;
    Ok(Json(shares).into_response())
}

/// `DELETE /shares/{id}`: revokes a link (its maker's or, for an admin, any).
pub async fn revoke_share(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let share = state.shares.share(&id).await?;
    let Some(share) =
        share.filter(|s| principal.role == Role::Admin || s.created_by == owner(&principal))
    else {
        return Err(ApiError::not_found(format!(
            "no share link {id:?} of yours"
        )));
    };
    if !state.shares.revoke_share(&share.id).await? {
        return Err(ApiError::not_found(format!(
            "share link {id:?} was revoked already"
        )));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /s/{token}`: opens a link. A good one sets the share cookie (for
/// as long as the link lives) and sends the browser to the viewer on its
/// study; a bad one gets a page that says so and nothing else. Public, so it
/// records its own audit event (with the link's id, never its secret).
pub async fn open_share(
    State(state): State<AppState>,
    connect: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let id = parse_token(&token).map(|(id, _)| id.to_owned());
    let found = match id {
        Some(_) => state.shares.check_share(&token).await,
        None => Ok(None),
    };
    let source = client_address(&state.config, connect.map(|c| c.0.0.ip()), &headers)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let mut event = AuditEvent {
        time_ms: crate::index::sql::now_ms(),
        actor: id
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |id| format!("share {id}")),
        role: Some(Role::Clinician),
        method: Method::Share,
        source,
        action: Action::Share,
        outcome: Outcome::Refused,
        status: Some(404),
        patient_id: None,
        study_uid: None,
        series_uid: None,
        sop_uid: None,
        detail: Some(format!(
            "GET /s/{}",
            id.as_deref()
                .map_or("(malformed)".to_owned(), |id| format!("ainas_{id}_…"))
        )),
    };
    let share = match found {
        Ok(Some(share)) => share,
        Ok(None) => {
            state.audit.record(event).await;
            return gone_page();
        }
        Err(e) => {
            tracing::error!(error = %e, "checking a share link failed");
            event.outcome = Outcome::Failed;
            event.status = Some(503);
            state.audit.record(event).await;
            return (StatusCode::SERVICE_UNAVAILABLE, "try again in a moment\n").into_response();
        }
    };
    event.outcome = Outcome::Success;
    event.status = Some(303);
    event.study_uid = Some(share.study_instance_uid.clone());
    state.audit.record(event).await;
    let remaining = share.expires_at_ms - crate::index::sql::now_ms();
    let lifetime = Duration::from_millis(u64::try_from(remaining).unwrap_or(0));
    // `shared=1` tells the viewer at once that it opens one study, read only.
    let location = format!("/viewer?studyUID={}&shared=1", share.study_instance_uid);
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::SET_COOKIE,
        cookie_header(&state, SHARE_COOKIE, &token, lifetime),
    );
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    // The link is a credential: not to be kept by caches or sent on.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The answer to a bad, expired or revoked link: a static page that loads
/// nothing and is not kept.
fn gone_page() -> Response {
    let mut response = (StatusCode::NOT_FOUND, Html(GONE_PAGE)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// What a bad, expired or revoked link shows, in the viewer's three languages.
const GONE_PAGE: &str = r#"<!doctype html>
<html lang="kk"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>Aina</title>
<style>body{font-family:system-ui,sans-serif;background:#111;color:#ddd;max-width:40rem;margin:4rem auto;padding:0 1rem}</style>
</head><body>
<h1>Aina</h1>
<p lang="kk">Бұл сілтеме жарамсыз, мерзімі өткен немесе қайтарып алынған. Сілтемені жіберген адамнан жаңасын сұраңыз.</p>
<p lang="ru">Эта ссылка недействительна, истекла или отозвана. Попросите новую у того, кто её прислал.</p>
<p lang="en">This link is invalid, has expired or was revoked. Ask whoever sent it for a new one.</p>
</body></html>
"#;
