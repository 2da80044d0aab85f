//! HTTP: every route in [`routes`], each declaring the access it needs and
//! its audit action, all behind [`auth::gate`]; handlers kept thin (extract,
//! one call, respond). DICOMweb (PS3.18) lives under `/dicomweb`.
//!
//! - [`auth`]: authentication, authorisation, audit; sign in and out.
//! - [`admin`]: users and API tokens. [`audit`]: the audit log.
//! - [`delete`]: DICOMweb DELETE of studies, series, instances.
//! - [`fhir`]: FHIR ImagingStudy and CapabilityStatement (`/fhir`).
//! - [`feed`]: the change feed (`/changefeed`).
//! - [`shares`]: share links (`/shares`, opened at `/s/{token}`).
//! - [`stow`]: STOW-RS store transactions.
//! - [`qido`]: QIDO-RS searches.
//! - [`wado`]: WADO-RS retrieve (instances, metadata, frames, bulk data) and WADO-URI.
//! - [`render`]: rendered resources and thumbnails (and WADO-URI images).
//! - [`viewer`]: the browser viewer's page and modules, at `/`, `/viewer`, `/ui/`.
//! - [`error`]: the error → status table.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod delete;
pub mod error;
pub mod feed;
pub mod fhir;
pub mod qido;
pub mod render;
pub mod shares;
pub mod stow;
pub mod viewer;
pub mod wado;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, MethodRouter, on};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::app::AppState;
use crate::auth::Access::{Admin, Public, Read, SignedIn, Store};
use crate::auth::audit::Action::{
    AuditRead, Delete, Login, Logout, Other, Query, Render, Retrieve, Share, Store as Stored,
    Tokens, Users,
};
use auth::Route;

/// The DICOMweb root path.
pub const DICOMWEB_ROOT: &str = "/dicomweb";

/// Every route with what it needs ([`crate::auth::Access`]) and what it is in
/// the audit log: the one table [`router`] is built from and tests walk.
pub fn routes() -> Vec<(Route, MethodRouter<AppState>)> {
    macro_rules! table {
        ($($method:ident $path:literal $access:ident $action:ident => $handler:expr;)*) => {
            vec![$((
                Route {
                    method: Method::$method,
                    path: $path,
                    access: $access,
                    action: $action,
                },
                on(MethodFilter::$method, $handler),
            )),*]
        };
    }
    table! {
        GET "/dicomweb/studies" Read Query => qido::search_studies;
        POST "/dicomweb/studies" Store Stored => stow::store_instances;
        GET "/dicomweb/studies/{study}" Read Retrieve => wado::retrieve_study;
        POST "/dicomweb/studies/{study}" Store Stored => stow::store_instances_in_study;
        DELETE "/dicomweb/studies/{study}" Admin Delete => delete::delete_study;
        GET "/dicomweb/studies/{study}/metadata" Read Retrieve => wado::retrieve_study_metadata;
        GET "/dicomweb/studies/{study}/series" Read Query => qido::search_study_series;
        GET "/dicomweb/studies/{study}/instances" Read Query => qido::search_study_instances;
        GET "/dicomweb/studies/{study}/series/{series}" Read Retrieve => wado::retrieve_series;
        DELETE "/dicomweb/studies/{study}/series/{series}" Admin Delete => delete::delete_series;
        GET "/dicomweb/studies/{study}/series/{series}/metadata" Read Retrieve
            => wado::retrieve_series_metadata;
        GET "/dicomweb/studies/{study}/series/{series}/instances" Read Query
            => qido::search_series_instances;
        GET "/dicomweb/studies/{study}/series/{series}/instances/{instance}" Read Retrieve
            => wado::retrieve_instance;
        DELETE "/dicomweb/studies/{study}/series/{series}/instances/{instance}" Admin Delete
            => delete::delete_instance;
        GET "/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata" Read Retrieve
            => wado::retrieve_instance_metadata;
        GET "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}"
            Read Retrieve => wado::retrieve_frames;
        GET "/dicomweb/studies/{study}/series/{series}/instances/{instance}/bulkdata/{*path}"
            Read Retrieve => wado::retrieve_bulkdata;
        GET "/dicomweb/studies/{study}/rendered" Read Render => render::rendered_study;
        GET "/dicomweb/studies/{study}/thumbnail" Read Render => render::thumbnail_study;
        GET "/dicomweb/studies/{study}/series/{series}/rendered" Read Render
            => render::rendered_series;
        GET "/dicomweb/studies/{study}/series/{series}/thumbnail" Read Render
            => render::thumbnail_series;
        GET "/dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered"
            Read Render => render::rendered_instance;
        GET "/dicomweb/studies/{study}/series/{series}/instances/{instance}/thumbnail"
            Read Render => render::thumbnail_instance;
        GET "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered"
            Read Render => render::rendered_frames;
        GET "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/thumbnail"
            Read Render => render::thumbnail_frame;
        GET "/dicomweb/series" Read Query => qido::search_series;
        GET "/dicomweb/instances" Read Query => qido::search_instances;
        GET "/dicomweb/wado" Read Retrieve => wado::wado_uri;
        GET "/wado" Read Retrieve => wado::wado_uri;
        GET "/healthz" Public Other => healthz;
        GET "/readyz" Public Other => readyz;
        // The viewer's page and modules hold no patient data; it signs in and
        // asks for data through the routes above.
        GET "/" Public Other => viewer::page;
        GET "/viewer" Public Other => viewer::page;
        GET "/ui/{*file}" Public Other => viewer::asset;
        GET "/login" Public Other => viewer::login_page;
        // Public so that anyone may try; it records its own audit events.
        POST "/auth/login" Public Login => auth::login;
        POST "/auth/logout" SignedIn Logout => auth::logout;
        GET "/auth/me" SignedIn Other => auth::me;
        GET "/admin/users" Admin Users => admin::list_users;
        POST "/admin/users" Admin Users => admin::create_user;
        PATCH "/admin/users/{username}" Admin Users => admin::update_user;
        GET "/admin/tokens" Admin Tokens => admin::list_tokens;
        POST "/admin/tokens" Admin Tokens => admin::create_token;
        DELETE "/admin/tokens/{token}" Admin Tokens => admin::revoke_token;
        GET "/audit" Admin AuditRead => audit::search_audit;
        // FHIR clients read the CapabilityStatement before they authenticate;
        // it holds no patient data.
        GET "/fhir/metadata" Public Other => fhir::capability_statement;
        GET "/fhir/ImagingStudy" Read Query => fhir::search_imaging_studies;
        GET "/fhir/ImagingStudy/{study}" Read Retrieve => fhir::read_imaging_study;
        GET "/changefeed" Read Query => feed::changes;
        GET "/changefeed/latest" Read Query => feed::latest;
        GET "/shares" Read Share => shares::list_shares;
        POST "/shares" Read Share => shares::create_share;
        DELETE "/shares/{id}" Read Share => shares::revoke_share;
        // Public: the link is the credential; it records its own audit event.
        GET "/s/{token}" Public Share => shares::open_share;
    }
}

