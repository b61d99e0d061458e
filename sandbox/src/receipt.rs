//! Delivery receipts: which webhook events WATI posts for a message it accepted, and
//! when; one small task a message walks through them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::{EventKind, MessageFacts};
use crate::script::ScriptedReply;
use crate::send::now_ms;
use crate::{Sandbox, ids, webhook};

/// What a failed message reports when its script names a code but no detail.
const DEFAULT_FAILED_DETAIL: &str = "Message undeliverable";

/// Where and how the sandbox posts delivery receipts, like a tenant's webhook in WATI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptSettings {
    /// The receiver's URL; `None` posts nothing.
    pub webhook_url: Option<String>,
    /// From acceptance to `delivered` (or `templateMessageFailed`).
    pub delivered_after: Duration,
    /// From acceptance to `read`; a value below `delivered_after` counts as it.
    pub read_after: Duration,
    /// How many times each event is posted, as WATI sometimes repeats itself; 0 counts
    /// as 1 (turn receipts off by leaving out the URL).
    pub repeat: u32,
    /// Post `read` before `delivered`, both at `delivered_after`, as WATI sometimes does.
    pub reorder: bool,
}

impl Default for ReceiptSettings {
    /// No receipts; with a URL: delivered after 300 ms, read after 1 s, each once.
    fn default() -> Self {
        Self {
            webhook_url: None,
            delivered_after: Duration::from_millis(300),
            read_after: Duration::from_millis(1_000),
            repeat: 1,
            reorder: false,
        }
    }
}

/// What becomes of an accepted message, as its recipient's script says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReceiptPlan {
    /// `sent`, then `delivered`, then `read`.
    Read,
    /// `sent`, then `templateMessageFailed` instead of `delivered` and `read`.
    Failed { code: String, detail: String },
    /// Nothing at all, as when WATI loses track of a message.
    Silent,
}

impl ReceiptPlan {
    /// `noReceipts` wins over `failedCode`; a `failedDetail` without a code is ignored.
    pub(crate) fn from_script(script: Option<&ScriptedReply>) -> Self {
        let Some(script) = script else {
            return Self::Read;
        };
        if script.no_receipts == Some(true) {
            return Self::Silent;
        }
        match &script.failed_code {
            Some(code) => Self::Failed {
                code: code.clone(),
                detail: script
                    .failed_detail
                    .clone()
                    .unwrap_or_else(|| DEFAULT_FAILED_DETAIL.to_owned()),
            },
            None => Self::Read,
        }
    }
}

/// A message just recorded as accepted, owed its receipts.
pub(crate) struct AcceptedMessage {
    pub phone: String,
    pub template: String,
    /// The rendered message (it holds the code), as WATI's `sent` event carries it.
    pub text: String,
    pub local_message_id: Option<String>,
    pub plan: ReceiptPlan,
    /// The sandbox's life it was accepted in: its receipts are not recorded after a reset.
    pub generation: u64,
}

/// Starts the receipts of messages accepted just now, under the settings of this moment
/// (a later [`Sandbox::set_receipts`] does not change them). Returns at once.
pub(crate) fn schedule(sandbox: &Sandbox, accepted: Vec<AcceptedMessage>) {
    if accepted.is_empty() {
        return;
    }
    let settings = sandbox.receipt_settings_now();
    let Some(url) = settings.webhook_url.as_deref() else {
        return;
    };
    let url: Arc<str> = Arc::from(url);
    let accepted_at = Instant::now();
    let accepted_at_ms = now_ms();
    for message in accepted {
        let events = timeline(&settings, &message.plan);
        if events.is_empty() {
            continue;
        }
        let facts = MessageFacts {
            local_message_id: message.local_message_id.unwrap_or_else(ids::uuid),
            id: ids::object_id(),
            whatsapp_message_id: ids::wamid(),
            phone: message.phone,
            template: message.template,
            text: message.text,
            accepted_at_ms,
        };
        let sandbox = sandbox.clone();
        let url = url.clone();
        let copies = settings.repeat.max(1);
        tokio::spawn(async move {
            for (after, kind) in events {
                tokio::time::sleep_until((accepted_at + after).into()).await;
                let body = facts.body(&kind, now_ms());
                for _ in 0..copies {
                    // One copy at a time, retries included, so a message's events
                    // reach the receiver in the planned order (`reorder` plans read first).
                    let post = webhook::Post {
                        url: url.clone(),
                        body: body.clone(),
                        event: kind.event_type(),
                        local_message_id: facts.local_message_id.clone(),
                        phone: facts.phone.clone(),
                        generation: message.generation,
                    };
                    webhook::deliver(&sandbox, post).await;
                }
            }
        });
    }
}

