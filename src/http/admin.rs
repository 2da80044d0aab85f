//! Users and API tokens over HTTP, for administrators (the route table gives
//! these routes `Access::Admin`; the CLI's `aina user` / `aina token` do the
//! same on the server).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use crate::app::AppState;
use crate::auth::Role;
use crate::auth::accounts::AccountError;

/// Days an API token lives when the request does not say.
const DEFAULT_TOKEN_DAYS: u64 = 365;

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Invalid(reason) => ApiError::bad_request(reason),
            AccountError::Exists(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            AccountError::NoSuchUser(_) => ApiError::not_found(e.to_string()),
            AccountError::Index(e) => e.into(),
        }
    }
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> Result<T, ApiError> {
    b.map(|Json(t)| t)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// `GET /admin/users`
pub async fn list_users(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.accounts.users().await?).into_response())
}

/// The body of `POST /admin/users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    role: Role,
    password: String,
}

/// `POST /admin/users` `{"username", "role", "password"}`
pub async fn create_user(
    State(state): State<AppState>,
    user: JsonBody<NewUser>,
) -> Result<Response, ApiError> {
    let user = body(user)?;
    state
        .accounts
        .create_user(&user.username, user.role, &user.password)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "username": user.username, "role": user.role })),
    )
        .into_response())
}

/// The body of `PATCH /admin/users/{username}`: what to change, at least one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    role: Option<Role>,
    password: Option<String>,
    disabled: Option<bool>,
}

/// `PATCH /admin/users/{username}` with any of `role`, `password`, `disabled`.
pub async fn update_user(
    State(state): State<AppState>,
    Path(username): Path<String>,
    change: JsonBody<UserChange>,
) -> Result<Response, ApiError> {
    let change = body(change)?;
    if change.role.is_none() && change.password.is_none() && change.disabled.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give role, password or disabled",
        ));
    }
    if let Some(password) = &change.password {
        state.accounts.set_password(&username, password).await?;
    }
    if let Some(role) = change.role {
        state.accounts.set_role(&username, role).await?;
    }
    if let Some(disabled) = change.disabled {
        state.accounts.set_disabled(&username, disabled).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /admin/tokens` (never with secrets)
pub async fn list_tokens(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.accounts.tokens().await?).into_response())
}

/// The body of `POST /admin/tokens`; `days` defaults to a year.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    role: Role,
    days: Option<u64>,
}

/// `POST /admin/tokens` `{"name", "role", "days"}`: the token is in this
/// answer and nowhere else, ever.
pub async fn create_token(
    State(state): State<AppState>,
    token: JsonBody<NewToken>,
) -> Result<Response, ApiError> {
    let token = body(token)?;
    let days = token.days.unwrap_or(DEFAULT_TOKEN_DAYS);
    let lifetime = Duration::from_secs(days.saturating_mul(86_400));
    let created = state
        .accounts
        .create_token(&token.name, token.role, lifetime)
        .await?;
    let mut answer = serde_json::to_value(&created.info).unwrap_or_default();
    answer["token"] = json!(created.token);
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `DELETE /admin/tokens/{id or name}`
pub async fn revoke_token(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    match state.accounts.revoke_token(&token).await? {
        0 => Err(ApiError::not_found(format!(
            "no live token with id or name {token:?}"
        ))),
        _ => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}
