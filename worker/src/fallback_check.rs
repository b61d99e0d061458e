//! Checks the WhatsApp sends whose fallback timer ran out (`FALLBACK_AFTER_SECONDS` after
//! WATI accepted them, [`crate::fallback_timer`]): every worker with SMS on claims those
//! that ran out from Redis and checks each apart. One WhatsApp delivered meanwhile is
//! left alone; any other goes by SMS if it may. A check that fails (Redis or RabbitMQ
//! out) leaves its timer claimed, and it runs out again when the claim does; so does the
//! timer of a worker that stops before checking it. A send checked twice finds its
//! fallback begun, or delivered, and sends no second SMS.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use otp_shared::redis::fallback_timers::{Claim, FallbackTimers, RunOut};
use otp_shared::sms_fallback::{FallbackError, SmsFallback, Trigger};
use tokio::sync::watch;

/// Most timers claimed at once.
const CLAIM_MOST: usize = 256;
/// How long a claim holds a timer: far longer than a healthy claim's checks take (a
/// Redis script each and, for an SMS, a confirmed publish, 16 at a time), and the
/// longest a worker's stop or a failed check delays a fallback.
pub const CLAIM_FOR: Duration = Duration::from_secs(10);
/// Sends checked at once.
const CHECKS_AT_ONCE: usize = 16;
/// The longest the poller sleeps: timers set meanwhile run out no sooner than
/// `FALLBACK_AFTER_SECONDS` (1 s at least) after they are set.
const POLL_AT_MOST: Duration = Duration::from_secs(1);
/// The pause after checks that failed, doubled for each such claim in a row.
const FAILED_PAUSE: Duration = Duration::from_secs(1);
const FAILED_PAUSE_MOST: Duration = Duration::from_secs(30);

/// What the poller needs.
pub struct Checker {
    pub timers: FallbackTimers,
    pub sms: SmsFallback,
    /// `OTP_TTL`: a timer whose code's life is over is checked no more.
    pub code_life: Duration,
}

/// What became of one claimed timer.
enum Checked {
    /// Checked: remove it.
    Done,
    /// Checked no more (its code's life is over, or no worker read it): remove it.
    Dropped,
    /// Its check failed: it runs out again when its claim does.
    Failed(FallbackError),
    /// Another build's, which this one cannot read: left for a worker that can, its
    /// claim lapses. (Timers not looked at because the worker is stopping or checks are
    /// failing lapse the same way, without a `Checked`.)
    Left,
}

impl Checked {
    /// Every `result` label of the timer checks counter.
    const LABELS: [&'static str; 3] = ["checked", "dropped", "failed"];

    /// The `result` label it is counted under; `None` for one not looked at.
    fn label(&self) -> Option<&'static str> {
        let [checked, dropped, failed] = Self::LABELS;
        match self {
            Checked::Done => Some(checked),
            Checked::Dropped => Some(dropped),
            Checked::Failed(_) => Some(failed),
            Checked::Left => None,
        }
    }
}

/// Shows every result of the timer checks at 0, so that the alert on failing checks
/// reads them from the first check on.
pub fn start_counting() {
    for result in Checked::LABELS {
        otp_shared::metrics::start_at_zero(
            otp_shared::metrics::FALLBACK_TIMER_CHECKS,
            &[("result", result)],
        );
    }
}

