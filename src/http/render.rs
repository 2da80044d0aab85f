//! Rendered resources (PS3.18 §10.4.1.1.3) and thumbnails (§10.4.1.1.4):
//! consumer-ready images for viewers and charts. The pixel work is `render`'s.
//!
//! - `…/rendered` of an instance is its first frame; of frames, each frame; of a
//!   series or study, the first frame of each instance with pixel data, as
//!   `multipart/related; type="image/…"`.
//! - `…/thumbnail` is the stored thumbnail (made at ingest) unless a viewport or
//!   a media type other than JPEG is asked, when it is rendered from the stored
//!   preview.
//! - Query parameters: `window=center,width[,linear|sigmoid|linear-exact]`,
//!   `viewport=vw,vh[,sx,sy,sw,sh]`, `quality=1..100`, and this archive's own
//!   `bitdepth=16` for 16-bit grayscale PNG. `annotation` and `charset` are
//!   accepted and ignored (no burned-in text).

use aina_dicomweb::multipart::RelatedWriter;
use aina_dicomweb::negotiate::{self, RenderedMedia};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::wado::{
    WadoUriParams, accept, etag_and_boundary, not_modified, parse_frame_list, scope, single,
    with_headers,
};
use crate::app::AppState;
use crate::index::Scope;
use crate::render::decode::DecodeError;
use crate::render::pipeline::{self, OutputFormat, RenderParams};
use crate::render::{Output, RenderError};

type Params = Query<Vec<(String, String)>>;

impl From<RenderError> for ApiError {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::Retrieve(e) => e.into(),
            RenderError::Decode(DecodeError::NoSuchFrame(m)) => ApiError::not_found(m),
            RenderError::Decode(e @ DecodeError::Unsupported(_)) => {
                ApiError::not_acceptable(format!("cannot decode the pixel data: {e}"))
            }
            RenderError::Decode(e @ DecodeError::Corrupt(_)) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the stored pixel data cannot be decoded: {e}"),
            ),
            RenderError::Pipeline(pipeline::PipelineError::Invalid(m)) => ApiError::bad_request(m),
            RenderError::NoImage(m) => ApiError::not_found(m),
            other => ApiError::internal("render", &other),
        }
    }
}

/// Rendering parameters from the query string and the negotiated media type.
fn render_params(
    headers: &HeaderMap,
    raw_query: Option<&str>,
    query: &[(String, String)],
) -> Result<RenderParams, ApiError> {
    let accept = accept(headers, raw_query);
    let media = negotiate::negotiate_rendered(accept.as_deref())
        .map_err(|e| ApiError::not_acceptable(e.to_string()))?;
    let mut params = RenderParams {
        window: None,
        viewport: None,
        quality: None,
        format: match media {
            RenderedMedia::Jpeg => OutputFormat::Jpeg,
            RenderedMedia::Png => OutputFormat::Png,
            RenderedMedia::Webp => OutputFormat::Webp,
        },
    };
    let invalid = |name: &str, e: pipeline::PipelineError| {
        ApiError::bad_request(format!("query parameter {name}: {e}"))
    };
    for (name, value) in query {
        match name.as_str() {
            "window" => {
                params.window = Some(pipeline::parse_window(value).map_err(|e| invalid(name, e))?)
            }
            "viewport" => {
                params.viewport =
                    Some(pipeline::parse_viewport(value).map_err(|e| invalid(name, e))?)
            }
            "quality" => {
                params.quality = Some(pipeline::parse_quality(value).map_err(|e| invalid(name, e))?)
            }
            "bitdepth" => match (value.as_str(), media) {
                ("8", _) => {}
                ("16", RenderedMedia::Png) => params.format = OutputFormat::Png16,
                ("16", _) => {
                    return Err(ApiError::not_acceptable(
                        "bitdepth=16 is available as image/png only",
                    ));
                }
                _ => return Err(ApiError::bad_request("bitdepth must be 8 or 16")),
            },
            _ => {}
        }
    }
    Ok(params)
}

fn image_response(out: Output, media_type: &str, headers: &HeaderMap) -> Response {
    if let Some(res) = not_modified(headers, &out.etag) {
        return res;
    }
    with_headers(out.bytes.into_response(), media_type, Some(&out.etag))
}

fn media_type(params: &RenderParams) -> &'static str {
    match params.format {
        OutputFormat::Jpeg => "image/jpeg",
        OutputFormat::Png | OutputFormat::Png16 => "image/png",
        OutputFormat::Webp => "image/webp",
    }
}

