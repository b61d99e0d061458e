//! The fallback queue's jobs: WhatsApp sends whose timer ran out (`FALLBACK_AFTER_SECONDS`
//! after WATI accepted them). Each is checked once: a send WhatsApp delivered meanwhile
//! is left alone; any other goes by SMS if it may.

use otp_shared::job::SendJob;
use otp_shared::sms_fallback::{FallbackError, SmsFallback, Trigger};

use crate::consumer::Handler;
use crate::delivery::{Outcome, Requeue};

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
    type Job = SendJob;

    async fn handle(&self, job: &SendJob) -> Outcome {
        match self.sms.fall_back(job, Trigger::Timer).await {
            Ok(_) => Outcome::Dropped {
                why: "fallback checked",
            },
            Err(FallbackError::Redis(e)) => Outcome::Requeue(Requeue::Redis(e)),
            Err(FallbackError::Publish(e)) => Outcome::Requeue(Requeue::Broker(e)),
        }
    }

    /// A check is no delivery: the SMS job it may publish is counted when delivered.
    fn delivers(&self) -> bool {
        false
    }
}
