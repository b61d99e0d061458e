//! The fallback queue's messages: WhatsApp sends whose timer ran out (`FALLBACK_AFTER_SECONDS`
//! after WATI accepted them), several to a message ([`crate::fallback_timer`]). Each send
//! is checked apart: one WhatsApp delivered meanwhile is left alone; any other goes by
//! SMS if it may. When a check fails (Redis or RabbitMQ out), the whole message comes
//! back and every send in it is checked again: a send checked before finds its fallback
//! begun, or delivered, and sends no second SMS.

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use otp_shared::job::TimerBatch;
use otp_shared::sms_fallback::{FallbackError, SmsFallback, Trigger};

use crate::consumer::Handler;
use crate::delivery::{Outcome, Requeue};

/// Sends of one message checked at once.
const CHECKS_AT_ONCE: usize = 16;

/// Checks the sends whose timer ran out.
pub struct FallbackCheck {
    sms: SmsFallback,
}

impl FallbackCheck {
    pub fn new(sms: SmsFallback) -> Self {
        Self { sms }
    }
}

impl Handler for FallbackCheck {
    type Job = TimerBatch;

    async fn handle(&self, batch: &TimerBatch) -> Outcome {
        // At most CHECKS_AT_ONCE at a time, and every check runs to its end: one cut
        // short could keep an SMS counted.
        let mut waiting = batch.sends.iter();
        let mut running = FuturesUnordered::new();
        let mut failure = None;
        loop {
            while running.len() < CHECKS_AT_ONCE
                && let Some(job) = waiting.next()
            {
                running.push(self.sms.fall_back(job, Trigger::Timer));
            }
            match running.next().await {
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    failure.get_or_insert(e);
                }
                None => break,
            }
        }
        match failure {
            None => Outcome::Dropped {
                why: "fallback checked",
            },
            Some(FallbackError::Redis(e)) => Outcome::Requeue(Requeue::Redis(e)),
            Some(FallbackError::Publish(e)) => Outcome::Requeue(Requeue::Broker(e)),
        }
    }

    /// A check is no delivery: the SMS job it may publish is counted when delivered.
    fn delivers(&self) -> bool {
        false
    }
}
