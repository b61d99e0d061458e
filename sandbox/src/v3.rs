//! `POST …/api/ext/v3/messageTemplates/send`: a batch of recipients a call, in one
//! template, each with its own parameters. The body is checked as WATI's reference
//! says (400 `{code, message, timestamp}` for a broken body, a recipient without a
//! number, or more than 10,000 recipients); the template and each recipient's
//! parameters against the tenant's registry (`templates`); then each recipient pops its
//! own scripted reply (or, without one, takes its fate in the population:
//! `population.rs`), and together they decide the call's answer, by default in the
//! shape docs.wati.io documents: `{success, broadcast_id, error, recipients}`.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::receipt::{self, ReceiptPlan};
use crate::record::{CallFacts, Sent, Ticket};
use crate::send::{v3_error, v3_error_body, with_retry_after};
use crate::templates::{self, ParamCheck, Template};
use crate::{AnswerShape, Sandbox, ScriptedReply, ids};

/// WATI's cap on recipients in one call.
pub(crate) const MAX_RECIPIENTS: usize = 10_000;
/// What a recipient scripted as no WhatsApp number is told in the documented shape.
const NOT_ON_WHATSAPP: &str = "Invalid WhatsApp number";

#[derive(Deserialize)]
struct SendBody {
    template_name: Option<String>,
    broadcast_name: Option<String>,
    /// The sending number; `null` for the default channel.
    channel_number: Option<String>,
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

/// A recipient that passed the body checks, with what its parameters came to.
struct Recipient {
    phone: String,
    local_message_id: Option<String>,
    params: Vec<(String, Option<String>)>,
    check: ParamCheck,
}

/// A 200 that refuses the whole request: "a 200 can report a failed request".
fn refused_body(error: &str) -> Value {
    json!({"success": false, "broadcast_id": null, "error": error, "recipients": []})
}

pub(crate) async fn send(sandbox: &Sandbox, ticket: Ticket, body: &[u8]) -> Response {
    let parsed = serde_json::from_slice::<SendBody>(body);
    let broadcast_name = parsed
        .as_ref()
        .ok()
        .and_then(|b| b.broadcast_name.clone())
        .unwrap_or_default();
    let template_name = parsed
        .as_ref()
        .ok()
        .and_then(|b| b.template_name.clone())
        .unwrap_or_default();
    let channel = parsed
        .as_ref()
        .ok()
        .and_then(|b| b.channel_number.clone())
        .filter(|c| !c.is_empty());
    let facts = |status: StatusCode| CallFacts {
        status: status.as_u16(),
        broadcast_name: broadcast_name.clone(),
        template_name: template_name.clone(),
        channel_number: channel.clone(),
    };
    let phones_named = || -> Vec<String> {
        parsed
            .iter()
            .flat_map(|b| b.recipients.iter().flatten())
            .filter_map(|r| r.phone().map(str::to_owned))
            .collect()
    };
    // What WATI checks before any recipient: the body, then the template.
    let checked = match &parsed {
        Ok(body) => check_body(body),
        Err(e) => Err(format!("Invalid JSON body: {e}")),
    };
    let recipients = match checked {
        Ok(recipients) => recipients,
        Err(message) => {
            // Log what could be read of a refused body, so a test can see what was tried.
            let facts = CallFacts {
                template_name: String::new(),
                ..facts(StatusCode::BAD_REQUEST)
            };
            sandbox.recorded().log_call(ticket, facts, phones_named());
            return v3_error(StatusCode::BAD_REQUEST, &message);
        }
    };
    let template = match sandbox.template_for_send(&template_name, channel.as_deref()) {
        Ok(template) => template,
        Err(error) => {
            sandbox
                .recorded()
                .log_call(ticket, facts(StatusCode::OK), phones_named());
            return (StatusCode::OK, Json(refused_body(&error))).into_response();
        }
    };
    let recipients: Vec<Recipient> = recipients
        .into_iter()
        .map(|mut r| {
            r.check = template.check_params(&r.params);
            r
        })
        .collect();

    // Each recipient's own script, else its fate in the population.
    let scripts: Vec<Option<ScriptedReply>> = {
        let population = sandbox.population();
        let mut recorded = sandbox.recorded();
        recipients
            .iter()
            .map(|r| {
                recorded
                    .pop_script(&r.phone)
                    .or_else(|| population.script_for(&r.phone))
            })
            .collect()
    };
    let resolution = resolve(&scripts, sandbox.config.latency);
    if !resolution.delay.is_zero() {
        tokio::time::sleep(resolution.delay).await;
    }

    let (status, answer, accepted): (StatusCode, Value, Vec<bool>) = match resolution.answer {
        Answer::Failed { status, info } => (
            status,
            v3_error_body(status, &info),
            vec![false; recipients.len()],
        ),
        Answer::Refused { info } => (
            StatusCode::OK,
            refused_body(&info),
            vec![false; recipients.len()],
        ),
        Answer::Success => (
            StatusCode::OK,
            json!({"success": true, "error": null}),
            recipients
                .iter()
                .map(|r| r.check != ParamCheck::Mismatched)
                .collect(),
        ),
        Answer::PerRecipient { shape, outcomes } => {
            // A parameter WATI cannot match refuses its recipient, whatever was scripted.
            let outcomes: Vec<Option<Receiver>> = outcomes
                .into_iter()
                .zip(&recipients)
                .map(|(outcome, r)| match (outcome, &r.check) {
                    (Some(_), ParamCheck::Mismatched) => Some(Receiver {
                        valid: true,
                        errors: vec![templates::CHECK_YOUR_TEMPLATE.to_owned()],
                    }),
                    (outcome, _) => outcome,
                })
                .collect();
            let accepted = outcomes
                .iter()
                .map(|o| o.as_ref().is_some_and(Receiver::sent))
                .collect();
            (
                StatusCode::OK,
                per_recipient(shape, &template, &recipients, &outcomes),
                accepted,
            )
        }
    };
    let sent = recipients
        .into_iter()
        .zip(accepted)
        .zip(&scripts)
        .map(|((r, accepted), script)| sent(&template, r, accepted, script.as_ref()))
        .collect();
    let facts = CallFacts {
        template_name: template.name.clone(),
        ..facts(status)
    };
    let accepted = sandbox.recorded().record(ticket, facts, sent);
    receipt::schedule(sandbox, accepted);
    with_retry_after(
        (status, Json(answer)).into_response(),
        resolution.retry_after,
    )
}

/// A recipient's outcome, to record: what its phone shows, and the receipts it gets. A
/// message without its parameters is taken, and Meta fails it (132000).
fn sent(template: &Template, r: Recipient, accepted: bool, script: Option<&ScriptedReply>) -> Sent {
    let (code, receipts, reaches_phone) = match &r.check {
        ParamCheck::Missing => (
            String::new(),
            ReceiptPlan::Failed {
                code: templates::PARAM_COUNT_MISMATCH_CODE.to_owned(),
                detail: templates::PARAM_COUNT_MISMATCH_DETAIL.to_owned(),
            },
            false,
        ),
        ParamCheck::Filled { code } => (code.clone(), ReceiptPlan::from_script(script), true),
        ParamCheck::Mismatched => (String::new(), ReceiptPlan::from_script(script), false),
    };
    Sent {
        phone: r.phone,
        code,
        rendered: template.render(|name| templates::value_of(&r.params, name)),
        local_message_id: r.local_message_id,
        accepted,
        reaches_phone,
        receipts,
    }
}

/// The 200 body that answers each recipient, in `shape`.
fn per_recipient(
    shape: AnswerShape,
    template: &Template,
    recipients: &[Recipient],
    outcomes: &[Option<Receiver>],
) -> Value {
    let listed = recipients
        .iter()
        .zip(outcomes)
        .filter_map(|(r, outcome)| outcome.as_ref().map(|o| (r, o)));
    match shape {
        AnswerShape::Receivers => json!({
            "result": true,
            "error": null,
            "templateName": template.name,
            "receivers": listed.map(|(r, o)| json!({
                "localMessageId": r.local_message_id,
                "waId": r.phone,
                "isValidWhatsAppNumber": o.valid,
                "errors": o.errors,
            })).collect::<Vec<_>>(),
            "parameters": [],
        }),
        AnswerShape::Recipients | AnswerShape::Success => json!({
            "success": true,
            "broadcast_id": ids::uuid(),
            "error": null,
            "recipients": listed.map(|(r, o)| {
                let mut errors = o.errors.clone();
                if !o.valid {
                    errors.insert(0, NOT_ON_WHATSAPP.to_owned());
                }
                json!({
                    "local_message_id": r.local_message_id,
                    "phone_number": r.phone,
                    "errors": errors,
                })
            }).collect::<Vec<_>>(),
        }),
    }
}

/// Checks the body like WATI's reference: any fault refuses the whole call.
fn check_body(body: &SendBody) -> Result<Vec<Recipient>, String> {
    let Some(recipients) = &body.recipients else {
        return Err("recipients is required".to_owned());
    };
    if recipients.is_empty() {
        return Err("recipients is empty".to_owned());
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Err(format!(
            "at most {MAX_RECIPIENTS} recipients a call, got {}",
            recipients.len()
        ));
    }
    let mut checked = Vec::with_capacity(recipients.len());
    for (i, r) in recipients.iter().enumerate() {
        let Some(phone) = r.phone() else {
            return Err(format!(
                "recipients[{i}]: phone_number or target is required"
            ));
        };
        // Digits only, as v1 asks: a `+` or spaces would file the message under a
        // number a test does not look up.
        if !phone.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("recipients[{i}]: phone_number must be digits only"));
        }
        checked.push(Recipient {
            phone: phone.to_owned(),
            local_message_id: r.local_message_id.clone(),
            params: r
                .custom_params
                .iter()
                .flatten()
                .map(|p| (p.name.clone(), p.value.as_str().map(str::to_owned)))
                .collect(),
            check: ParamCheck::Missing,
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
    /// 200 with `success: false`: WATI refused the whole call.
    Refused { info: String },
    /// 200 `{"success":true}`: every recipient sent, none listed.
    Success,
    /// 200 with a list: per recipient, in order; `None` is left out of the list.
    PerRecipient {
        shape: AnswerShape,
        outcomes: Vec<Option<Receiver>>,
    },
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
/// else a `result: false` refuses it; else a `success` shape answers without a list;
/// else each recipient's script shapes its entry, in the v2 `receivers` shape if any
/// script asks for it, else in the documented `recipients` one.
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
        Answer::PerRecipient {
            shape: if popped().any(|s| s.shape == Some(AnswerShape::Receivers)) {
                AnswerShape::Receivers
            } else {
                AnswerShape::Recipients
            },
            outcomes: scripts
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
        }
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
                answer: Answer::PerRecipient {
                    shape: AnswerShape::Recipients,
                    outcomes: vec![ok(), ok()]
                },
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
    fn one_script_asking_for_the_v2_shape_answers_the_call_in_it() {
        let r = resolve(
            &[None, script(|s| s.shape = Some(AnswerShape::Receivers))],
            LATENCY,
        );
        assert!(matches!(
            r.answer,
            Answer::PerRecipient {
                shape: AnswerShape::Receivers,
                ..
            }
        ));
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
        let Answer::PerRecipient {
            outcomes: receivers,
            ..
        } = r.answer
        else {
            panic!("expected receivers, got {:?}", r.answer);
        };
        let sent: Vec<Option<bool>> = receivers
            .iter()
            .map(|r| r.as_ref().map(Receiver::sent))
            .collect();
        assert_eq!(sent, [Some(false), None, Some(false), Some(true)]);
    }
}
