//! Sending a code, verifying it, and reading a send's delivery status.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use otp_shared::job::SendJob;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::ApiJson;
use crate::error::ApiError;
use crate::phone::{self, PhoneNumber};
use crate::state::AppState;
use crate::store::{AcceptedSend, SendDecision, SendKind, VerifyOutcome};
use otp_shared::redis::admission::Reservation;
use otp_shared::redis::send_budget::Counted;

/// Fields are loose JSON so that a missing, empty or mistyped value each gets its own
/// spec error rather than a generic "invalid body".
#[derive(Deserialize)]
pub struct SendOtpBody {
    phone: Option<Value>,
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
    match value {
        None | Some(Value::Null) => Err(ApiError::PhoneRequired),
        Some(Value::String(s)) if s.trim().is_empty() => Err(ApiError::PhoneRequired),
        Some(Value::String(s)) => phone::parse(&s).map_err(|_| ApiError::PhoneInvalid),
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
    ApiJson(body): ApiJson<SendOtpBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let result = accept_send(&state, body).await;
    let outcome = match &result {
        Ok((SendKind::New, _)) => "accepted",
        Ok((SendKind::Resend, _)) => "resent",
        Err(e) => e.label(),
    };
    metrics::counter!(otp_shared::metrics::SEND_REQUESTS, "outcome" => outcome).increment(1);
    result.map(|(_, body)| (StatusCode::ACCEPTED, Json(body)))
}

async fn accept_send(state: &AppState, body: SendOtpBody) -> Result<(SendKind, Value), ApiError> {
    let phone = required_phone(body.phone)?;
    if !state.settings.allowed_countries.allow(&phone) {
        return Err(ApiError::PhoneNotAllowed);
    }
    let code = crate::code::generate(state.settings.otp_length)
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    // Its own task: if the client hangs up, hyper drops this handler, and a send cut
    // between storing the code and publishing its job would leave a code without a job.
    let send = tokio::spawn(store_and_queue(state.clone(), phone.clone(), code))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))??;
    tracing::info!(request_id = %send.request_id, kind = ?send.kind, "send accepted");
    let expires_in = send.expires_in.as_secs_f64().round() as u64;
    Ok((
        send.kind,
        json!({
            "status": "success",
            "requestId": send.request_id,
            "phone": phone.as_str(),
            "expiresIn": describe_duration(expires_in),
            "expiresInSeconds": expires_in,
            // When a client may ask again (the resend cooldown), for its countdown.
            "resendAfterSeconds": state.settings.resend_after_seconds,
        }),
    ))
}

/// What a send took that must be given back if it is not queued after all.
#[derive(Default)]
struct Taken {
    /// Counted against `SENDS_PER_MINUTE` in this minute.
    minute: Option<u64>,
    /// Holds room with WATI's budgets.
    admitted: bool,
}

/// Stores the code (or finds the pending one), counts the send against the budget of
/// sends per minute, reserves room with WATI for what is left of the code's life, and
/// publishes its job. Whatever fails takes back what was done before it, so no code is
/// left without a job and nothing is counted or held for a send that was not queued.
async fn store_and_queue(
    state: AppState,
    phone: PhoneNumber,
    code: String,
) -> Result<AcceptedSend, ApiError> {
    let request_id = Uuid::new_v4();
    let begin = |code: String| {
        let (store, phone) = (&state.store, &phone);
        async move {
            store
                .begin_send(phone, &code, request_id)
                .await
                .map_err(|e| ApiError::from_store(e, ApiError::SendUnavailable))
        }
    };
    let mut decision = begin(code).await?;
    if let SendDecision::NeedsLongerCode = decision {
        let code = crate::code::generate(crate::store::LONG_CODE_DIGITS)
            .map_err(|e| ApiError::Internal(Box::new(e)))?;
        decision = begin(code).await?;
    }
    let send = match decision {
        SendDecision::Limited { retry_after } => {
            metrics::counter!(otp_shared::metrics::RATE_LIMIT_REJECTIONS, "scope" => "phone")
                .increment(1);
            return Err(ApiError::RateLimited { retry_after });
        }
        SendDecision::Accepted(send) => send,
        SendDecision::NeedsLongerCode => {
            return Err(ApiError::Internal(
                "send.lua asked for a longer code than the longest".into(),
            ));
        }
    };
    let mut taken = Taken::default();
    let queued = queue(&state, &phone, &send, &mut taken).await;
    if queued.is_err() {
        give_back(&state, &phone, &send, taken).await;
    }
    queued.map(|()| send)
}

/// The steps after the code is stored; what each took is noted in `taken`.
async fn queue(
    state: &AppState,
    phone: &PhoneNumber,
    send: &AcceptedSend,
    taken: &mut Taken,
) -> Result<(), ApiError> {
    let outage = |e: redis::RedisError| {
        ApiError::from_store(
            crate::store::StoreError::Redis(e),
            ApiError::SendUnavailable,
        )
    };
    match state.send_budget.count(send.kind).await.map_err(outage)? {
        Counted::In { minute } => taken.minute = Some(minute),
        Counted::Unlimited => {}
        Counted::Over { retry_after } => {
            metrics::counter!(otp_shared::metrics::RATE_LIMIT_REJECTIONS, "scope" => "global")
                .increment(1);
            return Err(ApiError::RateLimited { retry_after });
        }
    }
    match state
        .admission
        .reserve(send.request_id, send.expires_in, send.kind)
        .await
        .map_err(outage)?
    {
        Reservation::Admitted => taken.admitted = true,
        Reservation::Unlimited => {}
        Reservation::Full { retry_after } => return Err(ApiError::OverCapacity { retry_after }),
    }
    let job = SendJob::new(
        send.request_id,
        send.code_id,
        phone.clone(),
        otp_shared::now_ms(),
    );
    state
        .publisher
        .publish(&job)
        .await
        .map_err(|e| ApiError::SendUnavailable(Box::new(e)))
}

