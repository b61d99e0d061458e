//! The delivery policy: what to do after each hand-over to the batcher, as a pure
//! function of what came of it, the retry schedule and the code's time left. It reads
//! no clock and touches no Redis, broker or WATI: the deliverer does the I/O each step
//! names (record, end, pause), and the tests below walk every branch without them.

use std::time::Duration;

use crate::batcher::{CallResult, Skipped};
use crate::classify::{Refusal, Trouble, Verdict};
use crate::retry::RetrySchedule;
use otp_shared::senders::SentFrom;

use super::{Outcome, Requeue};

/// What the deliverer does next with a send.
#[derive(Debug)]
pub(super) enum Step {
    /// The provider accepted the message (from this WhatsApp number): record the
    /// delivery.
    RecordSent { from: Option<SentFrom> },
    /// The provider refused it for good: end the send failed, counting the call.
    Fail {
        refusal: Refusal,
        /// WATI's own words, where it gave some.
        info: Option<String>,
    },
    /// The code runs out before WATI could take the message: end the send expired.
    Expire(TooLate),
    /// Try again after `delay`.
    Retry { delay: Duration, trouble: Trouble },
    /// Over, or not this worker's to finish, without touching the send's record.
    Done(Outcome),
}

/// Why a code ran out before WATI took its message. Both end the send the same way;
/// they differ in what the log says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TooLate {
    /// The last call met this trouble, and the next attempt would start at or after
    /// the code's expiry.
    ForRetry(Trouble),
    /// It waited for the shared WATI budget until its code expired.
    ForBudget,
}

/// The step after `result`, with `time_left` of the code's life once the call is
/// counted. An answer WATI gave stands however late it came; a transient failure is
/// retried after the schedule's delay (WATI's `Retry-After` where it gave one) only if
/// that attempt would start while the code still lives, since a code that reaches the
/// phone after its expiry is of no use and would still count against the budget.
pub(super) fn next_step(
    result: CallResult,
    schedule: &mut RetrySchedule,
    time_left: Duration,
) -> Step {
    let (verdict, from) = match result {
        CallResult::Called { verdict, from } => (verdict, from),
        CallResult::NotCalled(skipped) => return after_skip(skipped),
    };
    match verdict {
        Verdict::Accepted => Step::RecordSent { from },
        Verdict::Permanent { refusal, info } => Step::Fail { refusal, info },
        Verdict::Transient {
            trouble,
            retry_after,
        } => {
            let delay = schedule.next_delay(retry_after);
            if delay < time_left {
                Step::Retry { delay, trouble }
            } else {
                Step::Expire(TooLate::ForRetry(trouble))
            }
        }
    }
}