/// The events a message gets, each with its time after acceptance, in posting order.
fn timeline(settings: &ReceiptSettings, plan: &ReceiptPlan) -> Vec<(Duration, EventKind)> {
    let delivered_after = settings.delivered_after;
    let read_after = settings.read_after.max(delivered_after);
    match plan {
        ReceiptPlan::Silent => Vec::new(),
        ReceiptPlan::Failed { code, detail } => vec![
            (Duration::ZERO, EventKind::Sent),
            (
                delivered_after,
                EventKind::Failed {
                    code: code.clone(),
                    detail: detail.clone(),
                },
            ),
        ],
        ReceiptPlan::Read if settings.reorder => vec![
            (Duration::ZERO, EventKind::Sent),
            (delivered_after, EventKind::Read),
            (delivered_after, EventKind::Delivered),
        ],
        ReceiptPlan::Read => vec![
            (Duration::ZERO, EventKind::Sent),
            (delivered_after, EventKind::Delivered),
            (read_after, EventKind::Read),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn settings(delivered: u64, read: u64, reorder: bool) -> ReceiptSettings {
        ReceiptSettings {
            webhook_url: Some("http://127.0.0.1:1/".into()),
            delivered_after: ms(delivered),
            read_after: ms(read),
            repeat: 1,
            reorder,
        }
    }

    #[test]
    fn a_delivered_message_is_sent_at_once_then_delivered_then_read() {
        assert_eq!(
            timeline(&settings(300, 1_000, false), &ReceiptPlan::Read),
            [
                (ms(0), EventKind::Sent),
                (ms(300), EventKind::Delivered),
                (ms(1_000), EventKind::Read),
            ]
        );
    }

    #[test]
    fn read_is_never_planned_before_delivered() {
        let events = timeline(&settings(300, 100, false), &ReceiptPlan::Read);
        assert_eq!(events[2], (ms(300), EventKind::Read));
    }

    #[test]
    fn reorder_posts_read_then_delivered_at_the_delivered_time() {
        assert_eq!(
            timeline(&settings(300, 1_000, true), &ReceiptPlan::Read),
            [
                (ms(0), EventKind::Sent),
                (ms(300), EventKind::Read),
                (ms(300), EventKind::Delivered),
            ]
        );
    }

    #[test]
    fn a_failed_message_gets_the_failure_at_the_delivered_time_and_nothing_after() {
        let plan = ReceiptPlan::Failed {
            code: "131026".into(),
            detail: "Message undeliverable".into(),
        };
        for reorder in [false, true] {
            let events = timeline(&settings(300, 1_000, reorder), &plan);
            assert_eq!(events.len(), 2);
            assert_eq!(events[0], (ms(0), EventKind::Sent));
            assert_eq!(events[1].0, ms(300));
            assert!(matches!(&events[1].1, EventKind::Failed { code, .. } if code == "131026"));
        }
    }

    #[test]
    fn a_silent_message_gets_nothing() {
        assert!(timeline(&settings(300, 1_000, false), &ReceiptPlan::Silent).is_empty());
    }

    #[test]
    fn the_script_decides_the_plan_and_no_receipts_wins() {
        assert_eq!(ReceiptPlan::from_script(None), ReceiptPlan::Read);
        let mut script = ScriptedReply {
            failed_code: Some("131026".into()),
            ..ScriptedReply::default()
        };
        assert_eq!(
            ReceiptPlan::from_script(Some(&script)),
            ReceiptPlan::Failed {
                code: "131026".into(),
                detail: DEFAULT_FAILED_DETAIL.into()
            }
        );
        script.failed_detail = Some("Blocked".into());
        assert!(matches!(
            ReceiptPlan::from_script(Some(&script)),
            ReceiptPlan::Failed { detail, .. } if detail == "Blocked"
        ));
        script.no_receipts = Some(true);
        assert_eq!(ReceiptPlan::from_script(Some(&script)), ReceiptPlan::Silent);
        let detail_only = ScriptedReply {
            failed_detail: Some("ignored".into()),
            ..ScriptedReply::default()
        };
        assert_eq!(
            ReceiptPlan::from_script(Some(&detail_only)),
            ReceiptPlan::Read
        );
    }
}
