//! Authentication, authorisation and the audit record of every HTTP request,
//! in one place: [`gate`], the middleware every route in `http::routes` runs
//! behind with its declared [`Route`]. Handlers never check credentials.
//!
//! Credentials, tried in this order when `--auth` is on:
//! - `Authorization: Bearer aina_…`: an API token ([`Accounts::check_token`]);
//! - `Authorization: Bearer <JWT>`: an OIDC token, when an issuer is configured;
//! - the viewer's session cookie ([`SESSION_COOKIE`], set by [`login`]); a
//!   state-changing request (not GET/HEAD/OPTIONS) must also carry the session's
//!   CSRF token in [`CSRF_HEADER`]. Bearer requests need none: a browser never
//!   adds an `Authorization` header by itself;
//! - a share link's token, `Authorization: Bearer ainas_…` or the
//!   [`SHARE_COOKIE`] set when the link is opened (`http::shares`): read-only,
//!   one study (`share_reaches`).
//!
//! With `--auth` off every request is [`Principal::anonymous`] (an admin): the
//! server then listens on loopback only, or was started `--insecure`.
//!
//! [`Accounts::check_token`]: crate::auth::accounts::Accounts::check_token

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::Cookie;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::auth::audit::{Action, AuditEvent, Outcome};
use crate::auth::shares::{SHARE_PREFIX, ShareInfo, parse_token};
use crate::auth::{Access, Method as AuthMethod, Principal, Role};

/// The viewer's session cookie.
pub const SESSION_COOKIE: &str = "aina_session";
/// The header carrying a session's CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The cookie holding a share link's token once the link was opened.
pub const SHARE_COOKIE: &str = "aina_share";

/// One route's declaration: what it needs and what it is in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub action: Action,
}

/// What a handler adds to its response for the audit record, beyond the
/// UIDs in its path: the patient, and the instances a request touched (a STOW-RS
/// request names no UIDs in its path; a delete removes a whole study).
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    pub patient_id: Option<String>,
    /// The study, when the path names none (a share link made for it).
    pub study_uid: Option<String>,
    /// (study, series, SOP instance) UIDs, one audit event each.
    pub instances: Vec<(String, String, String)>,
}

/// The session's CSRF token, for `/auth/me` to hand to the viewer.
#[derive(Debug, Clone)]
pub struct SessionCsrf(String);

/// Why a request was not let in.
struct Refusal {
    status: StatusCode,
    reason: String,
    /// Who the caller claimed to be, for the audit log (a token id, never a secret).
    claimed: Option<String>,
    /// A bearer token was presented and is bad (RFC 6750 `invalid_token`).
    bad_token: bool,
}

impl Refusal {
    fn unauthorized(reason: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            reason: reason.into(),
            claimed: None,
            bad_token: false,
        }
    }

    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.reason }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = if self.bad_token {
                "Bearer realm=\"aina\", error=\"invalid_token\""
            } else {
                "Bearer realm=\"aina\""
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// The client's address: the peer the listener saw, or, when that peer is a
/// trusted proxy, the last address in `X-Forwarded-For` that is not one (the
/// header's earlier entries are whatever the client wrote).
pub fn client_address(
    config: &crate::config::Config,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    let trusted = |ip: &IpAddr| config.trusted_proxies.iter().any(|n| n.contains(ip));
    let peer = peer?;
    if !trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !trusted(ip))
            .unwrap_or(peer),
    )
}