/// Several rendered images as one `multipart/related` body.
fn multipart_images(images: Vec<Output>, media: &str, headers: &HeaderMap) -> Response {
    let (etag, boundary) = etag_and_boundary(images.iter().map(|o| o.etag.as_str()));
    if let Some(res) = not_modified(headers, &etag) {
        return res;
    }
    let mut writer = RelatedWriter::with_boundary(boundary);
    let mut body = Vec::with_capacity(images.iter().map(|o| o.bytes.len() + 128).sum());
    for img in &images {
        body.extend_from_slice(&writer.part_header(media, &[]));
        body.extend_from_slice(&img.bytes);
    }
    body.extend_from_slice(&writer.closing());
    with_headers(
        body.into_response(),
        &writer.content_type(media),
        Some(&etag),
    )
}

/// Renders the first frame of every instance with pixel data in `scope`.
async fn rendered_scope(
    state: &AppState,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    query: &[(String, String)],
    scope: Scope,
) -> Result<Response, ApiError> {
    let params = render_params(headers, raw_query, query)?;
    let instances = state.retrieve.instances(&scope).await?;
    let mut images = Vec::new();
    for inst in &instances {
        match state.render.rendered_frame(inst, 1, &params).await {
            Ok(img) => images.push(img),
            // Instances without pixels (reports, dose SRs) are not images.
            Err(RenderError::Decode(DecodeError::NoSuchFrame(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if images.is_empty() {
        return Err(ApiError::not_found(
            "no instance here has pixel data to render",
        ));
    }
    Ok(multipart_images(images, media_type(&params), headers))
}

/// `GET /dicomweb/studies/{study}/rendered`
pub async fn rendered_study(
    State(state): State<AppState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Params,
) -> Result<Response, ApiError> {
    rendered_scope(
        &state,
        &headers,
        raw.as_deref(),
        &q,
        scope(study, None, None)?,
    )
    .await
}

/// `GET /dicomweb/studies/{study}/series/{series}/rendered`
pub async fn rendered_series(
    State(state): State<AppState>,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Params,
) -> Result<Response, ApiError> {
    rendered_scope(
        &state,
        &headers,
        raw.as_deref(),
        &q,
        scope(study, Some(series), None)?,
    )
    .await
}

/// `GET …/instances/{instance}/rendered`: the first frame.
pub async fn rendered_instance(
    State(state): State<AppState>,
    Path((study, series, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let params = render_params(&headers, raw.as_deref(), &q)?;
    let inst = single(&state, &scope(study, Some(series), Some(instance))?).await?;
    let out = state.render.rendered_frame(&inst, 1, &params).await?;
    Ok(image_response(out, media_type(&params), &headers))
}

/// `GET …/frames/{frames}/rendered`: one image for one frame, multipart for
/// several.
pub async fn rendered_frames(
    State(state): State<AppState>,
    Path((study, series, instance, frames)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let frames = parse_frame_list(&frames)?;
    let params = render_params(&headers, raw.as_deref(), &q)?;
    let inst = single(&state, &scope(study, Some(series), Some(instance))?).await?;
    let mut images = Vec::with_capacity(frames.len());
    for &n in &frames {
        images.push(state.render.rendered_frame(&inst, n, &params).await?);
    }
    if images.len() == 1 {
        let out = images.pop().expect("one image");
        return Ok(image_response(out, media_type(&params), &headers));
    }
    Ok(multipart_images(images, media_type(&params), &headers))
}

/// A thumbnail of `scope`'s representative instance (frame `frame`).
async fn thumbnail(
    state: &AppState,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    query: &[(String, String)],
    scope: Scope,
    frame: u32,
) -> Result<Response, ApiError> {
    let params = render_params(headers, raw_query, query)?;
    let inst = state.render.representative(&scope).await?;
    // The stored thumbnail is a JPEG of the first frame at the default window;
    // anything else is rendered (from the stored preview where it suffices).
    let stored_fits = frame == 1
        && params.window.is_none()
        && params.viewport.is_none()
        && params.format == OutputFormat::Jpeg;
    let out = if stored_fits {
        state.render.thumbnail(&inst).await?
    } else {
        let mut params = params.clone();
        if params.viewport.is_none() {
            params.viewport = Some(pipeline::Viewport {
                width: state.render.thumbnail_side(),
                height: state.render.thumbnail_side(),
                region: None,
            });
        }
        state.render.rendered_frame(&inst, frame, &params).await?
    };
    Ok(image_response(out, media_type(&params), headers))
}

/// `GET /dicomweb/studies/{study}/thumbnail`
pub async fn thumbnail_study(
    State(state): State<AppState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Params,
) -> Result<Response, ApiError> {
    thumbnail(
        &state,
        &headers,
        raw.as_deref(),
        &q,
        scope(study, None, None)?,
        1,
    )
    .await
}

/// `GET /dicomweb/studies/{study}/series/{series}/thumbnail`
pub async fn thumbnail_series(
    State(state): State<AppState>,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Params,
) -> Result<Response, ApiError> {
    thumbnail(
        &state,
        &headers,
        raw.as_deref(),
        &q,
        scope(study, Some(series), None)?,
        1,
    )
    .await
}

/// `GET …/instances/{instance}/thumbnail`
pub async fn thumbnail_instance(
    State(state): State<AppState>,
    Path((study, series, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let scope = scope(study, Some(series), Some(instance))?;
    thumbnail(&state, &headers, raw.as_deref(), &q, scope, 1).await
}

/// `GET …/frames/{frame}/thumbnail` (one frame).
pub async fn thumbnail_frame(
    State(state): State<AppState>,
    Path((study, series, instance, frames)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let frames = parse_frame_list(&frames)?;
    let [frame] = frames[..] else {
        return Err(ApiError::bad_request("a thumbnail is of one frame"));
    };
    let scope = scope(study, Some(series), Some(instance))?;
    thumbnail(&state, &headers, raw.as_deref(), &q, scope, frame).await
}

/// WADO-URI rendered (PS3.18 §9.1.2): the same pipeline as `/rendered`, with
/// WADO-URI's parameter names. `rows`/`columns` bound the output like a
/// viewport; `region` and `presentationUID` are refused (not supported).
pub(super) async fn wado_uri_rendered(
    state: &AppState,
    headers: &HeaderMap,
    p: &WadoUriParams,
    content_type: &str,
    scope: Scope,
) -> Result<Response, ApiError> {
    let media = negotiate::negotiate_rendered(Some(content_type)).map_err(|_| {
        ApiError::not_acceptable(format!(
            "contentType {content_type:?} is not available; use application/dicom, image/jpeg, image/png or image/webp"
        ))
    })?;
    if p.region.is_some() || p.presentation_uid.is_some() {
        return Err(ApiError::bad_request(
            "region and presentationUID are not supported by this archive",
        ));
    }
    let number = |name: &str, v: &Option<String>| -> Result<Option<f64>, ApiError> {
        v.as_deref()
            .map(|s| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| ApiError::bad_request(format!("{name} {s:?} is not a number")))
            })
            .transpose()
    };
    let window = match (
        number("windowCenter", &p.window_center)?,
        number("windowWidth", &p.window_width)?,
    ) {
        (Some(c), Some(w)) => Some(
            pipeline::parse_window(&format!("{c},{w}"))
                .map_err(|e| ApiError::bad_request(format!("windowCenter/windowWidth: {e}")))?,
        ),
        (None, None) => None,
        _ => {
            return Err(ApiError::bad_request(
                "windowCenter and windowWidth go together",
            ));
        }
    };
    let side = |name: &str, v: &Option<String>| -> Result<Option<u32>, ApiError> {
        v.as_deref()
            .map(|s| {
                s.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| (1..=pipeline::MAX_VIEWPORT_SIDE).contains(&n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "{name} {s:?} is not a size in pixels (1–{})",
                            pipeline::MAX_VIEWPORT_SIDE
                        ))
                    })
            })
            .transpose()
    };
    let (rows, columns) = (side("rows", &p.rows)?, side("columns", &p.columns)?);
    let viewport = match (rows, columns) {
        (None, None) => None,
        (r, c) => Some(pipeline::Viewport {
            width: c.unwrap_or(pipeline::MAX_VIEWPORT_SIDE),
            height: r.unwrap_or(pipeline::MAX_VIEWPORT_SIDE),
            region: None,
        }),
    };
    let quality = p
        .image_quality
        .as_deref()
        .map(|q| {
            pipeline::parse_quality(q)
                .map_err(|e| ApiError::bad_request(format!("imageQuality: {e}")))
        })
        .transpose()?;
    let frame = match p.frame_number.as_deref() {
        None => 1,
        Some(f) => f
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                ApiError::bad_request(format!("frameNumber {f:?} is not a frame number (1, 2, …)"))
            })?,
    };
    let params = RenderParams {
        window,
        viewport,
        quality,
        format: match media {
            RenderedMedia::Jpeg => OutputFormat::Jpeg,
            RenderedMedia::Png => OutputFormat::Png,
            RenderedMedia::Webp => OutputFormat::Webp,
        },
    };
    let inst = single(state, &scope).await?;
    let out = state.render.rendered_frame(&inst, frame, &params).await?;
    Ok(image_response(out, media_type(&params), headers))
}
