//! WATI's receipts: `POST /api/webhooks/wati/{secret}`. WATI signs nothing, so the
//! secret in the path is the authentication: compared in constant time before the
//! method or the body is looked at, so a wrong one is answered exactly like any unknown
//! route, whatever the request. Every well-formed event gets 200 at once, known or not,
//! repeated or not (WATI retries anything else for a day).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::receipts::{Applied, Event, Receipt, failed_code_label};
use crate::state::AppState;

/// The route's path with its secret left out, for logs and labels.
pub const REDACTED_PATH: &str = "/api/webhooks/wati/{secret}";
/// What every webhook path starts with.
pub const PATH_PREFIX: &str = "/api/webhooks/wati/";
/// The longest a receipt waits for a burst of sign-ins: well inside any webhook timeout.
const RECEIPTS_YIELD_AT_MOST: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves every method (so that a wrong secret is a 404 for all of them, as for an
/// unknown route); only POST with the right secret goes further.
pub async fn wati(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let Some(expected) = &state.settings.webhook_secret else {
        return Err(ApiError::RouteNotFound);
    };
    // The secret's alphabet needs no percent-encoding: the path's bytes are compared
    // as they came.
    let secret = request
        .uri()
        .path()
        .strip_prefix(PATH_PREFIX)
        .unwrap_or_default();
    let matches = aws_lc_rs::constant_time::verify_slices_are_equal(
        secret.as_bytes(),
        expected.expose_secret().as_bytes(),
    );
    if matches.is_err() {
        return Err(ApiError::RouteNotFound);
    }
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    // A receipt can wait (its time comes from the event): during a burst of sign-ins,
    // they go first, and WATI, waiting for this answer, sends fewer meanwhile.
    state
        .pressure
        .yield_to_sign_ins(RECEIPTS_YIELD_AT_MOST)
        .await;
    // Past the limit, or a client gone mid-body (which reads no answer anyway).
    let body = axum::body::to_bytes(request.into_body(), super::MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let receipt = Receipt::parse(&body).map_err(|_| ApiError::InvalidBody)?;
    let applied = state.receipts.apply(&receipt).await?;
    record(&receipt, applied);
    Ok(Json(json!({"status": "ok"})))
}

fn record(receipt: &Receipt, applied: Applied) {
    metrics::counter!(
        otp_shared::metrics::RECEIPTS,
        "event" => receipt.event.label(),
        "outcome" => applied.label(),
    )
    .increment(1);
    if let Event::Failed { code, .. } = &receipt.event
        && matches!(applied, Applied::Changed { .. })
    {
        metrics::counter!(otp_shared::metrics::RECEIPT_FAILURES, "failed_code" => failed_code_label(code))
            .increment(1);
    }
    if let Applied::Changed {
        first_delivery,
        first_read,
    } = applied
    {
        if let Some(wait) = first_delivery {
            metrics::counter!(otp_shared::metrics::WHATSAPP_DELIVERED).increment(1);
            metrics::histogram!(otp_shared::metrics::ACCEPTED_TO_DELIVERED).record(wait);
        }
        if let Some(wait) = first_read {
            metrics::histogram!(otp_shared::metrics::DELIVERED_TO_READ).record(wait);
        }
    }
    tracing::debug!(
        request_id = ?receipt.request_id,
        event = receipt.event.label(),
        outcome = applied.label(),
        "receipt"
    );
}