fn peer(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The middleware: authenticates, authorises against `route.access`, runs the
/// handler and records the audit event.
pub async fn gate(
    State((state, route)): State<(AppState, Route)>,
    params: RawPathParams,
    mut request: Request,
    next: Next,
) -> Response {
    if route.access == Access::Public {
        return next.run(request).await;
    }
    let source = client_address(&state.config, peer(&request), request.headers())
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let mut event = AuditEvent {
        time_ms: now_ms(),
        actor: String::new(),
        role: None,
        method: AuthMethod::Anonymous,
        source,
        action: route.action,
        outcome: Outcome::Success,
        status: None,
        patient_id: patient_in_query(request.uri()),
        study_uid: None,
        series_uid: None,
        sop_uid: None,
        detail: Some(format!(
            "{} {}",
            request.method(),
            request
                .uri()
                .path_and_query()
                .map_or("", |p| p.as_str())
                .chars()
                .take(2048)
                .collect::<String>()
        )),
    };
    for (name, value) in &params {
        let value = Some(value.chars().take(128).collect());
        match name {
            "study" => event.study_uid = value,
            "series" => event.series_uid = value,
            "instance" => event.sop_uid = value,
            _ => {}
        }
    }

    let (principal, share) = match authenticate(&state, request.headers(), request.method()).await {
        Ok(caller) => {
            if let Some(csrf) = caller.csrf {
                request.extensions_mut().insert(SessionCsrf(csrf));
            }
            (caller.principal, caller.share)
        }
        Err(refusal) => {
            event.actor = refusal.claimed.clone().unwrap_or_else(|| "unknown".into());
            event.outcome = Outcome::Refused;
            event.status = Some(i64::from(refusal.status.as_u16()));
            state.audit.record(event).await;
            return refusal.into_response();
        }
    };
    event.actor = principal.name.clone();
    event.role = Some(principal.role);
    event.method = principal.method;
    if !principal.role.grants(route.access) {
        event.outcome = Outcome::Refused;
        event.status = Some(403);
        state.audit.record(event).await;
        return Refusal {
            status: StatusCode::FORBIDDEN,
            reason: format!("role {} may not do this", principal.role),
            claimed: None,
            bad_token: false,
        }
        .into_response();
    }

    if let Some(share) = &share {
        if !share_reaches(&route, &params, request.uri(), &share.study_instance_uid) {
            event.outcome = Outcome::Refused;
            event.status = Some(403);
            state.audit.record(event).await;
            return Refusal {
                status: StatusCode::FORBIDDEN,
                reason: "a share link opens its own study only".into(),
                claimed: None,
                bad_token: false,
            }
            .into_response();
        }
        request.extensions_mut().insert(share.clone());
    }

    request.extensions_mut().insert(principal);
    let response = next.run(request).await;
    let status = response.status();
    event.status = Some(i64::from(status.as_u16()));
    event.outcome = if status.is_success() || status.is_redirection() {
        Outcome::Success
    } else {
        Outcome::Failed
    };
    // The viewer asks who it is on every page: not patient data, not recorded.
    if route.action == Action::Other && event.outcome == Outcome::Success {
        return response;
    }
    match response.extensions().get::<AuditNote>() {
        Some(note) if !note.instances.is_empty() => {
            for (study, series, sop) in &note.instances {
                let mut one = event.clone();
                one.patient_id = note.patient_id.clone().or(one.patient_id);
                one.study_uid = Some(study.clone());
                one.series_uid = Some(series.clone());
                one.sop_uid = Some(sop.clone());
                state.audit.record(one).await;
            }
        }
        Some(note) => {
            event.patient_id = note.patient_id.clone().or(event.patient_id);
            event.study_uid = note.study_uid.clone().or(event.study_uid);
            state.audit.record(event).await;
        }
        None => state.audit.record(event).await,
    }
    response
}

/// The Patient ID a QIDO-RS request matches on, if any.
fn patient_in_query(uri: &axum::http::Uri) -> Option<String> {
    let query = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    query
        .0
        .into_iter()
        .find(|(k, _)| k == "PatientID" || k == "00100020")
        .map(|(_, v)| v.chars().take(64).collect())
}

/// Whether a share link for `study` may make this request: reading within
/// the study (its UID in the path), a search that names exactly that study
/// (the viewer finds the study by QIDO-RS), who am I and sign out; nothing
/// else.
fn share_reaches(
    route: &Route,
    params: &RawPathParams,
    uri: &axum::http::Uri,
    study: &str,
) -> bool {
    match route.access {
        // Named, not every SignedIn route: one added later is not a share's.
        Access::SignedIn => return ["/auth/me", "/auth/logout"].contains(&route.path),
        Access::Read => {}
        _ => return false,
    }
    let path_study = params.iter().find(|(name, _)| *name == "study");
    if let Some((_, value)) = path_study {
        return value == study;
    }
    let searches = [
        "/dicomweb/studies",
        "/dicomweb/series",
        "/dicomweb/instances",
    ];
    if !searches.contains(&route.path) {
        return false;
    }
    let Ok(query) = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri) else {
        return false;
    };
    // Exactly one key naming Study Instance UID (as QIDO-RS reads keys: the
    // keyword, or its tag in hex of either case), equal to the study: a UID
    // list (`A,B`, or the key repeated) or a wildcard is not. The search
    // handlers also confine a share's search to its study.
    let named: Vec<&str> = query
        .0
        .iter()
        .filter(|(k, _)| k == "StudyInstanceUID" || k.eq_ignore_ascii_case("0020000D"))
        .map(|(_, v)| v.as_str())
        .collect();
    named == [study]
}

