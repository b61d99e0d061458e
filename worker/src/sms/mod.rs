//! Codes by SMS: the courier that hands a send to Twilio, one message per call (Twilio
//! has no batch send), with its lease confirmed right before the call as the batcher
//! does for WhatsApp's, and the body written from `SMS_TEXT`. The deliverer around it
//! is WhatsApp's: the same ledger, retries and crash safety.

pub mod text;
pub mod twilio;

use std::time::Duration;

use otp_shared::redis::lease::Holding;
use tokio::time::Instant;

use crate::batcher::{CallResult, Skipped};
use crate::classify::Provider;
use crate::delivery::{Courier, Parcel};
use text::SmsText;
use twilio::TwilioClient;

/// Twilio, for the SMS queue's jobs.
pub struct Sms {
    twilio: TwilioClient,
    text: SmsText,
}

impl Sms {
    pub fn new(twilio: TwilioClient, text: SmsText) -> Self {
        Self { twilio, text }
    }
}

impl Courier for Sms {
    const PROVIDER: Provider = Provider::Twilio;

    async fn carry(&self, parcel: Parcel<'_>) -> CallResult {
        // A copy of the job delivered by another worker must not send a second SMS.
        match parcel.lease.extend().await {
            Ok(Holding::Held) => {}
            Ok(Holding::TakenByAnother) => return CallResult::NotCalled(Skipped::LeaseTaken),
            Ok(Holding::Lapsed) => return CallResult::NotCalled(Skipped::LeaseLapsed),
            Err(e) => {
                // Unknown: the job goes back, and its next delivery finds out.
                tracing::warn!(error = %e, "could not confirm an SMS delivery's lease");
                return CallResult::NotCalled(Skipped::LeaseLapsed);
            }
        }
        let time_left = parcel.deadline.saturating_duration_since(Instant::now());
        if time_left.is_zero() {
            return CallResult::NotCalled(Skipped::Expired);
        }
        let body = self
            .text
            .body(parcel.code.expose(), minutes_rounded_up(time_left));
        // Names the send in Twilio's status callbacks.
        let callback_query = format!(
            "request={}&fallback={}",
            parcel.job.request_id,
            u8::from(parcel.job.fallback)
        );
        let started = std::time::Instant::now();
        let answer = self
            .twilio
            .send(&parcel.job.phone, &body, &callback_query, time_left)
            .await;
        let verdict = twilio::classify(&answer);
        metrics::counter!(otp_shared::metrics::TWILIO_REQUESTS, "result" => twilio::result_class(&answer))
            .increment(1);
        metrics::histogram!(otp_shared::metrics::TWILIO_DURATION).record(started.elapsed());
        CallResult::Called {
            verdict,
            from: None,
        }
    }
}

/// What `{minutes}` says: the code's life left, in whole minutes, rounded up.
fn minutes_rounded_up(time_left: Duration) -> u64 {
    time_left.as_secs().div_ceil(60).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_rounded_up_and_never_zero() {
        assert_eq!(minutes_rounded_up(Duration::from_secs(300)), 5);
        assert_eq!(minutes_rounded_up(Duration::from_secs(241)), 5);
        assert_eq!(minutes_rounded_up(Duration::from_millis(400)), 1);
    }
}
