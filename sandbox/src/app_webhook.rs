//! `POST /sandbox/app-webhook`: a stand-in for the app that receives the product's
//! "events to the app", so an api or worker can point `APP_WEBHOOK_URL` at the sandbox.
//! Each delivery is checked as a Standard Webhooks receiver checks it
//! (`standard_webhooks.rs`, which cites the spec) under the sandbox's secrets
//! (`SANDBOX_APP_WEBHOOK_SECRET`), recorded whatever it is answered, and answered:
//!
//! - 401 `{"error":"<reason>"}` when it does not verify (no valid signature, a timestamp
//!   more than 5 minutes off, bad headers) or is not an event (`{"type","timestamp",
//!   "data"}`, the payload structure the spec recommends); such a delivery pops no
//!   script.
//! - Otherwise the next scripted answer (`ScriptedAppAnswer`: a status, `Retry-After`,
//!   a hang), else 204 without a body. The spec counts any 2xx as delivered and
//!   anything else, a timeout included, as failed; it gives 410 the meaning "disable
//!   this endpoint" and asks senders to honour `Retry-After`, which is what the scripts
//!   let a test check the sender for.
//!
//! What the sandbox assumes (the spec leaves it open): 401 for every refusal, a JSON
//! body's shape included; no deduplication by `webhook-id` (each attempt is recorded
//! and counted, so a test can see retries and duplicates); the body's `timestamp` may be
//! any JSON value (the spec's examples use RFC 3339 strings).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Sandbox;
use crate::app_record::{AppEventRecord, ScriptedAppAnswer};
use crate::send::{now_ms, with_retry_after};
use crate::standard_webhooks::{self, AppWebhookRejection, Headers};

/// The secret the sandbox verifies with unless told otherwise: `whsec_` and the Base64
/// of the 32 bytes `wati-sandbox-app-webhook-dev-key`. For local runs only: anyone can
/// read it here.
pub const DEFAULT_APP_WEBHOOK_SECRET: &str = "whsec_d2F0aS1zYW5kYm94LWFwcC13ZWJob29rLWRldi1rZXk=";

/// How much of a body that is not JSON is kept, to show what came.
const UNPARSED_BODY_BYTES: usize = 1_024;

/// Reads `SANDBOX_APP_WEBHOOK_SECRET`: comma-separated `whsec_…` secrets, at least one.
pub(crate) fn parse_secrets(list: &str) -> Result<Vec<String>, String> {
    let secrets: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if secrets.is_empty() {
        return Err("SANDBOX_APP_WEBHOOK_SECRET names no secret".into());
    }
    for (i, secret) in secrets.iter().enumerate() {
        standard_webhooks::key_of(secret)
            .map_err(|error| format!("SANDBOX_APP_WEBHOOK_SECRET, secret {}: {error}", i + 1))?;
    }
    Ok(secrets)
}

/// What the body says, read whether or not it verified (so an unverified attempt still
/// shows what it claimed to be).
struct Body {
    event_type: Option<String>,
    timestamp: Option<Value>,
    data: Option<Value>,
    unparsed: Option<String>,
    /// JSON at all, and then an event.
    json: bool,
    event: bool,
}

impl Body {
    fn read(bytes: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(value) => {
                let event_type = value.get("type").and_then(Value::as_str).map(str::to_owned);
                let timestamp = value.get("timestamp").cloned();
                let data = value.get("data").cloned();
                let event = event_type.as_deref().is_some_and(|t| !t.is_empty())
                    && timestamp.as_ref().is_some_and(|t| !t.is_null())
                    && data.as_ref().is_some_and(Value::is_object);
                Self {
                    event_type,
                    timestamp,
                    data,
                    unparsed: None,
                    json: true,
                    event,
                }
            }
            Err(_) => Self {
                event_type: None,
                timestamp: None,
                data: None,
                unparsed: Some(
                    String::from_utf8_lossy(&bytes[..bytes.len().min(UNPARSED_BODY_BYTES)])
                        .into_owned(),
                ),
                json: false,
                event: false,
            },
        }
    }
}