/// Who is asking: the principal, the CSRF token of their session if they
/// came with one, the share link if that is what they came with.
struct Caller {
    principal: Principal,
    csrf: Option<String>,
    share: Option<ShareInfo>,
}

impl Caller {
    fn plain(principal: Principal) -> Self {
        Caller {
            principal,
            csrf: None,
            share: None,
        }
    }
}

/// Who is asking.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
) -> Result<Caller, Refusal> {
    if !state.config.auth {
        return Ok(Caller::plain(Principal::anonymous()));
    }
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default();
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(Refusal::unauthorized(
                    "unsupported Authorization scheme: use Bearer with an API or OIDC token",
                ));
            }
        };
        if token.starts_with(SHARE_PREFIX) {
            return share(state, token).await;
        }
        return bearer(state, token).await.map(Caller::plain);
    }
    if let Some(cookie) = session_cookie(headers) {
        let session = state
            .accounts
            .session(&cookie)
            .await
            .map_err(|e| unavailable(&e))?;
        let Some((principal, csrf)) = session else {
            // A session that ended elsewhere does not hide a share link the
            // same browser opened since.
            if let Some(token) = cookie_value(headers, SHARE_COOKIE) {
                return share(state, &token).await;
            }
            return Err(Refusal::unauthorized(
                "session expired or ended: sign in again",
            ));
        };
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !same_secret(sent, &csrf) {
                return Err(Refusal {
                    status: StatusCode::FORBIDDEN,
                    reason: format!("missing or wrong {CSRF_HEADER} header"),
                    claimed: Some(principal.name),
                    bad_token: false,
                });
            }
        }
        return Ok(Caller {
            principal,
            csrf: Some(csrf),
            share: None,
        });
    }
    if let Some(token) = cookie_value(headers, SHARE_COOKIE) {
        return share(state, &token).await;
    }
    Err(Refusal::unauthorized(
        "authentication required: a Bearer token or a session (POST /auth/login)",
    ))
}

/// A share link's token: read-only, one study.
async fn share(state: &AppState, token: &str) -> Result<Caller, Refusal> {
    let found = state
        .shares
        .check_share(token)
        .await
        .map_err(|e| unavailable(&e))?;
    let claimed = parse_token(token).map(|(id, _)| format!("share {id}"));
    let Some(info) = found else {
        return Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            reason: "this share link is invalid, expired or revoked".into(),
            claimed,
            bad_token: true,
        });
    };
    Ok(Caller {
        principal: Principal {
            name: format!("share {}", info.id),
            role: Role::Clinician,
            method: AuthMethod::Share,
        },
        csrf: None,
        share: Some(info),
    })
}

/// An API token or an OIDC JWT.
async fn bearer(state: &AppState, token: &str) -> Result<Principal, Refusal> {
    let bad = |reason: String, claimed: Option<String>| Refusal {
        status: StatusCode::UNAUTHORIZED,
        reason,
        claimed,
        bad_token: true,
    };
    if token.starts_with("aina_") {
        let found = state
            .accounts
            .check_token(token)
            .await
            .map_err(|e| unavailable(&e))?;
        // The id between the prefix and the secret is not secret: it names the
        // token in the audit log of a refusal.
        let claimed = token
            .split('_')
            .nth(1)
            .filter(|id| id.len() <= 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|id| format!("token {id}"));
        return found.ok_or_else(|| bad("invalid, expired or revoked API token".into(), claimed));
    }
    let Some(oidc) = &state.oidc else {
        return Err(bad("unknown token (OIDC is not configured)".into(), None));
    };
    oidc.verify(token)
        .await
        .map_err(|e| bad(format!("OIDC token refused: {e}"), None))
}

