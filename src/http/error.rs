//! The one table from our errors to HTTP status codes.
//!
//! Client errors carry their message; server errors are logged once here with
//! their source chain and answered with a generic message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::index::IndexError;
use crate::retrieve::RetrieveError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_ACCEPTABLE, message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// A server-side failure: logged with its whole source chain, answered
    /// without details.
    pub fn internal(context: &str, error: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = error.to_string();
        let mut source = error.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "{context}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{context}: the archive could not complete the request; see the server log"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, format!("{}\n", self.message)).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        res
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::Invalid(m) => ApiError::bad_request(m),
            other => ApiError::internal("index", &other),
        }
    }
}

impl From<RetrieveError> for ApiError {
    fn from(e: RetrieveError) -> Self {
        match e {
            RetrieveError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            RetrieveError::Invalid(m) => ApiError::bad_request(m),
            e @ RetrieveError::NotAcceptable { .. } => ApiError::not_acceptable(e.to_string()),
            RetrieveError::Index(e) => e.into(),
            other => ApiError::internal("retrieve", &other),
        }
    }
}
