//! Says what a WATI answer means for each recipient of the call (accepted, refused for
//! good, or worth trying again), apart from when to try again, which is the retry
//! schedule's business. The rules are SPEC.md's WATI tables.

use std::time::Duration;

use otp_shared::phone::PhoneNumber;
use uuid::Uuid;

use crate::wati::answer::{AnswerBody, Receiver, WatiAnswer, clip};

/// What one recipient's send came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// WATI accepted the message for this recipient.
    Accepted,
    /// Will not succeed if tried again.
    Permanent {
        refusal: Refusal,
        /// WATI's own words, where it gave some.
        info: Option<String>,
    },
    /// May succeed later; `retry_after` is WATI's own wait, where it gave one.
    Transient {
        trouble: Trouble,
        retry_after: Option<Duration>,
    },
}

/// Why WATI will not take a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The recipient's `isValidWhatsAppNumber` is false.
    InvalidNumber,
    /// The recipient's entry lists errors.
    RecipientError,
    /// A `receivers` list that leaves the recipient out.
    NotListed,
    /// `result`/`success` false for the whole call.
    Refused,
    /// 401 or 403.
    AuthFailed,
    /// 404.
    TemplateNotFound,
    /// A 3xx: WATI's address is wrong, and the client never follows one.
    Redirected { status: u16 },
    /// Any other 4xx.
    Rejected { status: u16 },
}

/// Why a call may succeed later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    Timeout,
    Unreachable,
    /// A 2xx whose body says nothing readable: the outcome is unknown.
    Unreadable,
    RateLimited,
    Unavailable,
    ServerError {
        status: u16,
    },
}

/// Who gave the answer: reasons name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Wati,
    Twilio,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Wati => "WATI",
            Provider::Twilio => "Twilio",
        }
    }
}

impl Refusal {
    /// The reason a status and a dead letter give.
    pub fn reason(self, provider: Provider) -> String {
        let name = provider.name();
        match self {
            Refusal::InvalidNumber => "Not a valid WhatsApp number".into(),
            Refusal::RecipientError => format!("{name} refused the recipient"),
            Refusal::NotListed => format!("not accepted by {name}"),
            Refusal::Refused => format!("{name} refused the message"),
            Refusal::AuthFailed => format!("{name} API authentication failed"),
            Refusal::TemplateNotFound => format!("{name} template not found"),
            Refusal::Redirected { status } => {
                format!("{name} redirected the request (HTTP {status})")
            }
            Refusal::Rejected { status } => format!("{name} rejected the request (HTTP {status})"),
        }
    }

    /// Whether the refusal is the recipient's (not on WhatsApp, refused, left out),
    /// which another channel may get past, rather than ours: a key, a template, an
    /// address that is wrong refuses every send alike, and would send every code by SMS.
    pub fn is_the_recipients(self) -> bool {
        matches!(
            self,
            Refusal::InvalidNumber | Refusal::RecipientError | Refusal::NotListed
        )
    }

    /// The `result` label of a recipient refused this way.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::InvalidNumber => "invalid_number",
            Refusal::RecipientError => "recipient_error",
            Refusal::NotListed => "not_listed",
            Refusal::Refused => "refused",
            Refusal::AuthFailed
            | Refusal::TemplateNotFound
            | Refusal::Redirected { .. }
            | Refusal::Rejected { .. } => "rejected",
        }
    }
}

impl Trouble {
    pub fn reason(self, provider: Provider) -> String {
        let name = provider.name();
        match self {
            Trouble::Timeout => format!("{name} did not answer in time"),
            Trouble::Unreachable => format!("{name} could not be reached"),
            Trouble::Unreadable => format!("{name} answered without a result"),
            Trouble::RateLimited => format!("{name} rate limited the request"),
            Trouble::Unavailable => format!("{name} is unavailable"),
            Trouble::ServerError { status } => format!("{name} failed (HTTP {status})"),
        }
    }
}

impl Verdict {
    /// The `result` label of a recipient with this verdict.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Permanent { refusal, .. } => refusal.label(),
            Verdict::Transient { .. } => "transient",
        }
    }

    pub(crate) fn permanent(refusal: Refusal, info: Option<String>) -> Self {
        Verdict::Permanent { refusal, info }
    }

    pub(crate) fn transient(trouble: Trouble, retry_after: Option<Duration>) -> Self {
        Verdict::Transient {
            trouble,
            retry_after,
        }
    }
}

