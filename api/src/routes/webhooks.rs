//! Delivery receipts. WATI's: `POST /api/webhooks/wati/{secret}`. WATI signs nothing, so
//! the secret in the path is the authentication: compared in constant time before the
//! method or the body is looked at, so a wrong one is answered exactly like any unknown
//! route, whatever the request. Every well-formed event gets 200 at once, known or not,
//! repeated or not (WATI retries anything else for a day). A failure receipt sends the
//! code by SMS where SMS is on. Twilio's status callbacks: `POST /api/webhooks/twilio`,
//! signed with `X-Twilio-Signature`, checked in constant time before anything changes.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use otp_shared::events::{Event as AppEvent, EventType};
use otp_shared::job::SendJob;
use otp_shared::redis::status::Channel;
use otp_shared::sms_fallback::{FellBack, Trigger};

use crate::error::ApiError;
use crate::receipts::{Applied, CodeKept, Event, Receipt, failed_code_label};
use crate::sms::SmsReceipt;
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
    // Past the limit, or a client gone mid-body (which reads no answer anyway).
    let body = axum::body::to_bytes(request.into_body(), super::MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let receipt = Receipt::parse(&body).map_err(|_| ApiError::InvalidBody)?;
    // A receipt can wait (its time comes from the event): during a burst of sign-ins,
    // they go first, and WATI, waiting for this answer, sends fewer meanwhile. Not a
    // failure: it sends a code by SMS, or pauses a sending number that is in trouble
    // (held back, a burst's failures pile up on that number).
    if !matches!(receipt.event, Event::Failed { .. }) {
        state
            .pressure
            .yield_to_sign_ins(RECEIPTS_YIELD_AT_MOST)
            .await;
    }
    // A failure for the number's trouble goes out again from another number of the
    // pool; otherwise, with SMS on, a failure keeps the code for its SMS (or retires it
    // below).
    let code_kept = match &receipt.event {
        Event::Failed { code, .. } if state.pool.reroutes(code) => CodeKept::Reroute,
        Event::Failed { .. } if state.sms.is_some() => CodeKept::Keep,
        _ => CodeKept::Delete,
    };
    let applied = state.receipts.apply(&receipt, code_kept).await?;
    state.pool.learn(&receipt.event, &applied).await;
    match &applied {
        Applied::Changed {
            kept: Some(job), ..
        } if state.sms.is_some() => fall_back(&state, job).await,
        Applied::Changed {
            kept: Some(job), ..
        } => retire_code(&state, job).await,
        Applied::Rerouted { job, .. } => reroute(&state, job).await?,
        _ => {}
    }
    record(
        Channel::Whatsapp,
        &receipt.event,
        receipt.request_id,
        &applied,
    );
    if let Some(request_id) = receipt.request_id {
        tell(
            &state,
            Channel::Whatsapp,
            request_id,
            &receipt.event,
            &applied,
        )
        .await;
    }
    Ok(Json(json!({"status": "ok"})))
}

/// Sends the code of a WhatsApp send whose failure receipt kept it by SMS; retires it
/// where it goes by no SMS, as a failure without SMS does. Whatever happens, WATI gets
/// its 200: the receipt is recorded, and a retry of it would change nothing.
async fn fall_back(state: &AppState, job: &SendJob) {
    let Some(sms) = &state.sms else { return };
    let retire = match sms.fallback.fall_back_once(job, Trigger::Receipt).await {
        Ok(FellBack::BySms | FellBack::Needless(_)) => false,
        Ok(FellBack::NotAllowed | FellBack::OverBudget) => true,
        Err(e) => {
            tracing::warn!(request_id = %job.request_id, error = %e, "could not send a failed code by SMS; retiring it");
            true
        }
    };
    if retire {
        retire_code(state, job).await;
    }
}

/// Retires the code of a send that failed for good and goes by no SMS (a failure kept
/// it: for an SMS that may not go, or for a reroute that could not happen).
async fn retire_code(state: &AppState, job: &SendJob) {
    if let Err(e) = state.receipts.retire_code(job).await {
        tracing::warn!(request_id = %job.request_id, error = %e, "could not retire a failed code; it lapses at its expiry");
    }
}

/// Publishes again the job of a send Meta refused for its number's trouble: it goes out
/// from another number. Should that fail, WATI gets an error and repeats the receipt,
/// which reroutes the send again.
async fn reroute(state: &AppState, job: &SendJob) -> Result<(), ApiError> {
    tracing::info!(request_id = %job.request_id, "a send refused for its number's trouble goes out again");
    if let Err(e) = state.admission.count_again(job.request_id).await {
        tracing::warn!(request_id = %job.request_id, error = %e, "could not count a rerouted send in the admission count");
    }
    state
        .publisher
        .publish(job)
        .await
        .map_err(|e| ApiError::SendUnavailable(Box::new(e)))
}