/// Builds the whole HTTP router: each route behind [`auth::gate`] with its
/// declaration.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (route, handler) in routes() {
        let mut handler = handler.route_layer(from_fn_with_state(
            (state.clone(), route.clone()),
            auth::gate,
        ));
        if route.action == Stored {
            // STOW-RS bodies are streamed part by part, each bounded by the
            // maximum instance size, so the request as a whole has no limit.
            handler = handler.layer(DefaultBodyLimit::disable());
        }
        router = router.route(route.path, handler);
    }
    router
        .layer(compression())
        .layer(cors(&state.config.cors_origins))
        .with_state(state)
}

/// gzip or zstd as the client's Accept-Encoding allows (tower-http sends
/// `Vary: Accept-Encoding`), for text-like bodies only: DICOM objects and pixel
/// data are already compressed or too large to be worth the CPU.
fn compression() -> CompressionLayer<impl Predicate> {
    let predicate = SizeAbove::new(1024)
        .and(NotForContentType::const_new("multipart/related"))
        .and(NotForContentType::const_new("application/dicom;"))
        .and(NotForContentType::const_new("application/octet-stream"))
        .and(NotForContentType::IMAGES);
    CompressionLayer::new()
        .gzip(true)
        .zstd(true)
        .compress_when(predicate)
}

/// CORS for browser viewers on other origins (OHIF and the like).
fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(Any)
        .expose_headers([
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::ETAG,
            header::WARNING,
            header::CONTENT_LOCATION,
        ]);
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(Any)
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        layer.allow_origin(AllowOrigin::list(list))
    }
}

/// Liveness: the process accepts work.
async fn healthz() -> &'static str {
    "ok\n"
}

/// How long readiness waits for each dependency: a load balancer's probe has
/// its own timeout, and a hung database must read as "not ready", not as a
/// probe that never answers.
const READY_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Readiness: the index and the store answer, each within
/// [`READY_CHECK_TIMEOUT`].
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let unavailable = |what: &'static str| (StatusCode::SERVICE_UNAVAILABLE, what);
    match tokio::time::timeout(READY_CHECK_TIMEOUT, state.index.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: index unavailable");
            return unavailable("index unavailable\n");
        }
        Err(_) => {
            tracing::warn!("readiness: index did not answer in time");
            return unavailable("index unavailable\n");
        }
    }
    match tokio::time::timeout(READY_CHECK_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: store unavailable");
            return unavailable("object store unavailable\n");
        }
        Err(_) => {
            tracing::warn!("readiness: store did not answer in time");
            return unavailable("object store unavailable\n");
        }
    }
    (StatusCode::OK, "ready\n")
}

/// The DICOMweb root as clients reach it: the configured public URL, or
/// `http://{Host}`. A Host header with characters a host name cannot have is
/// ignored (it would end up inside JSON and URLs).
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    format!("{}{DICOMWEB_ROOT}", site_url(state, headers))
}

/// The server's own root as clients reach it (see [`base_url`]).
pub fn site_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| state.config.http.to_string());
    let scheme = if state.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}
