//! `POST …/api/ext/v3/messageTemplates/send`: a batch of recipients a call. Each
//! recipient pops its own scripted reply; together they decide the call's answer.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::receipt::{self, ReceiptPlan};
use crate::record::{Sent, Ticket};
use crate::send::{wati_answer, with_retry_after};
use crate::{AnswerShape, Sandbox, ScriptedReply};

/// WATI's cap on recipients in one call.
pub(crate) const MAX_RECIPIENTS: usize = 10_000;

#[derive(Deserialize)]
struct SendBody {
    template_name: Option<String>,
    broadcast_name: Option<String>,
    recipients: Option<Vec<RecipientBody>>,
}

#[derive(Deserialize)]
struct RecipientBody {
    phone_number: Option<String>,
    /// WATI's other name for `phone_number`.
    target: Option<String>,
    local_message_id: Option<String>,
    custom_params: Option<Vec<Param>>,
}

impl RecipientBody {
    fn phone(&self) -> Option<&str> {
        [&self.phone_number, &self.target]
            .into_iter()
            .filter_map(Option::as_deref)
            .find(|p| !p.is_empty())
    }
}

#[derive(Deserialize)]
struct Param {
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: Value,
}

/// A recipient that passed the body checks.
struct Recipient {
    phone: String,
    code: String,
    local_message_id: Option<String>,
}

pub(crate) async fn send(sandbox: &Sandbox, ticket: Ticket, body: &[u8]) -> Response {
    let parsed = serde_json::from_slice::<SendBody>(body);
    let broadcast_name = parsed
        .as_ref()
        .ok()
        .and_then(|b| b.broadcast_name.clone())
        .unwrap_or_default();
    let recipients = match &parsed {
        Ok(body) => check(body, &sandbox.config.template_name),
        Err(e) => Err((StatusCode::BAD_REQUEST, format!("Invalid JSON body: {e}"))),
    };
    let recipients = match recipients {
        Ok(recipients) => recipients,
        Err((status, info)) => {
            // Log what could be read of a refused body, so a test can see what was tried.
            let phones = parsed
                .iter()
                .flat_map(|b| b.recipients.iter().flatten())
                .filter_map(|r| r.phone().map(str::to_owned))
                .collect();
            sandbox
                .recorded()
                .log_call(ticket, status.as_u16(), broadcast_name, phones);
            return wati_answer(status, false, &info);
        }
    };

    let scripts: Vec<Option<ScriptedReply>> = {
        let mut recorded = sandbox.recorded();
        recipients
            .iter()
            .map(|r| recorded.pop_script(&r.phone))
            .collect()
    };
    let resolution = resolve(&scripts, sandbox.config.latency);
    if !resolution.delay.is_zero() {
        tokio::time::sleep(resolution.delay).await;
    }

    let (status, answer, accepted): (StatusCode, Value, Vec<bool>) = match resolution.answer {
        Answer::Failed { status, info } => (
            status,
            json!({"result": false, "info": info}),
            vec![false; recipients.len()],
        ),
        Answer::Refused { info } => (
            StatusCode::OK,
            json!({"result": false, "error": info, "info": info}),
            vec![false; recipients.len()],
        ),
        Answer::Success => (
            StatusCode::OK,
            json!({"success": true, "error": null}),
            vec![true; recipients.len()],
        ),
        Answer::Receivers(outcomes) => {
            let receivers: Vec<Value> = recipients
                .iter()
                .zip(&outcomes)
                .filter_map(|(r, outcome)| {
                    outcome.as_ref().map(|o| {
                        json!({
                            "localMessageId": r.local_message_id,
                            "waId": r.phone,
                            "isValidWhatsAppNumber": o.valid,
                            "errors": o.errors,
                        })
                    })
                })
                .collect();
            let accepted = outcomes
                .iter()
                .map(|o| o.as_ref().is_some_and(Receiver::sent))
                .collect();
            (
                StatusCode::OK,
                json!({
                    "result": true,
                    "error": null,
                    "templateName": sandbox.config.template_name,
                    "receivers": receivers,
                    "parameters": [],
                }),
                accepted,
            )
        }
    };
    let sent = recipients
        .into_iter()
        .zip(accepted)
        .zip(&scripts)
        .map(|((r, accepted), script)| Sent {
            phone: r.phone,
            code: r.code,
            local_message_id: r.local_message_id,
            accepted,
            receipts: ReceiptPlan::from_script(script.as_ref()),
        })
        .collect();
    let accepted = sandbox
        .recorded()
        .record(ticket, status.as_u16(), broadcast_name, sent);
    receipt::schedule(sandbox, accepted);
    with_retry_after(
        (status, Json(answer)).into_response(),
        resolution.retry_after,
    )
}