/// Twilio's status callbacks. Without SMS, or without a callback URL to check their
/// signature against, the route does not exist.
pub async fn twilio(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let Some((sms, callback_url)) = state
        .sms
        .as_ref()
        .and_then(|sms| Some((sms, sms.settings.status_callback_url.as_deref()?)))
    else {
        return Err(ApiError::RouteNotFound);
    };
    // A callback can wait too: it is taken as happening when it arrived, and during a
    // burst of sign-ins those go first.
    let arrived_at_ms = otp_shared::now_ms();
    state
        .pressure
        .yield_to_sign_ins(RECEIPTS_YIELD_AT_MOST)
        .await;
    let query = request.uri().query().unwrap_or_default().to_owned();
    let signature = request
        .headers()
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = axum::body::to_bytes(request.into_body(), super::MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    // Twilio signs the URL it was given: ours, with the query the worker added.
    let url = if query.is_empty() {
        callback_url.to_owned()
    } else {
        format!("{callback_url}?{query}")
    };
    let token = sms.settings.auth_token.expose_secret().as_bytes();
    let signed = signature
        .is_some_and(|signature| crate::twilio_signature::verify(token, &url, &params, &signature));
    if !signed {
        return Err(ApiError::BadSignature);
    }
    // Signed, but for no send of ours (another app's callback URL): nothing to do.
    let Ok(receipt) = SmsReceipt::parse(&query, &params) else {
        return Ok(Json(json!({"status": "ok"})));
    };
    let applied = state.receipts.apply_sms(&receipt, arrived_at_ms).await?;
    record(
        Channel::Sms,
        &receipt.event,
        Some(receipt.request_id),
        &applied,
    );
    tell(
        &state,
        Channel::Sms,
        receipt.request_id,
        &receipt.event,
        &applied,
    )
    .await;
    Ok(Json(json!({"status": "ok"})))
}

/// Tells the app what a receipt changed: a send delivered, read, or failed. (A receipt
/// answered 200 is not posted again: an event that cannot be queued is logged, and lost.)
async fn tell(
    state: &AppState,
    channel: Channel,
    request_id: uuid::Uuid,
    event: &Event,
    applied: &Applied,
) {
    let (
        Some(events),
        Applied::Changed {
            first_delivery,
            first_read,
            phone,
            ..
        },
    ) = (&state.events, applied)
    else {
        return;
    };
    let about = |kind| {
        AppEvent::about_send(
            kind,
            request_id,
            phone,
            channel.as_str(),
            otp_shared::now_ms(),
        )
    };
    if first_delivery.is_some() {
        events.emit_or_log(about(EventType::OtpDelivered)).await;
    }
    if first_read.is_some() {
        events.emit_or_log(about(EventType::OtpRead)).await;
    }
    if let Event::Failed { code, .. } = event {
        // The provider's code, not its free text: whoever can post receipts writes that.
        let failed = about(EventType::OtpFailed).with(|d| {
            d.failed_code = Some(code.clone()).filter(|c| !c.is_empty());
            d.reason = Some("delivery failed".into());
        });
        events.emit_or_log(failed).await;
    }
}

/// Counts a receipt of `channel`, and the delivery and reading it may have made.
fn record(channel: Channel, event: &Event, request_id: Option<uuid::Uuid>, applied: &Applied) {
    metrics::counter!(
        otp_shared::metrics::RECEIPTS,
        "event" => event.label(),
        "outcome" => applied.label(),
        "channel" => channel.as_str(),
    )
    .increment(1);
    if let Event::Failed { code, .. } = event
        && matches!(applied, Applied::Changed { .. })
        && channel == Channel::Whatsapp
    {
        metrics::counter!(otp_shared::metrics::RECEIPT_FAILURES, "failed_code" => failed_code_label(code))
            .increment(1);
    }
    if let Applied::Changed {
        first_delivery,
        first_read,
        ..
    } = applied
    {
        if let Some(wait) = first_delivery {
            let delivered = match channel {
                Channel::Sms => otp_shared::metrics::SMS_DELIVERED,
                Channel::Whatsapp | Channel::Test => otp_shared::metrics::WHATSAPP_DELIVERED,
            };
            metrics::counter!(delivered).increment(1);
            metrics::histogram!(otp_shared::metrics::ACCEPTED_TO_DELIVERED, "channel" => channel.as_str())
                .record(*wait);
        }
        if let Some(wait) = first_read {
            metrics::histogram!(otp_shared::metrics::DELIVERED_TO_READ).record(*wait);
        }
    }
    tracing::debug!(
        ?request_id,
        channel = channel.as_str(),
        event = event.label(),
        outcome = applied.label(),
        "receipt"
    );
}
