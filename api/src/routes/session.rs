//! Sessions: who am I, refresh, logout, and the public keys tokens are checked with.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiJson;
use crate::error::ApiError;
use crate::state::AppState;
use crate::token::Claims;
use crate::users::Refresh;
use otp_shared::events::{Event, EventType};
use otp_shared::redis::codes::SendKind;
use otp_shared::redis::send_budget::{Counted, SendBudget};

/// Refreshes one refresh session may make per minute.
pub const REFRESHES_PER_SESSION_PER_MINUTE: u32 = 10;

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
        let claims = state.tokens.verify(token.trim()).map_err(|e| {
            // Why, for an operator rotating keys: an unknown kid, an expiry, a bad signature.
            tracing::debug!(error = %e, "bearer token refused");
            ApiError::Unauthorized
        })?;
        if !state
            .users
            .access_is_live(claims.sid, claims.jti, claims.sub)
            .await?
        {
            return Err(ApiError::Unauthorized);
        }
        Ok(Authenticated(claims))
    }
}

/// `GET /.well-known/jwks.json`: the public keys of the set (none for HS256), for
/// services that verify tokens themselves.
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        // Verifiers may cache it for five minutes: announce a new key at least that
        // long before it signs (see the README's key rotation).
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.tokens.jwks()),
    )
}

pub async fn me(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let user = state
        .users
        .get(claims.sub)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(Json(json!({ "user": user })))
}

pub async fn logout(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
) -> Result<StatusCode, ApiError> {
    state.users.end_session(claims.sid).await?;
    state.users.close_access(claims.sid, claims.jti).await?;
    revoked(&state, claims.sub, claims.sid, "logout").await;
    Ok(StatusCode::NO_CONTENT)
}

/// Tells the app that a session ended, and why.
async fn revoked(state: &AppState, user_id: uuid::Uuid, session_id: uuid::Uuid, why: &str) {
    if let Some(events) = &state.events {
        let event = Event::about_user(
            EventType::SessionRevoked,
            user_id,
            Some(session_id),
            None,
            otp_shared::now_ms(),
        )
        .because(why);
        events.emit_or_log(event).await;
    }
}

#[derive(Deserialize)]
pub struct RefreshBody {
    #[serde(rename = "refreshToken")]
    refresh_token: Option<Value>,
}

/// Spends a refresh token for a new access token and a new refresh token. The new
/// access token is recorded before the refresh token is spent: if that fails, the
/// client's retry with the same refresh token works (rather than looking like reuse).
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<Value>, ApiError> {
    let Some(Value::String(presented)) = body.refresh_token else {
        return Err(ApiError::InvalidBody);
    };
    let pending = match state.users.refresh(&presented).await? {
        Refresh::Rotating(pending) => pending,
        Refresh::Refused => return Err(ApiError::Unauthorized),
        Refresh::Reused {
            session_id,
            user_id,
        } => {
            revoked(&state, user_id, session_id, "refresh_token_reused").await;
            return Err(ApiError::Unauthorized);
        }
    };
    // A session refreshes every few minutes; one that refreshes faster only fills the
    // table (each refresh keeps a row) and spends the api.
    let budget = SendBudget::refreshes(
        state.redis.clone(),
        &state.keys,
        pending.session_id,
        REFRESHES_PER_SESSION_PER_MINUTE,
    );
    if let Counted::Over { retry_after } = budget.count(SendKind::Resend).await? {
        metrics::counter!(otp_shared::metrics::RATE_LIMIT_REJECTIONS, "scope" => "session")
            .increment(1);
        return Err(ApiError::RateLimited { retry_after });
    }
    let (token, claims) = state
        .tokens
        .issue(pending.user_id, &pending.phone, pending.session_id)
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    state
        .users
        .open_access(claims.sid, claims.jti, pending.user_id)
        .await?;
    let refresh_token = pending.commit().await?;
    Ok(Json(
        json!({ "token": token, "refreshToken": refresh_token }),
    ))
}