/// A database failure while checking credentials: the caller may retry.
fn unavailable(e: &dyn std::error::Error) -> Refusal {
    tracing::error!(error = %e, "checking credentials failed");
    Refusal {
        status: StatusCode::SERVICE_UNAVAILABLE,
        reason: "credentials could not be checked; try again".into(),
        claimed: None,
        bad_token: false,
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, SESSION_COOKIE)
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Compares two secrets without an early exit on the first difference.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How long failed logins are remembered, and a locked name or address stays locked.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed logins for one user name within the window before it is locked.
const MAX_FAILURES_PER_USER: u32 = 5;
/// Failed logins from one address within the window before it is locked
/// (several users share a ward's workstation).
const MAX_FAILURES_PER_ADDRESS: u32 = 20;

/// Failed logins lately, by user name and by source address, on this node:
/// password guessing is slowed to a handful of tries per quarter hour. A locked
/// name unlocks 15 minutes (`FAILURE_WINDOW`) after its last failure.
#[derive(Clone)]
pub struct LoginFailures {
    /// Key: `user:NAME` or `addr:IP`; value: failures and the last one's time.
    recent: moka::sync::Cache<String, (u32, Instant)>,
}

impl Default for LoginFailures {
    fn default() -> Self {
        LoginFailures {
            recent: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(FAILURE_WINDOW)
                .build(),
        }
    }
}

impl LoginFailures {
    /// How long until `user` from `addr` may try again, if locked.
    fn locked(&self, user: &str, addr: &str) -> Option<Duration> {
        let check = |key: String, max: u32| {
            self.recent
                .get(&key)
                .filter(|(n, _)| *n >= max)
                .map(|(_, last)| FAILURE_WINDOW.saturating_sub(last.elapsed()))
        };
        let by_user = check(format!("user:{user}"), MAX_FAILURES_PER_USER);
        let by_addr = check(format!("addr:{addr}"), MAX_FAILURES_PER_ADDRESS);
        by_user.max(by_addr)
    }

    fn failed(&self, user: &str, addr: &str) {
        for key in [format!("user:{user}"), format!("addr:{addr}")] {
            let count = self.recent.get(&key).map_or(0, |(n, _)| n);
            self.recent.insert(key, (count + 1, Instant::now()));
        }
    }

    fn succeeded(&self, user: &str) {
        self.recent.invalidate(&format!("user:{user}"));
    }
}

/// `POST /auth/login` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    username: String,
    password: String,
}

/// Signs a user in: a session cookie (HttpOnly, SameSite=Strict, Secure over
/// HTTPS) and, in the body, the CSRF token the viewer sends back on
/// state-changing requests. Public, so it records its own audit events.
pub async fn login(
    State(state): State<AppState>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let error = |status: StatusCode, reason: &str| {
        (status, Json(json!({ "error": reason }))).into_response()
    };
    if !state.config.auth {
        return error(
            StatusCode::BAD_REQUEST,
            "authentication is off on this server (start it with --auth)",
        );
    }
    let Json(body) = match body {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let addr = client_address(&state.config, connect.map(|c| c.0.0.ip()), &headers)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    // What the caller typed is not trusted with the log's columns.
    let claimed: String = body.username.chars().take(64).collect();
    let mut event = AuditEvent {
        time_ms: now_ms(),
        actor: claimed.clone(),
        role: None,
        method: AuthMethod::Session,
        source: addr.clone(),
        action: Action::LoginFailed,
        outcome: Outcome::Refused,
        status: None,
        patient_id: None,
        study_uid: None,
        series_uid: None,
        sop_uid: None,
        detail: Some(format!(
            "POST /auth/login{}",
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| format!(" ({})", ua.chars().take(200).collect::<String>()))
                .unwrap_or_default()
        )),
    };
    if let Some(wait) = state.login_failures.locked(&claimed, &addr) {
        event.status = Some(429);
        state.audit.record(event).await;
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed sign-ins: wait, then try again",
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return response;
    }
    let session = match state
        .accounts
        .login(
            &body.username,
            &body.password,
            state.config.session_lifetime,
        )
        .await
    {
        Ok(session) => session,
        Err(e) => {
            tracing::error!(error = %e, "login failed on the database");
            event.outcome = Outcome::Failed;
            event.status = Some(503);
            state.audit.record(event).await;
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "sign-in is unavailable; try again",
            );
        }
    };
    let Some(session) = session else {
        state.login_failures.failed(&claimed, &addr);
        event.status = Some(401);
        state.audit.record(event).await;
        return error(StatusCode::UNAUTHORIZED, "wrong user name or password");
    };
    state.login_failures.succeeded(&claimed);
    event.action = Action::Login;
    event.outcome = Outcome::Success;
    event.status = Some(200);
    event.role = Some(session.principal.role);
    state.audit.record(event).await;
    let cookie = session_cookie_header(&state, &session.cookie, state.config.session_lifetime);
    let mut response = Json(json!({
        "name": session.principal.name,
        "role": session.principal.role,
        "csrf": session.csrf,
        "expires_at_ms": session.expires_at_ms,
    }))
    .into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// `Set-Cookie` for the session: HttpOnly (no script reads it), SameSite=Strict