/// Checks the body like WATI: any fault refuses the whole call.
fn check(body: &SendBody, template_name: &str) -> Result<Vec<Recipient>, (StatusCode, String)> {
    let bad = |info: String| Err((StatusCode::BAD_REQUEST, info));
    if body.template_name.as_deref() != Some(template_name) {
        return Err((StatusCode::NOT_FOUND, "Template not found".to_owned()));
    }
    let Some(recipients) = &body.recipients else {
        return bad("recipients is required".to_owned());
    };
    if recipients.is_empty() {
        return bad("recipients is empty".to_owned());
    }
    if recipients.len() > MAX_RECIPIENTS {
        return bad(format!(
            "at most {MAX_RECIPIENTS} recipients a call, got {}",
            recipients.len()
        ));
    }
    let mut checked = Vec::with_capacity(recipients.len());
    for (i, r) in recipients.iter().enumerate() {
        let Some(phone) = r.phone() else {
            return bad(format!("recipients[{i}]: phone_number is required"));
        };
        // Digits only, as v1 asks: a `+` or spaces would file the message under a
        // number a test does not look up.
        if !phone.bytes().all(|b| b.is_ascii_digit()) {
            return bad(format!("recipients[{i}]: phone_number must be digits only"));
        }
        let code = r
            .custom_params
            .iter()
            .flatten()
            .find(|p| p.name == "otp")
            .and_then(|p| p.value.as_str());
        let Some(code) = code else {
            return bad(format!("recipients[{i}]: parameter otp is required"));
        };
        checked.push(Recipient {
            phone: phone.to_owned(),
            code: code.to_owned(),
            local_message_id: r.local_message_id.clone(),
        });
    }
    Ok(checked)
}

/// How a call is answered, decided from the scripts its recipients popped.
#[derive(Debug, PartialEq)]
struct Resolution {
    delay: Duration,
    answer: Answer,
    retry_after: Option<u64>,
}

#[derive(Debug, PartialEq)]
enum Answer {
    /// A non-2xx status: the whole call failed.
    Failed { status: StatusCode, info: String },
    /// 200 with `result: false`: WATI refused the whole call.
    Refused { info: String },
    /// 200 `{"success":true}`: every recipient sent, none listed.
    Success,
    /// 200 with `receivers`: per recipient, in order; `None` is left out of the list.
    Receivers(Vec<Option<Receiver>>),
}

#[derive(Debug, PartialEq)]
struct Receiver {
    valid: bool,
    errors: Vec<String>,
}

impl Receiver {
    fn sent(&self) -> bool {
        self.valid && self.errors.is_empty()
    }
}

