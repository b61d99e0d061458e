//! When to try again after a transient failure: exponential backoff with jitter, at
//! least as long as WATI's `Retry-After`, and never past the code's expiry.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use crate::config::RetryConfig;

/// The delays of one job's retries.
pub struct RetrySchedule {
    backoff: ExponentialBackoff,
    max_delay: Duration,
}

impl RetrySchedule {
    pub fn new(config: &RetryConfig) -> Self {
        let backoff = ExponentialBuilder::new()
            .with_min_delay(config.base_delay)
            .with_max_delay(config.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        Self {
            backoff,
            max_delay: config.max_delay,
        }
    }

    /// The wait before the next attempt, or `None` if that attempt would start at or
    /// after the deadline (`time_left` is what remains of the code's life).
    pub fn next_delay(
        &mut self,
        retry_after: Option<Duration>,
        time_left: Duration,
    ) -> Option<Duration> {
        let backoff = self.backoff.next().unwrap_or(self.max_delay);
        // WATI's own wait wins when it gives one; the schedule still advances.
        let delay = retry_after.unwrap_or(backoff);
        (delay < time_left).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> RetrySchedule {
        RetrySchedule::new(&RetryConfig {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        })
    }

    #[test]
    fn delays_grow_and_stay_capped() {
        let mut s = schedule();
        let delays: Vec<Duration> = (0..8)
            .map(|_| {
                s.next_delay(None, Duration::from_secs(3600))
                    .expect("time left")
            })
            .collect();
        assert!(delays[0] >= Duration::from_millis(100));
        assert!(delays[3] >= Duration::from_millis(800), "{delays:?}");
        // Jitter may add up to one more cap.
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(4)),
            "{delays:?}"
        );
    }

    #[test]
    fn retry_after_is_honoured() {
        let mut s = schedule();
        let delay = s
            .next_delay(Some(Duration::from_secs(2)), Duration::from_secs(60))
            .expect("time left");
        assert_eq!(delay, Duration::from_secs(2));
    }

    #[test]
    fn no_attempt_past_the_deadline() {
        let mut s = schedule();
        assert_eq!(
            s.next_delay(Some(Duration::from_secs(5)), Duration::from_secs(4)),
            None
        );
        assert_eq!(s.next_delay(None, Duration::ZERO), None);
    }
}
