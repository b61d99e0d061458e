//! The routes of sending a code, verifying it, and reading a send's delivery status:
//! JSON in and out, and the request metrics; the sagas live in `send` and `login`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::{ApiJson, Client};
use crate::error::ApiError;
use crate::human_check::Verdict;
use crate::login::SignedIn;
use crate::phone::{self, PhoneNumber};
use crate::send::{Accepted, SendRequest};
use crate::state::AppState;
use crate::store::SendKind;
use otp_shared::job::JobChannel;
use otp_shared::locale::Locale;
use otp_shared::redis::status::Channel;

/// Fields are loose JSON so that a missing, empty or mistyped value each gets its own
/// spec error rather than a generic "invalid body".
#[derive(Deserialize)]
pub struct SendOtpBody {
    phone: Option<Value>,
    /// The language the app wants the code in (`pt_BR`, `hi`), if any.
    locale: Option<Value>,
    /// `whatsapp` (the default) or `sms`.
    channel: Option<Value>,
    /// The human check's token, from the provider's widget, when the api asked for one.
    #[serde(rename = "captchaToken")]
    captcha_token: Option<Value>,
}

#[derive(Deserialize)]
pub struct VerifyOtpBody {
    phone: Option<Value>,
    code: Option<Value>,
    /// The send the guess is bound to (what send-otp answered), if the client says.
    #[serde(rename = "requestId")]
    request_id: Option<Value>,
}

fn required_phone(value: Option<Value>) -> Result<PhoneNumber, ApiError> {
    described_phone(value).map(|number| number.phone)
}

/// The phone, with what its numbering plan says of it.
fn described_phone(value: Option<Value>) -> Result<phone::Described, ApiError> {
    match value {
        None | Some(Value::Null) => Err(ApiError::PhoneRequired),
        Some(Value::String(s)) if s.trim().is_empty() => Err(ApiError::PhoneRequired),
        Some(Value::String(s)) => phone::parse_with_type(&s).map_err(|_| ApiError::PhoneInvalid),
        Some(_) => Err(ApiError::PhoneInvalid),
    }
}

/// The send a guess is bound to: none when absent; an id that is no send of ours is
/// answered like an unknown send.
fn bound_send(value: Option<Value>) -> Result<Option<Uuid>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) => Uuid::parse_str(id.trim())
            .map(Some)
            .map_err(|_| ApiError::OtpNotFound),
        Some(_) => Err(ApiError::InvalidBody),
    }
}

/// The app's locale, read as devices write them; a text that names no language is no
/// locale (the code goes out in the default language rather than not at all).
fn optional_locale(value: Option<Value>) -> Result<Option<Locale>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Locale::parse(&s).ok()),
        Some(_) => Err(ApiError::LocaleInvalid),
    }
}

/// The channel the app asks for: WhatsApp unless it says `sms`.
fn requested_channel(value: Option<Value>) -> Result<JobChannel, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(JobChannel::Whatsapp),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "whatsapp" => Ok(JobChannel::Whatsapp),
            "sms" => Ok(JobChannel::Sms),
            _ => Err(ApiError::InvalidBody),
        },
        Some(_) => Err(ApiError::InvalidBody),
    }
}

/// Whether a code may go to `phone` by SMS here.
fn sms_allowed(state: &AppState, phone: &PhoneNumber) -> bool {
    state
        .sms
        .as_ref()
        .is_some_and(|sms| sms.settings.allows(phone))
}

fn required_code(value: Option<Value>) -> Result<String, ApiError> {
    match value {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => Err(ApiError::CodeRequired),
    }
}

/// "5 minutes", "1 minute", "4 minutes 47 seconds", "30 seconds".
pub fn describe_duration(total_seconds: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let (minutes, seconds) = (total_seconds / 60, total_seconds % 60);
    match (minutes, seconds) {
        (0, s) => plural(s, "second"),
        (m, 0) => plural(m, "minute"),
        (m, s) => format!("{} {}", plural(m, "minute"), plural(s, "second")),
    }
}

pub async fn send_otp(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<SendOtpBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let result = accept_send(&state, body, client).await;
    let outcome = match &result {
        // A review phone's send is no delivery to wait for (nor to page about).
        Ok((_, Channel::Test, _)) => "review",
        Ok((SendKind::New, _, _)) => "accepted",
        Ok((SendKind::Resend, _, _)) => "resent",
        Err(e) => e.label(),
    };
    metrics::counter!(otp_shared::metrics::SEND_REQUESTS, "outcome" => outcome).increment(1);
    result.map(|(_, _, body)| (StatusCode::ACCEPTED, Json(body)))
}

/// Whether the request passed a human check: its `captchaToken` redeemed with the
/// provider. Without the check on, a token is ignored; a token the provider refuses is
/// an error, even where no check was needed (it was asked for once, or forged).
async fn human_checked(
    state: &AppState,
    token: Option<Value>,
    client: Option<std::net::IpAddr>,
) -> Result<bool, ApiError> {
    let token = match token {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::String(token)) => token,
        Some(_) => return Err(ApiError::InvalidBody),
    };
    let Some(check) = &state.human_check else {
        return Ok(false);
    };
    match check.verify(&token, client).await {
        Ok(Verdict::Passed) => Ok(true),
        Ok(Verdict::Failed) => Err(ApiError::HumanCheckFailed),
        Err(e) => Err(ApiError::from_dependency(e, ApiError::SendUnavailable)),
    }
}