/// The status a script's answer goes out with.
fn status_of(answer: &ScriptedAppAnswer) -> StatusCode {
    match answer.status {
        None => StatusCode::NO_CONTENT,
        Some(status) => StatusCode::from_u16(status)
            .ok()
            .filter(|s| (200..600).contains(&s.as_u16()))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// An attempt being answered: if the handler is dropped first (the sender hung up during
/// a hang), the record says the caller left.
struct Pending {
    sandbox: Sandbox,
    generation: u64,
    seq: u64,
    answered: bool,
}

impl Pending {
    fn answer(mut self) {
        self.answered = true;
        self.sandbox
            .recorded()
            .app_answered(self.generation, self.seq, Some(now_ms()));
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.answered {
            self.sandbox
                .recorded()
                .app_answered(self.generation, self.seq, None);
        }
    }
}

pub(crate) async fn receive(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received_at_ms = now_ms();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let given = Headers {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
    };
    let signed =
        standard_webhooks::verify(sandbox.app_keys(), given, &body, received_at_ms / 1_000);
    let read = Body::read(&body);
    let matched = signed.clone().unwrap_or_default();
    // The body counts only once the signature does: a forgery is one, whatever it holds.
    let shape = match (read.json, read.event) {
        (false, _) => Err(AppWebhookRejection::NotJson),
        (true, false) => Err(AppWebhookRejection::NotAnEvent),
        (true, true) => Ok(()),
    };
    let verdict = signed.and(shape);
    let mut record = AppEventRecord {
        seq: 0,
        webhook_id: given.id.map(str::to_owned),
        webhook_timestamp: given.timestamp.map(str::to_owned),
        webhook_signature: given.signature.map(str::to_owned),
        event_type: read.event_type,
        timestamp: read.timestamp,
        data: read.data,
        unparsed_body: read.unparsed,
        verified: verdict.is_ok(),
        reason: verdict.err(),
        matched,
        received_at_ms,
        status: StatusCode::UNAUTHORIZED.as_u16(),
        retry_after: None,
        hang_ms: None,
        answered_at_ms: None,
        caller_left: false,
        attempt: 0,
    };
    // The script is popped and the attempt numbered under one lock, so that concurrent
    // deliveries take the scripted answers in the order of their `seq`.
    let (pending, status, retry_after, hang_ms) = {
        let mut recorded = sandbox.recorded();
        let answer = verdict.is_ok().then(|| recorded.app.next_answer());
        let status = answer.as_ref().map_or(StatusCode::UNAUTHORIZED, status_of);
        let retry_after = answer.as_ref().and_then(|a| a.retry_after);
        let hang_ms = answer.as_ref().and_then(|a| a.hang_ms);
        record.status = status.as_u16();
        record.retry_after = retry_after;
        record.hang_ms = hang_ms;
        let pending = Pending {
            generation: recorded.generation(),
            seq: recorded.app.record(record),
            sandbox: sandbox.clone(),
            answered: false,
        };
        (pending, status, retry_after, hang_ms)
    };
    if let Some(hang_ms) = hang_ms {
        tokio::time::sleep(Duration::from_millis(hang_ms)).await;
    }
    pending.answer();
    let response = match verdict {
        Ok(()) => status.into_response(),
        Err(reason) => (status, Json(json!({ "error": reason.as_str() }))).into_response(),
    };
    with_retry_after(response, retry_after)
}

/// Queues answers for the next verified deliveries; refuses a status that is not one.
pub(crate) async fn add_script(
    State(sandbox): State<Sandbox>,
    Json(body): Json<crate::control::AnswersBody<ScriptedAppAnswer>>,
) -> Response {
    if let Some(refusal) = crate::control::refuse_odd_status(body.answers.iter().map(|a| a.status))
    {
        return refusal;
    }
    sandbox.script_app_webhook(body.answers);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    /// Only the last this many attempts (the inbox page's poll).
    latest: Option<usize>,
}

/// `{"events":[…],"total":n}`: every attempt in arrival order, or the latest.
pub(crate) async fn events(
    State(sandbox): State<Sandbox>,
    Query(q): Query<EventsQuery>,
) -> Response {
    let recorded = sandbox.recorded();
    let events = match q.latest {
        Some(n) => recorded.app.latest(n),
        None => recorded.app.events(),
    };
    let total = recorded.app.received();
    drop(recorded);
    // Polled by the inbox page: a cached answer would show an event late.
    (
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(json!({ "events": events, "total": total })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    #[test]
    fn the_default_secret_is_the_documented_dev_key() {
        let encoded = DEFAULT_APP_WEBHOOK_SECRET
            .strip_prefix("whsec_")
            .expect("whsec_");
        assert_eq!(
            STANDARD.decode(encoded).ok().as_deref(),
            Some(&b"wati-sandbox-app-webhook-dev-key"[..])
        );
        assert_eq!(
            parse_secrets(DEFAULT_APP_WEBHOOK_SECRET),
            Ok(vec![DEFAULT_APP_WEBHOOK_SECRET.to_owned()])
        );
    }

    #[test]
    fn secrets_are_a_comma_separated_list_of_good_ones() {
        let two = format!(" {DEFAULT_APP_WEBHOOK_SECRET} ,whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,");
        assert_eq!(parse_secrets(&two).map(|s| s.len()), Ok(2));
        assert!(parse_secrets("").is_err());
        assert!(parse_secrets(" , ").is_err());
        let error = parse_secrets(&format!("{DEFAULT_APP_WEBHOOK_SECRET},whsec_c2hvcnQ="))
            .expect_err("a short key");
        assert!(error.contains("secret 2"), "{error}");
        assert!(
            !error.contains("c2hvcnQ"),
            "the secret stays out of the error: {error}"
        );
    }

    #[test]
    fn a_body_is_an_event_with_a_type_a_timestamp_and_data() {
        let event = Body::read(br#"{"type":"a.b","timestamp":"2026-01-01T00:00:00Z","data":{}}"#);
        assert!(event.json && event.event);
        assert_eq!(event.event_type.as_deref(), Some("a.b"));
        for not_event in [
            &br#"{"type":"a.b","timestamp":"t"}"#[..],
            br#"{"type":"a.b","data":{}}"#,
            br#"{"type":"","timestamp":"t","data":{}}"#,
            br#"{"type":1,"timestamp":"t","data":{}}"#,
            br#"{"type":"a.b","timestamp":"t","data":[1]}"#,
            br#"[1,2]"#,
        ] {
            let read = Body::read(not_event);
            assert!(
                read.json && !read.event,
                "{}",
                String::from_utf8_lossy(not_event)
            );
        }
        let text = Body::read(b"type=a.b");
        assert!(!text.json);
        assert_eq!(text.unparsed.as_deref(), Some("type=a.b"));
        assert_eq!(
            Body::read(&[b'x'; 5_000]).unparsed.map(|s| s.len()),
            Some(UNPARSED_BODY_BYTES)
        );
    }

    #[test]
    fn scripted_statuses_outside_the_range_answer_500() {
        let answer = |status| ScriptedAppAnswer {
            status,
            ..ScriptedAppAnswer::default()
        };
        assert_eq!(status_of(&answer(None)), StatusCode::NO_CONTENT);
        assert_eq!(status_of(&answer(Some(410))), StatusCode::GONE);
        assert_eq!(status_of(&answer(Some(200))), StatusCode::OK);
        for odd in [0, 99, 101, 600, 1_000] {
            assert_eq!(
                status_of(&answer(Some(odd))),
                StatusCode::INTERNAL_SERVER_ERROR,
                "{odd}"
            );
        }
    }
}
