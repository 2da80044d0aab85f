//! HTTP: every route in [`router`], handlers kept thin (extract, one call,
//! respond). DICOMweb (PS3.18) lives under `/dicomweb`.
//!
//! - [`stow`]: STOW-RS store transactions.
//! - [`qido`]: QIDO-RS searches.
//! - [`wado`]: WADO-RS retrieve (instances, metadata, frames, bulk data) and WADO-URI.
//! - [`render`]: rendered resources and thumbnails (and WADO-URI images).
//! - [`viewer`]: the browser viewer's page and modules, at `/`, `/viewer`, `/ui/`.
//! - [`error`]: the error → status table.

pub mod error;
pub mod qido;
pub mod render;
pub mod stow;
pub mod viewer;
pub mod wado;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::app::AppState;

/// The DICOMweb root path.
pub const DICOMWEB_ROOT: &str = "/dicomweb";

/// Builds the whole HTTP router.
pub fn router(state: AppState) -> Router {
    let dicomweb = Router::new()
        .route(
            "/studies",
            get(qido::search_studies).post(stow::store_instances),
        )
        .route(
            "/studies/{study}",
            get(wado::retrieve_study).post(stow::store_instances_in_study),
        )
        .route(
            "/studies/{study}/metadata",
            get(wado::retrieve_study_metadata),
        )
        .route("/studies/{study}/series", get(qido::search_study_series))
        .route(
            "/studies/{study}/instances",
            get(qido::search_study_instances),
        )
        .route(
            "/studies/{study}/series/{series}",
            get(wado::retrieve_series),
        )
        .route(
            "/studies/{study}/series/{series}/metadata",
            get(wado::retrieve_series_metadata),
        )
        .route(
            "/studies/{study}/series/{series}/instances",
            get(qido::search_series_instances),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}",
            get(wado::retrieve_instance),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/metadata",
            get(wado::retrieve_instance_metadata),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            get(wado::retrieve_frames),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/bulkdata/{*path}",
            get(wado::retrieve_bulkdata),
        )
        .route("/studies/{study}/rendered", get(render::rendered_study))
        .route("/studies/{study}/thumbnail", get(render::thumbnail_study))
        .route(
            "/studies/{study}/series/{series}/rendered",
            get(render::rendered_series),
        )
        .route(
            "/studies/{study}/series/{series}/thumbnail",
            get(render::thumbnail_series),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/rendered",
            get(render::rendered_instance),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/thumbnail",
            get(render::thumbnail_instance),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered",
            get(render::rendered_frames),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/thumbnail",
            get(render::thumbnail_frame),
        )
        .route("/series", get(qido::search_series))
        .route("/instances", get(qido::search_instances))
        .route("/wado", get(wado::wado_uri))
        // STOW-RS bodies are streamed part by part, each bounded by the maximum
        // instance size, so the request as a whole has no limit.
        .layer(DefaultBodyLimit::disable());

    Router::new()
        .nest(DICOMWEB_ROOT, dicomweb)
        .route("/wado", get(wado::wado_uri))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/", get(viewer::page))
        .route("/viewer", get(viewer::page))
        .route("/ui/{*file}", get(viewer::asset))
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
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
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
    if let Some(url) = &state.config.public_url {
        return format!("{url}{DICOMWEB_ROOT}");
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
    format!("http://{host}{DICOMWEB_ROOT}")
}