/// (no other site's page sends it), Secure over HTTPS. The value is hex.
fn session_cookie_header(state: &AppState, value: &str, lifetime: Duration) -> HeaderValue {
    cookie_header(state, SESSION_COOKIE, value, lifetime)
}

/// `Set-Cookie` for one of ours: HttpOnly, SameSite=Strict, Secure over HTTPS.
pub(super) fn cookie_header(
    state: &AppState,
    name: &str,
    value: &str,
    lifetime: Duration,
) -> HeaderValue {
    let secure = if secure_cookies(state) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        lifetime.as_secs()
    );
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether cookies get `Secure`: the server speaks HTTPS itself or is
/// published under an https:// URL (a TLS proxy in front).
fn secure_cookies(state: &AppState) -> bool {
    state.config.tls.is_some()
        || state
            .config
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

/// `POST /auth/logout`: ends the session (the gate has checked its CSRF
/// token) and forgets any share link the browser held.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(cookie) = session_cookie(&headers)
        && let Err(e) = state.accounts.logout(&cookie).await
    {
        tracing::error!(error = %e, "ending a session failed");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session_cookie_header(&state, "", Duration::ZERO),
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(&state, SHARE_COOKIE, "", Duration::ZERO),
    );
    response
}

/// `GET /auth/me`: who the caller is, and the session's CSRF token.
/// A share link's caller also learns the one study it opens and until when.
pub async fn me(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    csrf: Option<axum::Extension<SessionCsrf>>,
    share: Option<axum::Extension<ShareInfo>>,
) -> Json<serde_json::Value> {
    let mut me = json!({
        "name": principal.name,
        "role": principal.role,
        "method": principal.method,
        "csrf": csrf.map(|c| c.0.0),
        "auth": state.config.auth,
    });
    if let Some(axum::Extension(share)) = share {
        me["share"] = json!({
            "study": share.study_instance_uid,
            "expires_at_ms": share.expires_at_ms,
        });
    }
    Json(me)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("", "abc"));
    }

    #[test]
    fn failures_lock_a_name_then_an_address() {
        let f = LoginFailures::default();
        for _ in 0..MAX_FAILURES_PER_USER - 1 {
            f.failed("aliya", "10.0.0.1");
        }
        assert!(f.locked("aliya", "10.0.0.1").is_none());
        f.failed("aliya", "10.0.0.1");
        let wait = f.locked("aliya", "10.0.0.2").unwrap();
        assert!(wait > Duration::from_secs(14 * 60) && wait <= FAILURE_WINDOW);
        assert!(f.locked("bota", "10.0.0.2").is_none());
        f.succeeded("aliya");
        assert!(f.locked("aliya", "10.0.0.2").is_none());
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            f.failed(&format!("user{i}"), "10.0.0.9");
        }
        assert!(f.locked("someone-else", "10.0.0.9").is_some());
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let config = crate::config::Settings {
            trusted_proxy: vec!["10.0.0.0/24".into()],
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 192.0.2.7, 10.0.0.2".parse().unwrap(),
        );
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            client_address(&config, ip("10.0.0.1"), &headers),
            ip("192.0.2.7")
        );
        assert_eq!(
            client_address(&config, ip("192.0.2.9"), &headers),
            ip("192.0.2.9")
        );
        assert_eq!(
            client_address(&config, ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        assert_eq!(client_address(&config, None, &headers), None);
    }

    #[test]
    fn patient_id_from_query() {
        let uri: axum::http::Uri = "/dicomweb/studies?PatientID=KZ%2D1&limit=2"
            .parse()
            .unwrap();
        assert_eq!(patient_in_query(&uri).as_deref(), Some("KZ-1"));
        let uri: axum::http::Uri = "/dicomweb/studies?00100020=X".parse().unwrap();
        assert_eq!(patient_in_query(&uri).as_deref(), Some("X"));
        let uri: axum::http::Uri = "/dicomweb/studies".parse().unwrap();
        assert_eq!(patient_in_query(&uri), None);
    }
}
