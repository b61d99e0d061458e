//! Meta's throughput limit of one sending number: at most `rate` messages in any 1 s.
//!
//! A message counts at its call's arrival at the sandbox (the instant the plan limit
//! admitted the call, which is the call log's `receivedAtMs`), so a sender's pacing is
//! judged as it reached WATI, not by how long the sandbox took to read the body. Calls
//! are judged when they are answered, which is not always in arrival order (a big batch
//! takes longer to read than a small one behind it), so a call judged late still counts
//! at its own arrival, and is held to every 1 s window that holds that instant: the
//! windows before it and the ones that reach into calls already judged after it.
//!
//! Only messages taken count: one refused with 130429 takes no place, as Meta keeps
//! answering 130429 "until you are within your allowed level again".

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The throughput window.
pub const SECOND: Duration = Duration::from_secs(1);
/// How long after its arrival a call is still judged against every message around it;
/// older messages are forgotten. Only a call held longer (a scripted hang) meets a
/// window with some of its neighbours already forgotten.
const LATE: Duration = Duration::from_secs(60);

/// The arrival instants of the messages one number took, oldest first (several equal
/// ones for a call's recipients).
#[derive(Debug, Default)]
pub(crate) struct Throughput {
    taken: VecDeque<Instant>,
}

impl Throughput {
    /// Takes as many of `wanted` messages arriving `at` as every 1 s window holding `at`
    /// has room for under `rate`; answers how many. A `rate` of 0 takes them all and
    /// remembers nothing. `now` is the clock, for forgetting.
    ///
    /// A window is `(end - 1 s, end]`: a message exactly 1 s older than another is no
    /// longer in its window. So after taking `rate` messages, the next is taken once the
    /// oldest of them is 1 s old.
    pub(crate) fn take(&mut self, at: Instant, wanted: usize, rate: u32, now: Instant) -> usize {
        if rate == 0 {
            return wanted;
        }
        while let Some(&oldest) = self.taken.front() {
            if now.saturating_duration_since(oldest) <= SECOND + LATE {
                break;
            }
            self.taken.pop_front();
        }
        let room = (rate as usize).saturating_sub(self.busiest_window_holding(at));
        let taken = wanted.min(room);
        let position = self.taken.partition_point(|&t| t <= at);
        let later = self.taken.split_off(position);
        self.taken.extend(std::iter::repeat_n(at, taken));
        self.taken.extend(later);
        taken
    }

    /// The most messages in one window `(end - 1 s, end]` that holds `at`. The count
    /// only rises where a window's end reaches a message, so the candidates are the
    /// window ending at `at` and those ending at each later message less than 1 s after.
    fn busiest_window_holding(&self, at: Instant) -> usize {
        let mut busiest = self.in_window_ending(at);
        let mut next = self.taken.partition_point(|&t| t <= at);
        while let Some(&end) = self.taken.get(next) {
            if end.duration_since(at) >= SECOND {
                break;
            }
            busiest = busiest.max(self.in_window_ending(end));
            next = self.taken.partition_point(|&t| t <= end);
        }
        busiest
    }

    /// Messages in `(end - 1 s, end]`.
    fn in_window_ending(&self, end: Instant) -> usize {
        let upto = self.taken.partition_point(|&t| t <= end);
        let before = end
            .checked_sub(SECOND)
            .map_or(0, |start| self.taken.partition_point(|&t| t <= start));
        upto - before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    /// A base far enough from the clock's start that a window before it exists.
    fn base() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn a_number_takes_its_rate_in_a_second_and_one_more_once_the_first_is_a_second_old() {
        let base = base();
        let mut window = Throughput::default();
        assert_eq!(window.take(at(base, 0), 2, 3, base), 2);
        assert_eq!(window.take(at(base, 400), 5, 3, base), 1);
        assert_eq!(window.take(at(base, 999), 1, 3, base), 0);
        // The two taken at 0 ms leave the window at exactly 1 s.
        assert_eq!(window.take(at(base, 1_000), 5, 3, base), 2);
        assert_eq!(window.take(at(base, 1_399), 1, 3, base), 0);
        assert_eq!(window.take(at(base, 1_400), 1, 3, base), 1);
    }

    #[test]
    fn refused_messages_take_no_place() {
        let base = base();
        let mut window = Throughput::default();
        assert_eq!(window.take(at(base, 0), 10, 2, base), 2);
        assert_eq!(window.take(at(base, 500), 10, 2, base), 0);
        assert_eq!(window.take(at(base, 1_000), 10, 2, base), 2);
    }

    #[test]
    fn a_call_judged_late_is_held_to_the_windows_that_reach_into_later_ones() {
        let base = base();
        let mut window = Throughput::default();
        // Judged first, though it arrived after the next one.
        assert_eq!(window.take(at(base, 600), 3, 4, base), 3);
        // Arrived at 0 ms: the window (−400, 600] would hold 3 + 2.
        assert_eq!(window.take(at(base, 0), 2, 4, base), 1);
        // Arrived at −500 ms: its windows end before 500 ms, before the later call.
        let early = base - Duration::from_millis(500);
        assert_eq!(window.take(early, 4, 4, base), 3);
        assert_eq!(window.taken.len(), 7);
        assert!(window.taken.iter().is_sorted(), "kept in arrival order");
    }

    #[test]
    fn no_window_ever_holds_more_than_the_rate_whatever_the_order_of_judging() {
        let base = base();
        let mut window = Throughput::default();
        // Arrivals every 70 ms for 3 s, judged in a shuffled order, 3 messages each.
        let mut arrivals: Vec<u64> = (0..43).map(|i| i * 70).collect();
        arrivals.sort_by_key(|ms| (ms * 7_919) % 1_009);
        for ms in arrivals {
            window.take(at(base, ms), 3, 10, base);
        }
        let taken: Vec<Instant> = window.taken.iter().copied().collect();
        for (i, &start) in taken.iter().enumerate() {
            let within = taken[i..]
                .iter()
                .take_while(|&&t| t.duration_since(start) < SECOND)
                .count();
            assert!(within <= 10, "{within} messages within 1 s");
        }
        assert!(taken.len() >= 25, "the rate is used: {} taken", taken.len());
    }

    #[test]
    fn a_rate_of_zero_takes_everything_and_remembers_nothing() {
        let base = base();
        let mut window = Throughput::default();
        assert_eq!(window.take(base, 10_000, 0, base), 10_000);
        assert!(window.taken.is_empty());
    }

    #[test]
    fn messages_a_minute_old_are_forgotten() {
        let base = base();
        let mut window = Throughput::default();
        window.take(base, 5, 10, base);
        window.take(at(base, 30_000), 5, 10, at(base, 30_000));
        assert_eq!(window.taken.len(), 10);
        window.take(at(base, 61_500), 1, 10, at(base, 61_500));
        assert_eq!(window.taken.len(), 6);
    }
}