/// The step for a send the batcher let go without calling WATI.
fn after_skip(skipped: Skipped) -> Step {
    match skipped {
        Skipped::Expired => Step::Expire(TooLate::ForBudget),
        // The other worker's copy settles the send: nothing here to record or retry.
        Skipped::LeaseTaken => Step::Done(Outcome::Dropped {
            why: "another worker took over",
        }),
        // A copy may have finished meanwhile; the job's next delivery finds out.
        Skipped::LeaseLapsed => Step::Done(Outcome::Requeue(Requeue::LeaseLapsed)),
        Skipped::Stopping => Step::Done(Outcome::Requeue(Requeue::Stopping)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetryConfig;

    const BASE: Duration = Duration::from_millis(100);
    const PLENTY: Duration = Duration::from_secs(300);

    /// A schedule without jitter: 100 ms, 200 ms, 400 ms, ... up to 2 s.
    fn schedule() -> RetrySchedule {
        RetrySchedule::steady(&RetryConfig {
            base_delay: BASE,
            max_delay: Duration::from_secs(2),
        })
    }

    fn called(verdict: Verdict) -> CallResult {
        CallResult::Called {
            verdict,
            from: None,
        }
    }

    fn transient(trouble: Trouble, retry_after: Option<Duration>) -> CallResult {
        called(Verdict::Transient {
            trouble,
            retry_after,
        })
    }

    fn step(result: CallResult, time_left: Duration) -> Step {
        next_step(result, &mut schedule(), time_left)
    }

    /// Every refusal. The match has no catch-all arm, so a new variant fails to
    /// compile here until it is listed.
    fn every_refusal() -> Vec<Refusal> {
        let all = vec![
            Refusal::InvalidNumber,
            Refusal::RecipientError,
            Refusal::NotListed,
            Refusal::Refused,
            Refusal::AuthFailed,
            Refusal::TemplateNotFound,
            Refusal::Redirected { status: 302 },
            Refusal::Rejected { status: 422 },
        ];
        for refusal in &all {
            match refusal {
                Refusal::InvalidNumber
                | Refusal::RecipientError
                | Refusal::NotListed
                | Refusal::Refused
                | Refusal::AuthFailed
                | Refusal::TemplateNotFound
                | Refusal::Redirected { .. }
                | Refusal::Rejected { .. } => {}
            }
        }
        all
    }

    /// Every trouble, listed as [`every_refusal`] lists refusals.
    fn every_trouble() -> Vec<Trouble> {
        let all = vec![
            Trouble::Timeout,
            Trouble::Unreachable,
            Trouble::Unreadable,
            Trouble::RateLimited,
            Trouble::Unavailable,
            Trouble::ServerError { status: 502 },
        ];
        for trouble in &all {
            match trouble {
                Trouble::Timeout
                | Trouble::Unreachable
                | Trouble::Unreadable
                | Trouble::RateLimited
                | Trouble::Unavailable
                | Trouble::ServerError { .. } => {}
            }
        }
        all
    }

    /// Every skip, listed as [`every_refusal`] lists refusals.
    fn every_skip() -> Vec<Skipped> {
        let all = vec![
            Skipped::Expired,
            Skipped::LeaseTaken,
            Skipped::LeaseLapsed,
            Skipped::Stopping,
        ];
        for skipped in &all {
            match skipped {
                Skipped::Expired
                | Skipped::LeaseTaken
                | Skipped::LeaseLapsed
                | Skipped::Stopping => {}
            }
        }
        all
    }

    #[test]
    fn an_accepted_send_is_recorded_even_when_the_answer_came_at_the_expiry() {
        for time_left in [PLENTY, Duration::ZERO] {
            let step = step(called(Verdict::Accepted), time_left);
            assert!(matches!(step, Step::RecordSent { .. }), "{step:?}");
        }
    }

    #[test]
    fn every_refusal_fails_for_good_with_its_reason_and_wati_s_words() {
        for refusal in every_refusal() {
            for info in [None, Some("Template param missing".to_owned())] {
                for time_left in [PLENTY, Duration::ZERO] {
                    let verdict = Verdict::Permanent {
                        refusal,
                        info: info.clone(),
                    };
                    match step(called(verdict), time_left) {
                        Step::Fail {
                            refusal: r,
                            info: i,
                        } => {
                            assert_eq!(r, refusal);
                            assert_eq!(i, info);
                        }
                        other => panic!("{refusal:?}: {other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn every_trouble_is_retried_after_the_backoff_while_the_code_lives() {
        for trouble in every_trouble() {
            match step(transient(trouble, None), PLENTY) {
                Step::Retry { delay, trouble: t } => {
                    assert_eq!(delay, BASE);
                    assert_eq!(t, trouble);
                }
                other => panic!("{trouble:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn retry_after_is_honoured_longer_or_shorter_than_the_backoff() {
        for retry_after in [Duration::from_secs(7), Duration::from_millis(10)] {
            let step = step(transient(Trouble::RateLimited, Some(retry_after)), PLENTY);
            assert!(
                matches!(step, Step::Retry { delay, .. } if delay == retry_after),
                "{step:?}"
            );
        }
    }

    #[test]
    fn no_retry_that_would_start_at_or_after_the_expiry() {
        let trouble = Trouble::Unavailable;
        let expired =
            |step: Step| matches!(step, Step::Expire(TooLate::ForRetry(t)) if t == trouble);
        // WATI's wait beyond the code's life, up to it, and just short of it.
        let five = Some(Duration::from_secs(5));
        assert!(expired(step(
            transient(trouble, five),
            Duration::from_secs(4)
        )));
        assert!(expired(step(
            transient(trouble, five),
            Duration::from_secs(5)
        )));
        assert!(matches!(
            step(transient(trouble, five), Duration::from_millis(5001)),
            Step::Retry { .. }
        ));
        // The backoff's first wait, against no time at all, the same time, a little more.
        assert!(expired(step(transient(trouble, None), Duration::ZERO)));
        assert!(expired(step(transient(trouble, None), BASE)));
        assert!(matches!(
            step(transient(trouble, None), BASE + Duration::from_millis(1)),
            Step::Retry { .. }
        ));
    }

    #[test]
    fn the_waits_grow_across_attempts_until_the_next_would_come_too_late() {
        let mut schedule = schedule();
        let mut time_left = Duration::from_millis(1000);
        let mut delays = Vec::new();
        loop {
            match next_step(transient(Trouble::Timeout, None), &mut schedule, time_left) {
                Step::Retry { delay, .. } => {
                    // Whole milliseconds: the backoff doubles in `f32`.
                    delays.push((delay.as_secs_f64() * 1000.0).round() as u64);
                    time_left -= delay;
                }
                Step::Expire(TooLate::ForRetry(Trouble::Timeout)) => break,
                other => panic!("{other:?}"),
            }
        }
        // 100 + 200 + 400 leave 300 ms, short of the next wait of 800 ms.
        assert_eq!(delays, [100, 200, 400]);
    }

    #[test]
    fn each_skip_has_its_own_step_whatever_the_time_left() {
        for time_left in [PLENTY, Duration::ZERO] {
            for skipped in every_skip() {
                let step = step(CallResult::NotCalled(skipped), time_left);
                // No catch-all arm: a new skip needs its expected step named here.
                let right = match skipped {
                    Skipped::Expired => matches!(step, Step::Expire(TooLate::ForBudget)),
                    Skipped::LeaseTaken => matches!(
                        step,
                        Step::Done(Outcome::Dropped {
                            why: "another worker took over"
                        })
                    ),
                    Skipped::LeaseLapsed => {
                        matches!(step, Step::Done(Outcome::Requeue(Requeue::LeaseLapsed)))
                    }
                    Skipped::Stopping => {
                        matches!(step, Step::Done(Outcome::Requeue(Requeue::Stopping)))
                    }
                };
                assert!(right, "{skipped:?}: {step:?}");
            }
        }
    }

    #[test]
    fn a_skip_leaves_the_schedule_where_it_was() {
        let mut schedule = schedule();
        for skipped in every_skip() {
            next_step(CallResult::NotCalled(skipped), &mut schedule, PLENTY);
        }
        assert!(matches!(
            next_step(transient(Trouble::Timeout, None), &mut schedule, PLENTY),
            Step::Retry { delay, .. } if delay == BASE
        ));
    }
}
