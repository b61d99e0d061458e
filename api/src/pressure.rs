//! Whether a burst of sign-ins is under way: how many send-otp and verify-otp requests
//! are in flight at once. Work that can wait (WATI's receipts, whose times come from
//! the events) waits while one is, so that sign-ins keep the cores; it never waits
//! longer than a bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Sign-in requests in flight at once that make a burst. A steady hundred a second,
/// each a few milliseconds, keeps about one in flight.
const BURST_IN_FLIGHT: usize = 16;
/// How often a waiting task looks again.
const RECHECK_EVERY: Duration = Duration::from_millis(25);

#[derive(Default)]
pub struct Pressure {
    sign_ins: AtomicUsize,
}

/// Counts one sign-in request in flight until dropped.
pub struct SignIn(Arc<Pressure>);

impl Drop for SignIn {
    fn drop(&mut self) {
        self.0.sign_ins.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pressure {
    /// A sign-in request begins; it ends when the guard is dropped.
    pub fn sign_in(self: &Arc<Self>) -> SignIn {
        self.sign_ins.fetch_add(1, Ordering::Relaxed);
        SignIn(self.clone())
    }

    pub fn in_burst(&self) -> bool {
        self.sign_ins.load(Ordering::Relaxed) >= BURST_IN_FLIGHT
    }

    /// Waits while a burst of sign-ins is under way, at most `longest`; how long it
    /// waited.
    pub async fn yield_to_sign_ins(&self, longest: Duration) -> Duration {
        let began = Instant::now();
        while self.in_burst() && began.elapsed() < longest {
            tokio::time::sleep(RECHECK_EVERY.min(longest - began.elapsed())).await;
        }
        began.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waiting_work_waits_while_a_burst_lasts_and_never_past_its_bound() {
        let pressure = Arc::new(Pressure::default());
        // A few sign-ins are no burst: nothing waits.
        let few: Vec<SignIn> = (0..BURST_IN_FLIGHT - 1)
            .map(|_| pressure.sign_in())
            .collect();
        assert_eq!(
            pressure.yield_to_sign_ins(Duration::from_secs(1)).await,
            Duration::ZERO
        );
        // A burst: waiting work waits until it ends...
        let one_more = pressure.sign_in();
        let waiting = {
            let pressure = pressure.clone();
            tokio::spawn(async move { pressure.yield_to_sign_ins(Duration::from_secs(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(one_more);
        let waited = waiting.await.expect("the wait ends");
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_millis(400),
            "{waited:?}"
        );
        // ...or until its bound, if the burst goes on.
        let _again = pressure.sign_in();
        let waited = pressure.yield_to_sign_ins(Duration::from_secs(1)).await;
        assert_eq!(waited, Duration::from_secs(1));
        drop(few);
        assert!(!pressure.in_burst());
    }
}
