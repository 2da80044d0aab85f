//! The browser viewer: the static ES modules of `viewer/`, embedded in the
//! binary (rust-embed; debug builds read them from disk, so editing a module
//! needs no rebuild), served at `/` and `/viewer` (the page) and `/ui/{file}`
//! (its modules, styles and images).
//!
//! The viewer talks to the archive only through the public DICOMweb API, so
//! nothing here knows about studies: this module owns file lookup, media
//! types, caching and the browser security headers. What the viewer does is in
//! `docs/viewer.md`.

use std::borrow::Cow;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rust_embed::Embed;

use super::error::ApiError;
use super::wado::not_modified;
use crate::app::AppState;

#[derive(Embed)]
#[folder = "viewer/"]
struct Assets;

/// `GET /` and `GET /viewer`: the page. `/viewer?studyUID=…` and
/// `/viewer?patientID=…` (IHE IID) are the same page; the viewer's router reads
/// the query.
pub async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    serve(&state, &headers, "index.html")
}

/// `GET /login`: the sign-in page (when `--auth` is on, the viewer sends
/// here whatever asks for data without a session).
pub async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    serve(&state, &headers, "login.html")
}

/// `GET /ui/{*file}`: one file of `viewer/`.
pub async fn asset(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&state, &headers, &file)
}

fn serve(state: &AppState, headers: &HeaderMap, file: &str) -> Response {
    let Some(content_type) = safe_path(file).and_then(media_type) else {
        return not_found();
    };
    let Some(asset) = Assets::get(file) else {
        return not_found();
    };
    // Weak: the compression layer may change the bytes on the wire, and a
    // strong validator promises byte identity.
    let etag = format!("W/\"{}\"", hex::encode(&asset.metadata.sha256_hash()[..16]));
    let mut res = match not_modified(headers, &etag) {
        Some(res) => res,
        None => {
            // Release builds borrow the embedded bytes; debug builds read the file.
            let body = match asset.data {
                Cow::Borrowed(bytes) => Bytes::from_static(bytes),
                Cow::Owned(bytes) => Bytes::from(bytes),
            };
            let mut res = body.into_response();
            let h = res.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            if let Ok(v) = HeaderValue::from_str(&etag) {
                h.insert(header::ETAG, v);
            }
            res
        }
    };
    let h = res.headers_mut();
    // The modules are not fingerprinted, and a page that mixed modules of two
    // releases would break: every load revalidates (a 304 costs one round trip).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Viewer URLs carry patient and study identifiers: never leak them to
    // another site.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(v) =
        HeaderValue::from_str(&content_security_policy(state.config.public_url.as_deref()))
    {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

fn not_found() -> Response {
    ApiError::not_found("no such file in the viewer").into_response()
}

/// The file name if it stays inside `viewer/`: relative, `/`-separated, no
/// empty, `.` or `..` segment and no hidden files. The router has already
/// percent-decoded it, so `%2e%2e` arrives here as `..`.
fn safe_path(file: &str) -> Option<&str> {
    let ok = !file.is_empty()
        && !file.contains(['\\', '\0', ':'])
        && file
            .split('/')
            .all(|seg| !seg.is_empty() && !seg.starts_with('.'));
    ok.then_some(file)
}

/// The media type of the file kinds the viewer is made of; anything else is
/// not served.
fn media_type(file: &str) -> Option<&'static str> {
    let (_, ext) = file.rsplit_once('.')?;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        // RFC 9239: JavaScript is text/javascript.
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => return None,
    })
}

/// The page may run only its own scripts and talk only to this origin (where
/// `/dicomweb` is) and to the public URL, which absolute BulkDataURIs and
/// RetrieveURLs point at when `--public-url` names another origin. Inline
/// `style` attributes are allowed (positions of overlays and measurements);
/// inline scripts are not. Workers may be made from blobs.
fn content_security_policy(public_url: Option<&str>) -> String {
    let public = public_url.and_then(origin_of).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' blob: data:{public}; connect-src 'self'{public}; \
         worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'"
    )
}

/// ` scheme://host[:port]` of a URL, or `None` when it is not a plain http(s)
/// URL that can stand in a CSP source list.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split('/').next()?;
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    ok.then(|| format!(" {scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_viewer() {
        assert_eq!(safe_path("app.js"), Some("app.js"));
        assert_eq!(safe_path("img/logo.svg"), Some("img/logo.svg"));
        for bad in [
            "",
            "../Cargo.toml",
            "a/../../Cargo.toml",
            "./app.js",
            "/etc/passwd",
            "a//b.js",
            ".git/config",
            "..\\Cargo.toml",
            "C:/x.js",
        ] {
            assert_eq!(safe_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn csp_names_the_public_origin_only() {
        assert!(
            content_security_policy(Some("https://pacs.example.kz/base"))
                .contains("connect-src 'self' https://pacs.example.kz;")
        );
        assert!(content_security_policy(None).contains("connect-src 'self';"));
        assert!(
            content_security_policy(Some("https://x; script-src *"))
                .contains("connect-src 'self';")
        );
    }
}