/// Claims and checks timers that ran out until `stop` says so. The checks under way
/// are finished (one cut short could keep an SMS counted); no new one starts.
pub async fn run(checker: Checker, mut stop: watch::Receiver<bool>) {
    let mut failed_in_a_row = 0u32;
    while !*stop.borrow() {
        let wait = match checker.timers.claim(CLAIM_MOST, CLAIM_FOR).await {
            Ok(Claim::Due(due)) => {
                if checker.check(due, &stop).await {
                    failed_in_a_row = 0;
                    continue;
                }
                failed_in_a_row += 1;
                failed_pause(failed_in_a_row)
            }
            Ok(Claim::NextIn(wait)) => wait.min(POLL_AT_MOST),
            Ok(Claim::Empty) => POLL_AT_MOST,
            Err(e) => {
                failed_in_a_row += 1;
                tracing::warn!(error = %e, "could not claim fallback timers");
                failed_pause(failed_in_a_row)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// The pause after the `n`th claim in a row whose checks failed.
fn failed_pause(n: u32) -> Duration {
    FAILED_PAUSE
        .saturating_mul(1 << n.saturating_sub(1).min(5))
        .min(FAILED_PAUSE_MOST)
}

/// Whether the code of a send accepted at `accepted_at_ms` is past its life at `now_ms`.
fn past_its_life(accepted_at_ms: u64, code_life: Duration, now_ms: u64) -> bool {
    let life_ms = u64::try_from(code_life.as_millis()).unwrap_or(u64::MAX);
    accepted_at_ms.saturating_add(life_ms) < now_ms
}

impl Checker {
    /// Checks `due`, [`CHECKS_AT_ONCE`] at a time, and removes the timers it is done
    /// with. After a failure it starts no more checks (the next would most likely fail
    /// too); nor once the worker is stopping. Whether every check it started succeeded.
    async fn check(&self, due: Vec<RunOut>, stop: &watch::Receiver<bool>) -> bool {
        let mut done = Vec::with_capacity(due.len());
        let (mut failed, mut first_error) = (0usize, None);
        let mut waiting = due.into_iter();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < CHECKS_AT_ONCE && failed == 0 && !*stop.borrow() {
                let Some(timer) = waiting.next() else { break };
                running.push(async move {
                    let checked = self.check_one(&timer).await;
                    (timer, checked)
                });
            }
            let Some((timer, checked)) = running.next().await else {
                break;
            };
            if let Some(result) = checked.label() {
                metrics::counter!(otp_shared::metrics::FALLBACK_TIMER_CHECKS, "result" => result)
                    .increment(1);
            }
            match checked {
                Checked::Done | Checked::Dropped => done.push(timer),
                Checked::Failed(e) => {
                    failed += 1;
                    first_error.get_or_insert(e);
                }
                Checked::Left => {}
            }
        }
        if let Some(e) = first_error {
            tracing::warn!(failed, error = %e, "fallback checks failed; their timers run out again");
        }
        if let Err(e) = self.timers.done(&done).await {
            // They run out again and are checked again: each finds its fallback begun, or
            // not needed, and no second SMS goes.
            tracing::warn!(error = %e, timers = done.len(), "could not remove checked fallback timers");
        }
        failed == 0
    }

    async fn check_one(&self, timer: &RunOut) -> Checked {
        let now_ms = otp_shared::now_ms();
        let job = match timer.job() {
            Ok(job) => job,
            // Another build's job: left for a worker that reads it, while its code lives.
            Err(e) => {
                return match timer.accepted_at_ms() {
                    Some(at) if !past_its_life(at, self.code_life, now_ms) => Checked::Left,
                    _ => {
                        tracing::error!(error = %e, "a fallback timer no worker read before its code's life ended is dropped");
                        Checked::Dropped
                    }
                };
            }
        };
        match self.sms.fall_back(&job, Trigger::Timer).await {
            Ok(_) => Checked::Done,
            Err(e) if past_its_life(job.accepted_at_ms, self.code_life, now_ms) => {
                // Nothing is left to send: a check that keeps failing stops here.
                tracing::error!(request_id = %job.request_id, error = %e, "a fallback check failed after its code's life; dropped");
                Checked::Dropped
            }
            Err(e) => Checked::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_checks_pause_longer_each_time_up_to_the_most() {
        let pauses: Vec<u64> = (1..=8).map(|n| failed_pause(n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn a_code_is_past_its_life_only_after_it() {
        let life = Duration::from_secs(300);
        assert!(!past_its_life(1_000, life, 301_000));
        assert!(past_its_life(1_000, life, 301_001));
        assert!(!past_its_life(u64::MAX, life, u64::MAX));
    }
}
