//! Sessions: who am I, and logout.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;
use crate::token::Claims;

/// The claims of a valid bearer token whose session is still open.
pub struct Authenticated(pub Claims);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        let claims = state
            .tokens
            .verify(token.trim())
            .map_err(|_| ApiError::Unauthorized)?;
        if !state
            .users
            .session_is_live(&claims.jti, &claims.sub)
            .await?
        {
            return Err(ApiError::Unauthorized);
        }
        Ok(Authenticated(claims))
    }
}

pub async fn me(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let user = state
        .users
        .get(&claims.sub)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(Json(json!({ "user": user })))
}

pub async fn logout(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
) -> Result<StatusCode, ApiError> {
    state.users.close_session(&claims.jti).await?;
    Ok(StatusCode::NO_CONTENT)
}
