//! The pool of sending numbers as the receipts show it: a failure receipt that says the
//! number was in trouble (Meta's throughput or spam limit, or a burst of failures)
//! pauses that number for every process, and a send Meta refused for its number goes
//! out again from another; a delivered probe puts a paused number back to work.

use otp_shared::redis::receipts::{Applied, SentBy};
use otp_shared::redis::sender_health::{PoolView, Reported, SenderHealth, Trouble};
use otp_shared::senders::Senders;

use crate::receipts::{Event, failed_code_label};

/// The sending numbers, their shared states, and this process's reading of them.
#[derive(Clone)]
pub struct SendingPool {
    pub senders: Senders,
    pub health: SenderHealth,
    pub view: PoolView,
}

impl SendingPool {
    /// Whether a failure with Meta's `code` sends its message again from another
    /// number: the number was in trouble, and another can send now (no number is
    /// paused or probing and the pool has two, or one is and another is not: the one in
    /// trouble may be either). Otherwise the failure stands, and SMS may carry the code.
    pub fn reroutes(&self, code: &str) -> bool {
        if Trouble::of_code(code) != Trouble::Limit {
            return false;
        }
        let unhealthy = self.view.get();
        let healthy = self
            .senders
            .iter()
            .filter(|s| !unhealthy.contains_key(s.name()))
            .count();
        healthy >= 2 || (healthy == 1 && !unhealthy.is_empty())
    }

    /// What `applied` (a WhatsApp receipt's outcome) says about the number its message
    /// went from. Best effort: a Redis failure here is logged, and the receipt stands.
    pub async fn learn(&self, event: &Event, applied: &Applied) {
        let (sent_by, first_delivery) = match applied {
            Applied::Changed {
                sent_by: Some(sent_by),
                first_delivery,
                ..
            } => (sent_by, first_delivery.is_some()),
            Applied::Rerouted {
                sent_by: Some(sent_by),
                ..
            } => (sent_by, false),
            _ => return,
        };
        match event {
            Event::Failed { code, .. } => self.failed(sent_by, code).await,
            Event::Delivered | Event::Read if first_delivery && sent_by.probe => {
                match self
                    .health
                    .probe_delivered(&sent_by.sender, sent_by.sent_at_ms)
                    .await
                {
                    Ok(true) => {
                        tracing::info!(sender = %sent_by.sender, "a probe was delivered: the number sends again")
                    }
                    Ok(false) => {
                        tracing::info!(sender = %sent_by.sender, "a probe from before the number's last pause was delivered: it stays paused or probing")
                    }
                    Err(e) => {
                        tracing::warn!(sender = %sent_by.sender, error = %e, "could not clear a number's probe")
                    }
                }
            }
            _ => {}
        }
    }

    async fn failed(&self, sent_by: &SentBy, code: &str) {
        metrics::counter!(
            otp_shared::metrics::SENDER_FAILURES,
            "sender" => sent_by.sender.clone(),
            "failed_code" => failed_code_label(code),
        )
        .increment(1);
        let Some(sender) = self.senders.iter().find(|s| s.name() == sent_by.sender) else {
            // A number taken out of the pool since: nothing to pause.
            return;
        };
        let trouble = Trouble::of_code(code);
        if trouble == Trouble::Recipient {
            return;
        }
        match self
            .health
            .report(
                sender.name(),
                trouble,
                sent_by.sent_at_ms,
                sender.messages_per_second,
            )
            .await
        {
            Ok(Reported::Paused(pause)) => {
                metrics::counter!(
                    otp_shared::metrics::SENDER_PAUSES,
                    "sender" => sender.name().to_owned(),
                    "trouble" => trouble.label(),
                )
                .increment(1);
                tracing::warn!(
                    sender = %sender.name(),
                    failed_code = failed_code_label(code),
                    pause_s = pause.as_secs(),
                    "a sending number is paused"
                );
            }
            Ok(Reported::Counted | Reported::Stale) => {}
            Err(e) => {
                tracing::warn!(sender = %sender.name(), error = %e, "could not report a number's trouble");
            }
        }
    }
}
