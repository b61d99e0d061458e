//! The `/sandbox/*` routes a person or a test uses to read and script the sandbox.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{MessageRates, Population, Sandbox, ScriptedReply, ScriptedSms, Template};

#[derive(Deserialize)]
pub(crate) struct PhoneQuery {
    phone: String,
}

pub(crate) async fn list_messages(
    State(sandbox): State<Sandbox>,
    Query(q): Query<PhoneQuery>,
) -> Json<Value> {
    Json(json!({ "messages": sandbox.messages(&q.phone) }))
}

pub(crate) async fn list_calls(
    State(sandbox): State<Sandbox>,
    Query(q): Query<PhoneQuery>,
) -> Json<Value> {
    Json(json!({ "calls": sandbox.calls(&q.phone) }))
}

pub(crate) async fn list_receipts(State(sandbox): State<Sandbox>) -> Json<Value> {
    Json(json!({ "receipts": sandbox.receipts() }))
}

pub(crate) async fn call_log(State(sandbox): State<Sandbox>) -> Json<Value> {
    Json(json!({ "calls": sandbox.call_log() }))
}

pub(crate) async fn last_code(
    State(sandbox): State<Sandbox>,
    Path(phone): Path<String>,
) -> Response {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    match sandbox.messages(&digits).last() {
        Some(m) => Json(json!({"phone": m.phone, "code": m.code})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no message sent to this number yet"})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct ScriptBody {
    phone: String,
    replies: Vec<ScriptedReply>,
}

pub(crate) async fn add_script(
    State(sandbox): State<Sandbox>,
    Json(body): Json<ScriptBody>,
) -> StatusCode {
    sandbox.script(&body.phone, body.replies);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
pub(crate) struct SmsScriptBody {
    phone: String,
    replies: Vec<ScriptedSms>,
}

pub(crate) async fn add_sms_script(
    State(sandbox): State<Sandbox>,
    Json(body): Json<SmsScriptBody>,
) -> StatusCode {
    sandbox.script_sms(&body.phone, body.replies);
    StatusCode::NO_CONTENT
}

/// The SMS accepted for a phone, oldest first, each `text` the `Body` as sent.
pub(crate) async fn sms_messages(
    State(sandbox): State<Sandbox>,
    Path(phone): Path<String>,
) -> Json<Value> {
    Json(json!({ "messages": sandbox.sms_messages(&phone) }))
}

pub(crate) async fn sms_calls(
    State(sandbox): State<Sandbox>,
    Query(q): Query<PhoneQuery>,
) -> Json<Value> {
    Json(json!({ "calls": sandbox.sms_calls(&q.phone) }))
}

pub(crate) async fn sms_callbacks(State(sandbox): State<Sandbox>) -> Json<Value> {
    Json(json!({ "callbacks": sandbox.sms_callbacks() }))
}

pub(crate) async fn list_templates(State(sandbox): State<Sandbox>) -> Json<Value> {
    Json(json!({ "templates": sandbox.templates() }))
}

/// Replaces the tenant's templates, e.g. to pause one as Meta would.
pub(crate) async fn set_templates(
    State(sandbox): State<Sandbox>,
    Json(templates): Json<Vec<Template>>,
) -> StatusCode {
    sandbox.set_templates(templates);
    StatusCode::NO_CONTENT
}

pub(crate) async fn population(State(sandbox): State<Sandbox>) -> Json<Population> {
    Json(sandbox.population())
}

/// Replaces the shares of numbers not on WhatsApp, failed and without receipts.
pub(crate) async fn set_population(
    State(sandbox): State<Sandbox>,
    Json(population): Json<Population>,
) -> Response {
    match sandbox.set_population(population) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response(),
    }
}

/// What the population makes of one number.
pub(crate) async fn fate(State(sandbox): State<Sandbox>, Path(phone): Path<String>) -> Json<Value> {
    let fate = sandbox.population().fate(&phone);
    Json(json!({ "phone": phone, "fate": fate }))
}

/// `{"answers":[…]}`: scripted answers for the next calls of one kind (events to the app,
/// siteverify).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnswersBody<T> {
    pub answers: Vec<T>,
}

/// A 400 naming the first scripted status that is not one to answer with (200 to 599),
/// if any.
pub(crate) fn refuse_odd_status(
    statuses: impl IntoIterator<Item = Option<u16>>,
) -> Option<Response> {
    let bad = statuses
        .into_iter()
        .flatten()
        .find(|s| !(200..600).contains(s))?;
    let error = format!("status {bad} is not one to answer with (200 to 599)");
    Some((StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response())
}

pub(crate) async fn reset(State(sandbox): State<Sandbox>) -> StatusCode {
    sandbox.reset();
    StatusCode::NO_CONTENT
}

pub(crate) async fn stats(State(sandbox): State<Sandbox>) -> Json<Value> {
    // One lock, so the numbers describe the same moment.
    let recorded = sandbox.recorded();
    Json(json!({
        "accepted": recorded.accepted(),
        "calls": recorded.logged_calls(),
        "rateLimited": recorded.rate_limited(),
        "receiptsPosted": recorded.receipts_posted(),
        "receiptsFailed": recorded.receipts_failed(),
        "smsCalls": recorded.sms.calls_logged(),
        "smsAccepted": recorded.sms.accepted(),
        "smsCallbacksPosted": recorded.sms.callbacks_posted(),
        "smsCallbacksFailed": recorded.sms.callbacks_failed(),
        "appEventsReceived": recorded.app.received(),
        "appEventsVerified": recorded.app.verified(),
        "numbers": recorded.numbers.stats(),
    }))
}

/// Each sending number's messages since start or reset, by what became of them.
pub(crate) async fn number_stats(State(sandbox): State<Sandbox>) -> Json<Value> {
    Json(json!({ "numbers": sandbox.number_stats() }))
}

pub(crate) async fn message_rates(State(sandbox): State<Sandbox>) -> Json<MessageRates> {
    Json(sandbox.message_rates())
}

/// Replaces every number's throughput.
pub(crate) async fn set_message_rates(
    State(sandbox): State<Sandbox>,
    Json(rates): Json<MessageRates>,
) -> StatusCode {
    sandbox.set_message_rates(rates);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RateBody {
    messages_per_second: u32,
}

/// Sets one number's throughput.
pub(crate) async fn set_messages_per_second(
    State(sandbox): State<Sandbox>,
    Path(number): Path<String>,
    Json(body): Json<RateBody>,
) -> StatusCode {
    sandbox.set_messages_per_second(&number, body.messages_per_second);
    StatusCode::NO_CONTENT
}

pub(crate) async fn degraded_numbers(State(sandbox): State<Sandbox>) -> Json<Value> {
    Json(json!({ "degraded": sandbox.degraded_numbers() }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DegradeBody {
    /// Unix time in ms the trouble begins; now without it.
    from_ms: Option<u64>,
}

/// Marks a number as in trouble from `fromMs` (or now, with no body).
pub(crate) async fn degrade_number(
    State(sandbox): State<Sandbox>,
    Path(number): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let from_ms = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<DegradeBody>(&body) {
            Ok(body) => body.from_ms,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({ "error": e.to_string() })),
                )
                    .into_response();
            }
        }
    };
    let now = Instant::now();
    let from = match from_ms {
        None => now,
        Some(from_ms) => {
            let now_ms = crate::send::now_ms();
            if from_ms >= now_ms {
                now + Duration::from_millis(from_ms - now_ms)
            } else {
                now.checked_sub(Duration::from_millis(now_ms - from_ms))
                    .unwrap_or(now)
            }
        }
    };
    sandbox.degrade_number(&number, from);
    StatusCode::NO_CONTENT.into_response()
}

pub(crate) async fn undegrade_number(
    State(sandbox): State<Sandbox>,
    Path(number): Path<String>,
) -> StatusCode {
    sandbox.undegrade_number(&number);
    StatusCode::NO_CONTENT
}