/// The `result` label of a whole call: a small fixed set, for metrics and alerts.
pub fn call_class(answer: &WatiAnswer) -> &'static str {
    match answer {
        WatiAnswer::Timeout => "timeout",
        WatiAnswer::Connection => "connection_error",
        WatiAnswer::Http { status, body, .. } => match status {
            200..=299 => match body.as_ref().and_then(|b| b.ok) {
                Some(true) => "accepted",
                Some(false) => "refused",
                None => "unreadable",
            },
            300..=399 => "redirected",
            401 | 403 => "auth_failed",
            404 => "template_not_found",
            429 => "rate_limited",
            400..=499 => "client_error",
            _ => "server_error",
        },
    }
}

/// The verdict for each recipient of a call, in the order given. A recipient is named
/// by its request id (v3's `local_message_id`) and its phone.
pub fn classify(answer: &WatiAnswer, recipients: &[(Uuid, &PhoneNumber)]) -> Vec<Verdict> {
    match call_verdict(answer) {
        CallVerdict::ForAll(verdict) => vec![verdict; recipients.len()],
        CallVerdict::PerRecipient(receivers) => recipients
            .iter()
            .map(|(request_id, phone)| recipient_verdict(receivers, *request_id, phone))
            .collect(),
    }
}

/// What a call's answer says before looking at recipients.
enum CallVerdict<'a> {
    ForAll(Verdict),
    PerRecipient(&'a [Receiver]),
}

fn call_verdict(answer: &WatiAnswer) -> CallVerdict<'_> {
    use CallVerdict::ForAll;
    let (status, retry_after, body) = match answer {
        WatiAnswer::Timeout => return ForAll(Verdict::transient(Trouble::Timeout, None)),
        WatiAnswer::Connection => return ForAll(Verdict::transient(Trouble::Unreachable, None)),
        WatiAnswer::Http {
            status,
            retry_after,
            body,
        } => (*status, *retry_after, body.as_ref()),
    };
    let info = || body.and_then(|b| b.info.clone());
    match status {
        200..=299 => match body {
            Some(AnswerBody {
                ok: Some(true),
                receivers: Some(receivers),
                ..
            }) => CallVerdict::PerRecipient(receivers),
            Some(AnswerBody { ok: Some(true), .. }) => ForAll(Verdict::Accepted),
            Some(AnswerBody {
                ok: Some(false), ..
            }) => ForAll(Verdict::permanent(Refusal::Refused, info())),
            Some(AnswerBody { ok: None, .. }) | None => {
                ForAll(Verdict::transient(Trouble::Unreadable, None))
            }
        },
        300..=399 => ForAll(Verdict::permanent(Refusal::Redirected { status }, None)),
        401 | 403 => ForAll(Verdict::permanent(Refusal::AuthFailed, info())),
        404 => ForAll(Verdict::permanent(Refusal::TemplateNotFound, info())),
        429 => ForAll(Verdict::transient(Trouble::RateLimited, retry_after)),
        503 => ForAll(Verdict::transient(Trouble::Unavailable, retry_after)),
        400..=499 => ForAll(Verdict::permanent(Refusal::Rejected { status }, info())),
        _ => ForAll(Verdict::transient(
            Trouble::ServerError { status },
            retry_after,
        )),
    }
}