/// Takes back a send that was not queued: its code (unless a re-send uses it), its
/// count and its room.
async fn give_back(state: &AppState, phone: &PhoneNumber, send: &AcceptedSend, taken: Taken) {
    let request_id = send.request_id;
    if let Err(undo_error) = state.store.undo_send(phone, send).await {
        tracing::error!(%request_id, %undo_error, "could not undo a send that was not queued");
    }
    if let Some(minute) = taken.minute
        && let Err(e) = state.send_budget.give_back(minute).await
    {
        tracing::warn!(%request_id, error = %e, "could not give back the count of a send that was not queued");
    }
    if taken.admitted
        && let Err(e) = state.admission.release(request_id).await
    {
        tracing::warn!(%request_id, error = %e, "could not give back the room of a send that was not queued");
    }
}

pub async fn verify_otp(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<VerifyOtpBody>,
) -> Result<Json<Value>, ApiError> {
    let result = check_code(&state, body).await;
    let outcome = match &result {
        Ok(_) => "verified",
        Err(e) => e.label(),
    };
    metrics::counter!(otp_shared::metrics::VERIFY_REQUESTS, "outcome" => outcome).increment(1);
    result.map(Json)
}

async fn check_code(state: &AppState, body: VerifyOtpBody) -> Result<Value, ApiError> {
    let phone = required_phone(body.phone)?;
    let code = required_code(body.code)?;
    let bound_to = bound_send(body.request_id)?;
    let claim = Uuid::new_v4();
    match state.store.verify(&phone, &code, bound_to, claim).await? {
        VerifyOutcome::Verified => {}
        // Another request is logging in with this very code: it verifies only once.
        VerifyOutcome::NotFound | VerifyOutcome::Claimed => return Err(ApiError::OtpNotFound),
        VerifyOutcome::Expired => return Err(ApiError::OtpExpired),
        VerifyOutcome::Locked => return Err(ApiError::TooManyAttempts),
        VerifyOutcome::Wrong { remaining } => return Err(ApiError::OtpInvalid { remaining }),
    }
    // The code is spent only once the login is written and its access token recorded:
    // if PostgreSQL or Redis cannot take them, the code goes back, and the same code
    // works on the next try.
    let login = match sign_in(state, &phone).await {
        Ok(login) => login,
        Err(e) => {
            if let Err(release_error) = state.store.release(&phone, claim).await {
                tracing::warn!(error = %release_error, "could not give back a claimed code; it frees itself in seconds");
            }
            return Err(e);
        }
    };
    if !state.store.spend(&phone, claim).await? {
        // The claim lapsed and another request logged in with the code meanwhile.
        state.users.end_session(login.session_id).await?;
        return Err(ApiError::OtpNotFound);
    }
    let SignedIn {
        user,
        is_new,
        token,
        refresh_token,
        ..
    } = login;
    tracing::info!(user_id = %user.id, is_new, "code verified");
    Ok(json!({
        "status": "success",
        "verified": true,
        "token": token,
        "refreshToken": refresh_token,
        "isNewUser": is_new,
        "user": { "id": user.id, "phone": user.phone, "createdAt": user.created_at },
    }))
}

/// A login that holds: the user and a refresh session in PostgreSQL, and an access
/// token recorded in Redis.
struct SignedIn {
    user: crate::users::User,
    is_new: bool,
    session_id: Uuid,
    token: String,
    refresh_token: String,
}

async fn sign_in(state: &AppState, phone: &PhoneNumber) -> Result<SignedIn, ApiError> {
    let login = state.users.login(phone).await?;
    let recorded = async {
        let (token, claims) = state
            .tokens
            .issue(login.user.id, &login.user.phone, login.session_id)
            .map_err(|e| ApiError::Internal(Box::new(e)))?;
        state
            .users
            .open_access(claims.sid, claims.jti, login.user.id)
            .await?;
        Ok::<_, ApiError>(token)
    }
    .await;
    match recorded {
        Ok(token) => Ok(SignedIn {
            user: login.user,
            is_new: login.is_new,
            session_id: login.session_id,
            token,
            refresh_token: login.refresh_token,
        }),
        Err(e) => {
            // The session was written for nothing: end it (it would expire anyway).
            if let Err(end_error) = state.users.end_session(login.session_id).await {
                tracing::warn!(error = %end_error, "could not end a session whose login failed");
            }
            Err(e)
        }
    }
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
    let updated_at = rfc3339(record.updated_at_ms);
    let mut body = json!({
        "requestId": request_id,
        "status": record.state,
        "attempts": record.attempts,
        "updatedAt": updated_at,
    });
    if let Some(reason) = record.reason {
        body["reason"] = json!(reason);
    }
    if let Some(info) = record.info {
        body["info"] = json!(info);
    }
    for (field, at) in [
        ("deliveredAt", record.delivered_at_ms),
        ("readAt", record.read_at_ms),
    ] {
        if let Some(at) = at {
            body[field] = json!(rfc3339(at));
        }
    }
    if let Some(code) = record.failed_code.filter(|c| !c.is_empty()) {
        body["failedCode"] = json!(code);
    }
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
