//! The send endpoints' common front door: which API the path names (Twilio's, under
//! `/2010-04-01/`, goes to `sms`), the key, and the plan limit, in WATI's order; then v1
//! or v3 reads the body.

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::limit::retry_after_secs;
use crate::{Api, Sandbox, v1, v3};

const V1_SUFFIX: &str = "api/v1/sendTemplateMessage";
const V3_SUFFIX: &str = "api/ext/v3/messageTemplates/send";

/// Room for a full v3 batch even with long ids and several parameters a recipient.
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Any path prefix is accepted, as a WATI base URL carries the tenant in its path.
pub(crate) async fn send(
    State(sandbox): State<Sandbox>,
    Path(path): Path<String>,
    Query(query): Query<v1::SendQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(twilio) = crate::sms::twilio_path(&path) {
        return crate::sms::handle(sandbox, twilio, &headers, body).await;
    }
    let (api, path_prefix) = if let Some(prefix) = path.strip_suffix(V1_SUFFIX) {
        (Api::V1, prefix)
    } else if let Some(prefix) = path.strip_suffix(V3_SUFFIX) {
        (Api::V3, prefix)
    } else {
        return wati_answer(StatusCode::NOT_FOUND, false, "Not found");
    };
    let path_prefix = format!("/{}", path_prefix.trim_end_matches('/'));
    let expected = format!("Bearer {}", sandbox.config.api_key);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return wati_answer(StatusCode::UNAUTHORIZED, false, "Unauthorized");
    }
    let received_at_ms = now_ms();
    let admitted = {
        let mut recorded = sandbox.recorded();
        // Read the clock under the lock so the window sees arrivals in order.
        recorded.admit(
            api,
            &path_prefix,
            Instant::now(),
            received_at_ms,
            sandbox.config.calls_per_10s,
        )
    };
    let ticket = match admitted {
        Ok(ticket) => ticket,
        Err(wait) => {
            let answer = wati_answer(StatusCode::TOO_MANY_REQUESTS, false, "Too many requests");
            return with_retry_after(answer, Some(retry_after_secs(wait)));
        }
    };
    // Like WATI, finish a call whose caller stopped waiting: its messages may still go
    // out (that is why a timeout's outcome is unknown), and it is still recorded.
    let handled = tokio::spawn(async move {
        match api {
            Api::V1 => v1::send(&sandbox, ticket, query, &body).await,
            Api::V3 => v3::send(&sandbox, ticket, &body).await,
        }
    });
    handled
        .await
        .unwrap_or_else(|_| wati_answer(StatusCode::INTERNAL_SERVER_ERROR, false, "Internal error"))
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn wati_answer(status: StatusCode, result: bool, info: &str) -> Response {
    (status, Json(json!({"result": result, "info": info}))).into_response()
}

/// WATI's error body for a refused v3 request (`InvalidRequestResponse` and its kin in
/// WATI's reference): `{code, message, timestamp}`.
pub(crate) fn v3_error(status: StatusCode, message: &str) -> Response {
    (status, Json(v3_error_body(status, message))).into_response()
}

pub(crate) fn v3_error_body(status: StatusCode, message: &str) -> Value {
    json!({
        "code": status.as_u16(),
        "message": message,
        "timestamp": crate::event::iso8601_utc(now_ms()),
    })
}

pub(crate) fn with_retry_after(mut response: Response, secs: Option<u64>) -> Response {
    if let Some(secs) = secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