fn recipient_verdict(receivers: &[Receiver], request_id: Uuid, phone: &PhoneNumber) -> Verdict {
    let id = request_id.to_string();
    // By the id we gave; by the phone only for an entry that carries no id.
    let entry = receivers.iter().find(|r| match &r.local_message_id {
        Some(local) => local.eq_ignore_ascii_case(&id),
        None => r.wa_id.as_deref() == Some(phone.as_str()),
    });
    let Some(entry) = entry else {
        return Verdict::permanent(Refusal::NotListed, None);
    };
    let errors = (!entry.errors.is_empty()).then(|| clip(&entry.errors.join("; ")));
    if entry.valid_number == Some(false) {
        Verdict::permanent(Refusal::InvalidNumber, errors)
    } else if errors.is_some() {
        Verdict::permanent(Refusal::RecipientError, errors)
    } else {
        Verdict::Accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, body: Option<AnswerBody>) -> WatiAnswer {
        WatiAnswer::Http {
            status,
            retry_after: None,
            body,
        }
    }

    fn ok(ok: bool) -> Option<AnswerBody> {
        Some(AnswerBody {
            ok: Some(ok),
            ..AnswerBody::default()
        })
    }

    fn one() -> (Uuid, PhoneNumber) {
        (
            Uuid::new_v4(),
            PhoneNumber::from_e164_digits("919876543210").expect("phone"),
        )
    }

    fn single(answer: &WatiAnswer) -> Verdict {
        let (id, phone) = one();
        classify(answer, &[(id, &phone)]).remove(0)
    }

    #[test]
    fn only_a_true_result_is_accepted() {
        assert_eq!(single(&http(200, ok(true))), Verdict::Accepted);
        assert!(matches!(
            single(&http(200, ok(false))),
            Verdict::Permanent {
                refusal: Refusal::Refused,
                ..
            }
        ));
        assert!(matches!(
            single(&http(200, None)),
            Verdict::Transient {
                trouble: Trouble::Unreadable,
                ..
            }
        ));
    }

    #[test]
    fn client_errors_are_permanent_with_the_spec_reasons() {
        let reason = |status| match single(&http(status, None)) {
            Verdict::Permanent { refusal, .. } => refusal.reason(Provider::Wati),
            other => panic!("{status}: {other:?}"),
        };
        assert_eq!(reason(401), "WATI API authentication failed");
        assert_eq!(reason(403), "WATI API authentication failed");
        assert_eq!(reason(404), "WATI template not found");
        assert_eq!(reason(400), "WATI rejected the request (HTTP 400)");
        assert_eq!(reason(422), "WATI rejected the request (HTTP 422)");
        assert_eq!(reason(302), "WATI redirected the request (HTTP 302)");
    }

    #[test]
    fn server_errors_timeouts_and_rate_limits_are_transient_for_every_recipient() {
        let (a, pa) = one();
        let (b, pb) = one();
        for answer in [
            http(500, None),
            http(502, None),
            http(503, None),
            http(429, None),
            WatiAnswer::Timeout,
            WatiAnswer::Connection,
        ] {
            let verdicts = classify(&answer, &[(a, &pa), (b, &pb)]);
            assert_eq!(verdicts.len(), 2);
            assert!(
                verdicts
                    .iter()
                    .all(|v| matches!(v, Verdict::Transient { .. })),
                "{answer:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_passed_on_for_429_and_every_5xx() {
        for status in [429, 500, 502, 503, 504] {
            let answer = WatiAnswer::Http {
                status,
                retry_after: Some(Duration::from_secs(2)),
                body: None,
            };
            assert!(matches!(
                single(&answer),
                Verdict::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(2)
            ));
        }
    }

    #[test]
    fn each_recipient_gets_its_own_outcome_from_the_receivers_list() {
        let phones: Vec<PhoneNumber> =
            ["919876543210", "14155552671", "447700900123", "61412345678"]
                .iter()
                .map(|p| PhoneNumber::from_e164_digits(p).expect("phone"))
                .collect();
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        let entry = |i: usize, valid: bool, errors: &[&str]| Receiver {
            local_message_id: Some(ids[i].to_string()),
            wa_id: Some(phones[i].as_str().to_owned()),
            valid_number: Some(valid),
            errors: errors.iter().map(|e| (*e).to_owned()).collect(),
        };
        let answer = http(
            200,
            Some(AnswerBody {
                ok: Some(true),
                info: None,
                // The fourth recipient is left out.
                receivers: Some(vec![
                    entry(0, true, &[]),
                    entry(1, false, &[]),
                    entry(2, true, &["Template param missing"]),
                ]),
            }),
        );
        let recipients: Vec<(Uuid, &PhoneNumber)> = ids.iter().copied().zip(&phones).collect();
        let verdicts = classify(&answer, &recipients);
        assert_eq!(verdicts[0], Verdict::Accepted);
        assert_eq!(verdicts[1].label(), "invalid_number");
        assert_eq!(
            verdicts[2],
            Verdict::Permanent {
                refusal: Refusal::RecipientError,
                info: Some("Template param missing".into())
            }
        );
        assert_eq!(
            verdicts[3],
            Verdict::Permanent {
                refusal: Refusal::NotListed,
                info: None
            }
        );
        assert_eq!(
            Refusal::NotListed.reason(Provider::Wati),
            "not accepted by WATI"
        );
        assert_eq!(
            Refusal::Rejected { status: 400 }.reason(Provider::Twilio),
            "Twilio rejected the request (HTTP 400)"
        );
    }

    #[test]
    fn a_true_answer_without_a_list_accepts_everyone() {
        let (a, pa) = one();
        let (b, pb) = one();
        let verdicts = classify(&http(200, ok(true)), &[(a, &pa), (b, &pb)]);
        assert_eq!(verdicts, [Verdict::Accepted, Verdict::Accepted]);
    }

    #[test]
    fn the_call_class_names_each_kind_of_answer() {
        assert_eq!(call_class(&http(200, ok(true))), "accepted");
        assert_eq!(call_class(&http(200, ok(false))), "refused");
        assert_eq!(call_class(&http(200, None)), "unreadable");
        assert_eq!(call_class(&http(301, None)), "redirected");
        assert_eq!(call_class(&http(429, None)), "rate_limited");
        assert_eq!(call_class(&WatiAnswer::Timeout), "timeout");
    }
}
