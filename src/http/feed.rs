//! The change feed over HTTP ([`crate::feed`]): `GET /changefeed?since=&limit=`
//! and `GET /changefeed/latest`.

use axum::Json;
use axum::extract::{Query, RawQuery, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use crate::app::AppState;
use crate::feed::MAX_LIMIT;

/// Entries per answer when `limit` is absent.
const DEFAULT_LIMIT: u32 = 100;

/// `GET /changefeed` parameters (strings, so that a bad one gets our
/// message rather than the extractor's).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    since: Option<String>,
    limit: Option<String>,
}

/// `GET /changefeed?since=SEQ&limit=N`: the entries after `since` (default 0),
/// oldest first, at most `limit` (1 to 1000, default 100). Poll with the
/// last `sequence` seen; an empty list means nothing new yet.
pub async fn changes(
    State(state): State<AppState>,
    query: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}; the change feed takes since and limit",
            e.body_text()
        ))
    })?;
    let since = match query.since.as_deref() {
        None => 0,
        Some(s) => s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_request(format!(
                "since={s:?}: expected a sequence number, 0 or more"
            ))
        })?,
    };
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit={s:?}: expected 1 to {MAX_LIMIT}"))
            })?,
    };
    let changes = state.feed.changes(since, limit).await?;
    // Only an empty page can be a poller ahead of the feed (pointed at
    // another archive or database): saying so beats an empty answer forever.
    if changes.is_empty() {
        let latest = state.feed.latest().await?;
        if since > latest {
            return Err(ApiError::bad_request(format!(
                "since={since} is beyond the latest sequence number, {latest}"
            )));
        }
    }
    let mut response = Json(changes).into_response();
    if let Some(id) = state.feed.feed_id().await?
        && let Ok(value) = HeaderValue::from_str(&id)
    {
        response.headers_mut().insert(FEED_HEADER, value);
    }
    Ok(response)
}

/// The feed's identity on every answer: a poller that keeps it with its
/// sequence number sees when the archive's index was rebuilt (the numbers
/// start again) and reads from 0 again.
const FEED_HEADER: &str = "aina-feed";

/// `GET /changefeed/latest`: the newest sequence number (0 for an empty feed),
/// where a new poller that wants only what happens next starts.
pub async fn latest(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    if query.is_some_and(|q| !q.is_empty()) {
        return Err(ApiError::bad_request(
            "/changefeed/latest takes no parameters",
        ));
    }
    let latest = state.feed.latest().await?;
    let feed = state.feed.feed_id().await?;
    Ok(Json(json!({ "sequence": latest, "feed": feed })).into_response())
}