async fn accept_send(
    state: &AppState,
    body: SendOtpBody,
    client: Option<std::net::IpAddr>,
) -> Result<(SendKind, Channel, Value), ApiError> {
    let number = described_phone(body.phone)?;
    let phone = number.phone;
    let locale = optional_locale(body.locale)?;
    let requested = requested_channel(body.channel)?;
    // Premium, toll-free and satellite numbers are where pumping pays: none by default.
    if !state.settings.allowed_countries.allow(&phone)
        || !state.settings.allowed_number_types.allow(number.kind)
    {
        return Err(ApiError::PhoneNotAllowed);
    }
    let sms_available = sms_allowed(state, &phone);
    if requested == JobChannel::Sms && !sms_available {
        return Err(ApiError::ChannelNotAllowed);
    }
    let checked = human_checked(state, body.captcha_token, client).await?;
    let Accepted { send, channel } = crate::send::accept(
        state,
        SendRequest {
            phone: phone.clone(),
            calling_code: number.calling_code,
            locale,
            channel: requested,
            checked,
        },
    )
    .await?;
    tracing::info!(request_id = %send.request_id, kind = ?send.kind, channel = channel.as_str(), "send accepted");
    let expires_in = send.expires_in.as_secs_f64().round() as u64;
    Ok((
        send.kind,
        channel,
        json!({
            "status": "success",
            "requestId": send.request_id,
            "phone": phone.as_str(),
            "expiresIn": describe_duration(expires_in),
            "expiresInSeconds": expires_in,
            "channel": channel.as_str(),
            // Whether the app may offer "send by SMS instead" for this phone.
            "smsAvailable": sms_available,
            // When a client may ask again (the cooldown this send set), for its
            // countdown.
            "resendAfterSeconds": send.cooldown.as_millis().div_ceil(1000) as u64,
        }),
    ))
}

pub async fn verify_otp(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<VerifyOtpBody>,
) -> Result<Json<Value>, ApiError> {
    let result = check_code(&state, body, client).await;
    // A login counts under the channel that carried its code: conversion per channel.
    let (outcome, channel) = match &result {
        Ok((channel, _)) => ("verified", channel.as_str()),
        Err(e) => (e.label(), "none"),
    };
    metrics::counter!(otp_shared::metrics::VERIFY_REQUESTS, "outcome" => outcome, "channel" => channel)
        .increment(1);
    result.map(|(_, body)| Json(body))
}

async fn check_code(
    state: &AppState,
    body: VerifyOtpBody,
    client: Option<std::net::IpAddr>,
) -> Result<(Channel, Value), ApiError> {
    let phone = required_phone(body.phone)?;
    let code = required_code(body.code)?;
    let bound_to = bound_send(body.request_id)?;
    let SignedIn {
        user,
        is_new,
        token,
        refresh_token,
        channel,
        ..
    } = crate::login::log_in(state, &phone, &code, bound_to, client).await?;
    Ok((
        channel,
        json!({
            "status": "success",
            "verified": true,
            "token": token,
            "refreshToken": refresh_token,
            "isNewUser": is_new,
            "user": { "id": user.id, "phone": user.phone, "createdAt": user.created_at },
        }),
    ))
}

pub async fn otp_status(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let request_id = Uuid::parse_str(&request_id).map_err(|_| ApiError::StatusNotFound)?;
    let record = state
        .statuses
        .get(request_id)
        .await?
        .ok_or(ApiError::StatusNotFound)?;
    // The top level speaks of the newest delivery; `deliveries` of each one tried.
    let latest = record.latest();
    let mut body = json!({
        "requestId": request_id,
        "status": latest.state,
        "attempts": latest.attempts,
        "updatedAt": rfc3339(latest.updated_at_ms),
        "channel": latest.channel.as_str(),
    });
    if let Some(reason) = &latest.reason {
        body["reason"] = json!(reason);
    }
    if let Some(info) = &latest.info {
        body["info"] = json!(info);
    }
    for (field, at) in [
        ("deliveredAt", latest.delivered_at_ms),
        ("readAt", latest.read_at_ms),
    ] {
        if let Some(at) = at {
            body[field] = json!(rfc3339(at));
        }
    }
    if let Some(code) = latest.failed_code.as_ref().filter(|c| !c.is_empty()) {
        body["failedCode"] = json!(code);
    }
    let deliveries: Vec<Value> = std::iter::once(&record.first)
        .chain(record.fallback.as_ref())
        .map(|delivery| {
            let mut entry = json!({
                "channel": delivery.channel.as_str(),
                "status": delivery.state,
                "at": rfc3339(delivery.updated_at_ms),
            });
            if let Some(code) = delivery.failed_code.as_ref().filter(|c| !c.is_empty()) {
                entry["failedCode"] = json!(code);
            }
            entry
        })
        .collect();
    body["deliveries"] = json!(deliveries);
    Ok(Json(body))
}

/// Unix ms as an RFC 3339 time; `None` if out of range.
fn rfc3339(unix_ms: u64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
}

#[cfg(test)]
mod tests {
    use super::describe_duration;

    #[test]
    fn lifetimes_read_as_words() {
        assert_eq!(describe_duration(300), "5 minutes");
        assert_eq!(describe_duration(60), "1 minute");
        assert_eq!(describe_duration(287), "4 minutes 47 seconds");
        assert_eq!(describe_duration(1), "1 second");
        assert_eq!(describe_duration(45), "45 seconds");
    }
}