/// Combines the popped scripts (one per recipient, `None` = unscripted), in this order:
/// the longest scripted delay (else `latency`); the first non-2xx status fails the call;
/// else a `result: false` refuses it; else a `success` shape answers without receivers;
/// else each recipient's script shapes its receiver.
fn resolve(scripts: &[Option<ScriptedReply>], latency: Duration) -> Resolution {
    let popped = || scripts.iter().flatten();
    let delay = popped()
        .filter_map(|s| s.delay_ms)
        .max()
        .map_or(latency, Duration::from_millis);
    let first_retry_after = popped().find_map(|s| s.retry_after);
    let failed = popped().find_map(|s| {
        s.status
            .and_then(|code| StatusCode::from_u16(code).ok())
            .filter(|status| !status.is_success())
            .map(|status| (status, s))
    });
    if let Some((status, s)) = failed {
        return Resolution {
            delay,
            answer: Answer::Failed {
                status,
                info: s
                    .info
                    .clone()
                    .unwrap_or_else(|| "Request failed".to_owned()),
            },
            retry_after: s.retry_after,
        };
    }
    if let Some(s) = popped().find(|s| s.result == Some(false)) {
        return Resolution {
            delay,
            answer: Answer::Refused {
                info: s
                    .info
                    .clone()
                    .unwrap_or_else(|| "Message not sent".to_owned()),
            },
            retry_after: s.retry_after.or(first_retry_after),
        };
    }
    let answer = if popped().any(|s| s.shape == Some(AnswerShape::Success)) {
        Answer::Success
    } else {
        Answer::Receivers(
            scripts
                .iter()
                .map(|s| match s {
                    Some(s) if s.omit == Some(true) => None,
                    Some(s) => Some(Receiver {
                        valid: s.valid_whatsapp_number.unwrap_or(true),
                        errors: s.errors.clone().unwrap_or_default(),
                    }),
                    None => Some(Receiver {
                        valid: true,
                        errors: Vec::new(),
                    }),
                })
                .collect(),
        )
    };
    Resolution {
        delay,
        answer,
        retry_after: first_retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(f: impl FnOnce(&mut ScriptedReply)) -> Option<ScriptedReply> {
        let mut s = ScriptedReply::default();
        f(&mut s);
        Some(s)
    }

    const LATENCY: Duration = Duration::from_millis(7);

    #[test]
    fn unscripted_recipients_are_all_valid_receivers_after_the_configured_latency() {
        let r = resolve(&[None, None], LATENCY);
        let ok = || {
            Some(Receiver {
                valid: true,
                errors: vec![],
            })
        };
        assert_eq!(
            r,
            Resolution {
                delay: LATENCY,
                answer: Answer::Receivers(vec![ok(), ok()]),
                retry_after: None,
            }
        );
    }

    #[test]
    fn the_longest_scripted_delay_wins_and_scripts_without_one_keep_the_latency() {
        let r = resolve(
            &[
                script(|s| s.delay_ms = Some(5)),
                None,
                script(|s| s.delay_ms = Some(50)),
            ],
            LATENCY,
        );
        assert_eq!(r.delay, Duration::from_millis(50));
        let r = resolve(&[script(|s| s.errors = Some(vec!["x".into()]))], LATENCY);
        assert_eq!(r.delay, LATENCY);
    }

    #[test]
    fn the_first_failing_status_in_recipient_order_decides_the_call() {
        let r = resolve(
            &[
                script(|s| s.result = Some(false)),
                script(|s| {
                    s.status = Some(503);
                    s.retry_after = Some(4);
                }),
                script(|s| s.status = Some(500)),
            ],
            LATENCY,
        );
        assert_eq!(
            r.answer,
            Answer::Failed {
                status: StatusCode::SERVICE_UNAVAILABLE,
                info: "Request failed".into()
            }
        );
        assert_eq!(r.retry_after, Some(4));
    }

    #[test]
    fn a_false_result_refuses_the_call_before_the_success_shape_is_considered() {
        let r = resolve(
            &[
                script(|s| s.shape = Some(AnswerShape::Success)),
                script(|s| {
                    s.result = Some(false);
                    s.info = Some("Insufficient credit".into());
                }),
            ],
            LATENCY,
        );
        assert_eq!(
            r.answer,
            Answer::Refused {
                info: "Insufficient credit".into()
            }
        );
    }

    #[test]
    fn the_success_shape_ignores_per_recipient_faults() {
        let r = resolve(
            &[
                script(|s| s.valid_whatsapp_number = Some(false)),
                script(|s| s.shape = Some(AnswerShape::Success)),
            ],
            LATENCY,
        );
        assert_eq!(r.answer, Answer::Success);
    }

    #[test]
    fn per_recipient_scripts_shape_only_their_own_receiver() {
        let r = resolve(
            &[
                script(|s| s.valid_whatsapp_number = Some(false)),
                script(|s| s.omit = Some(true)),
                script(|s| s.errors = Some(vec!["Blocked".into()])),
                None,
            ],
            LATENCY,
        );
        let Answer::Receivers(receivers) = r.answer else {
            panic!("expected receivers, got {:?}", r.answer);
        };
        let sent: Vec<Option<bool>> = receivers
            .iter()
            .map(|r| r.as_ref().map(Receiver::sent))
            .collect();
        assert_eq!(sent, [Some(false), None, Some(false), Some(true)]);
    }
}
