//! When to try again after a transient failure: exponential backoff with jitter, or
//! WATI's `Retry-After` when it gives one. Whether to try again at all (not past the
//! code's expiry) is the delivery policy's call (`delivery::step`), which asks the
//! schedule for the next delay.

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
        Self::build(config, true)
    }

    /// The same schedule without jitter, so that a test can name each delay.
    #[cfg(test)]
    pub(crate) fn steady(config: &RetryConfig) -> Self {
        Self::build(config, false)
    }

    fn build(config: &RetryConfig, jitter: bool) -> Self {
        let mut builder = ExponentialBuilder::new()
            .with_min_delay(config.base_delay)
            .with_max_delay(config.max_delay)
            .with_factor(2.0)
            .without_max_times();
        if jitter {
            builder = builder.with_jitter();
        }
        Self {
            backoff: builder.build(),
            max_delay: config.max_delay,
        }
    }

    /// The wait before the next attempt: WATI's `retry_after` where it gave one, else
    /// the next step of the backoff.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let backoff = self.backoff.next().unwrap_or(self.max_delay);
        // WATI's own wait wins when it gives one; the schedule still advances, so a
        // later attempt without one does not fall back to the shortest wait.
        retry_after.unwrap_or(backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RetryConfig {
        RetryConfig {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        }
    }

    #[test]
    fn delays_grow_and_stay_capped() {
        let mut s = RetrySchedule::new(&config());
        let delays: Vec<Duration> = (0..8).map(|_| s.next_delay(None)).collect();
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
        let mut s = RetrySchedule::new(&config());
        let delay = s.next_delay(Some(Duration::from_secs(2)));
        assert_eq!(delay, Duration::from_secs(2));
    }

    /// A delay in whole milliseconds: the backoff multiplies in `f32`, so a doubled
    /// delay can be a few nanoseconds off.
    fn ms(delay: Duration) -> u64 {
        (delay.as_secs_f64() * 1000.0).round() as u64
    }

    #[test]
    fn retry_after_still_advances_the_backoff() {
        let mut s = RetrySchedule::steady(&config());
        assert_eq!(ms(s.next_delay(None)), 100);
        assert_eq!(ms(s.next_delay(Some(Duration::from_millis(10)))), 10);
        assert_eq!(ms(s.next_delay(None)), 400);
    }

    #[test]
    fn the_steady_schedule_doubles_up_to_the_cap() {
        let mut s = RetrySchedule::steady(&config());
        let delays: Vec<u64> = (0..7).map(|_| ms(s.next_delay(None))).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
    }
}
