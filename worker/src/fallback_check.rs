//! Checks the WhatsApp sends whose fallback timer ran out (`FALLBACK_AFTER_SECONDS` after
//! WATI accepted them, [`crate::fallback_timer`]): every worker with the timer on claims
//! those that ran out from Redis and checks each apart. One WhatsApp delivered meanwhile
//! is left alone; any other goes by SMS if it may. A check that fails (Redis or RabbitMQ
//! out) leaves its timer claimed, and it runs out again when the claim does; so does the
//! timer of a worker that stops before checking it. A send checked twice finds its
//! fallback begun, or delivered, and sends no second SMS.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use otp_shared::redis::fallback_timers::{Claim, FallbackTimers, RunOut};
use otp_shared::sms_fallback::{SmsFallback, Trigger};
use tokio::sync::watch;

/// Most timers claimed at once.
const CLAIM_MOST: usize = 256;
/// How long a claim holds a timer: far longer than a check takes (a Redis script and,
/// for an SMS, a confirmed publish), and the longest a worker's stop or a failed check
/// delays a fallback.
pub const CLAIM_FOR: Duration = Duration::from_secs(10);
/// Sends checked at once.
const CHECKS_AT_ONCE: usize = 16;
/// The longest the poller sleeps: timers set meanwhile run out no sooner than
/// `FALLBACK_AFTER_SECONDS` (1 s at least) after they are set.
const POLL_AT_MOST: Duration = Duration::from_secs(1);

/// Claims and checks timers that ran out until `stop` says so; the checks under way
/// are finished first (one cut short could keep an SMS counted).
pub async fn run(timers: FallbackTimers, sms: SmsFallback, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let wait = match timers.claim(CLAIM_MOST, CLAIM_FOR).await {
            Ok(Claim::Due(due)) => {
                check(&timers, &sms, due).await;
                continue;
            }
            Ok(Claim::NextIn(wait)) => wait.min(POLL_AT_MOST),
            Ok(Claim::Empty) => POLL_AT_MOST,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim fallback timers");
                POLL_AT_MOST
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Checks `due`, [`CHECKS_AT_ONCE`] at a time, and removes the timers it checked.
async fn check(timers: &FallbackTimers, sms: &SmsFallback, due: Vec<RunOut>) {
    let mut finished = Vec::with_capacity(due.len());
    let mut waiting = due.into_iter();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < CHECKS_AT_ONCE
            && let Some(timer) = waiting.next()
        {
            running.push(async move {
                let checked = match timer.job() {
                    Ok(job) => match sms.fall_back(&job, Trigger::Timer).await {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::warn!(request_id = %job.request_id, error = %e, "fallback check failed; its timer runs out again");
                            false
                        }
                    },
                    Err(e) => {
                        // No worker of this build will ever read it.
                        tracing::error!(error = %e, "a fallback timer that cannot be read is dropped");
                        true
                    }
                };
                (timer, checked)
            });
        }
        match running.next().await {
            Some((timer, true)) => finished.push(timer),
            Some((_, false)) => {}
            None => break,
        }
    }
    if let Err(e) = timers.done(&finished).await {
        // They run out again and are checked again: each finds its fallback begun, or
        // not needed, and no second SMS goes.
        tracing::warn!(error = %e, timers = finished.len(), "could not remove checked fallback timers");
    }
}
