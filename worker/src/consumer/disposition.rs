//! What becomes of a message once its job is over, as pure functions of how it ended
//! (or why it could not be read): ack, dead-letter then ack, or back to the queue
//! either as "not now" or as a failure that counts. The consumer settles the message
//! as they say; the tests below map every outcome without a broker.

use otp_shared::job::JobError;

use crate::delivery::{Outcome, Requeue};

/// What to do with a message.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Disposition {
    /// The job is over: ack.
    Ack,
    /// It can never succeed: publish it to the dead-letter queue with `reason` in a
    /// header, and ack once the broker confirms; counted under `kind`.
    DeadLetter { reason: String, kind: &'static str },
    /// Not now (an outage, a copy in progress, stopping): back to the queue with
    /// `basic.nack`, which RabbitMQ 4.3 and later do not count against the delivery limit.
    Requeue,
    /// Handling it failed in a way that may fail again: back to the queue with
    /// `basic.reject`, which counts, so a poison job ends in the dead-letter queue.
    Reject,
}

/// The disposition of a job that ended with `outcome`.
pub(super) fn disposition(outcome: &Outcome) -> Disposition {
    match outcome {
        // Sent, expired, or settled elsewhere: nothing is left to do with it.
        Outcome::Sent | Outcome::Expired | Outcome::Dropped { .. } => Disposition::Ack,
        // An SMS carries the code: the request goes on there.
        Outcome::Failed { by_sms: true, .. } => Disposition::Ack,
        // Kept, with the provider's reason, for someone to look at.
        Outcome::Failed {
            reason,
            by_sms: false,
        } => Disposition::DeadLetter {
            reason: reason.clone(),
            kind: "permanent_failure",
        },
        Outcome::Requeue(why) => requeue(why),
    }
}

/// Nack or reject: only a failure that may repeat counts toward the dead-letter queue,
/// so an outage that holds jobs up does not carry them there.
fn requeue(why: &Requeue) -> Disposition {
    if why.is_a_failure() {
        Disposition::Reject
    } else {
        Disposition::Requeue
    }
}

/// The disposition of a message that is not a job this worker can read: however often
/// it came back, it would not read, so it goes to the dead-letter queue at once.
pub(super) fn unreadable(error: &JobError) -> Disposition {
    let kind = match error {
        JobError::Malformed(_) => "malformed",
        JobError::UnknownVersion(_) => "unknown_version",
    };
    Disposition::DeadLetter {
        reason: error.reason().to_owned(),
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::samples::every_outcome;
    use otp_shared::job::SendJob;

    #[test]
    fn each_outcome_has_its_disposition() {
        for outcome in every_outcome() {
            // No catch-all arm: a new outcome or reason to requeue needs its
            // disposition named here.
            let expected = match &outcome {
                Outcome::Sent | Outcome::Expired | Outcome::Dropped { .. } => Disposition::Ack,
                Outcome::Failed { by_sms: true, .. } => Disposition::Ack,
                Outcome::Failed {
                    reason,
                    by_sms: false,
                } => Disposition::DeadLetter {
                    reason: reason.clone(),
                    kind: "permanent_failure",
                },
                Outcome::Requeue(Requeue::Redis(e)) if otp_shared::redis::is_outage(e) => {
                    Disposition::Requeue
                }
                Outcome::Requeue(Requeue::Redis(_)) => Disposition::Reject,
                Outcome::Requeue(
                    Requeue::CopyInProgress
                    | Requeue::LeaseLapsed
                    | Requeue::Stopping
                    | Requeue::Broker(_),
                ) => Disposition::Requeue,
            };
            assert_eq!(disposition(&outcome), expected, "{outcome:?}");
        }
    }

    #[test]
    fn a_redis_failure_that_may_repeat_is_rejected_and_an_outage_is_not() {
        let dispositions: Vec<Disposition> = every_outcome()
            .iter()
            .filter(|o| matches!(o, Outcome::Requeue(Requeue::Redis(_))))
            .map(disposition)
            .collect();
        // The samples hold one of each, the outage first.
        assert_eq!(dispositions, [Disposition::Requeue, Disposition::Reject]);
    }

    #[test]
    fn a_failed_job_is_dead_lettered_with_its_own_reason() {
        let outcome = Outcome::Failed {
            reason: "Not a valid WhatsApp number".into(),
            by_sms: false,
        };
        assert_eq!(
            disposition(&outcome),
            Disposition::DeadLetter {
                reason: "Not a valid WhatsApp number".into(),
                kind: "permanent_failure",
            }
        );
        // The same failure with an SMS carrying the code is no dead end.
        let carried = Outcome::Failed {
            reason: "Not a valid WhatsApp number".into(),
            by_sms: true,
        };
        assert_eq!(disposition(&carried), Disposition::Ack);
    }

    #[test]
    fn an_unreadable_message_is_dead_lettered_under_its_kind() {
        let malformed = SendJob::decode(b"not json").expect_err("malformed");
        assert_eq!(
            unreadable(&malformed),
            Disposition::DeadLetter {
                reason: "malformed job".into(),
                kind: "malformed",
            }
        );
        assert_eq!(
            unreadable(&JobError::UnknownVersion(99)),
            Disposition::DeadLetter {
                reason: "unknown job version".into(),
                kind: "unknown_version",
            }
        );
    }
}
