//! WATI's plan limit: a sliding 10-second window over the calls it let through.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back the plan limit looks.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Arrival times of the calls admitted in the last [`WINDOW`], oldest first.
#[derive(Debug, Default)]
pub(crate) struct Window {
    admitted: VecDeque<Instant>,
}

impl Window {
    /// Admits a call arriving at `now` unless the window `(now - 10 s, now]` already holds
    /// `limit` admitted calls; then answers how long until the oldest of them leaves it.
    /// A `limit` of 0 admits everything and remembers nothing, so an unlimited sandbox
    /// does not grow a queue it never reads.
    pub(crate) fn admit(&mut self, now: Instant, limit: u32) -> Result<(), Duration> {
        if limit == 0 {
            return Ok(());
        }
        // A call exactly 10 s old has left `(now - 10 s, now]`.
        while let Some(&oldest) = self.admitted.front() {
            if now.saturating_duration_since(oldest) < WINDOW {
                break;
            }
            self.admitted.pop_front();
        }
        if let Some(&oldest) = self.admitted.front()
            && self.admitted.len() >= limit as usize
        {
            return Err(WINDOW.saturating_sub(now.saturating_duration_since(oldest)));
        }
        self.admitted.push_back(now);
        Ok(())
    }
}

/// `Retry-After` for a wait: whole seconds rounded up, so a caller that obeys it is
/// admitted, and at least 1, since 0 would invite an immediate retry.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_millis().div_ceil(1000) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn the_window_admits_up_to_the_limit_then_says_when_the_oldest_leaves() {
        let base = Instant::now();
        let mut window = Window::default();
        assert_eq!(window.admit(at(base, 0), 3), Ok(()));
        assert_eq!(window.admit(at(base, 1_000), 3), Ok(()));
        assert_eq!(window.admit(at(base, 2_000), 3), Ok(()));
        assert_eq!(
            window.admit(at(base, 2_500), 3),
            Err(Duration::from_millis(7_500))
        );
        // Refused calls take no place in the window.
        assert_eq!(
            window.admit(at(base, 9_999), 3),
            Err(Duration::from_millis(1))
        );
        // At exactly 10 s the first call has left.
        assert_eq!(window.admit(at(base, 10_000), 3), Ok(()));
        assert_eq!(
            window.admit(at(base, 10_000), 3),
            Err(Duration::from_millis(1_000))
        );
    }

    #[test]
    fn a_limit_of_zero_admits_everything_and_remembers_nothing() {
        let base = Instant::now();
        let mut window = Window::default();
        for ms in 0..100 {
            assert_eq!(window.admit(at(base, ms), 0), Ok(()));
        }
        assert!(window.admitted.is_empty());
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(7_500)), 8);
        assert_eq!(retry_after_secs(WINDOW), 10);
    }
}
