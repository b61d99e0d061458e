//! Latency summaries.

use std::time::Duration;

use serde_json::{Value, json};

/// p50, p99 and max of `samples` in milliseconds (sorts in place).
pub fn summary(samples: &mut [Duration]) -> Value {
    samples.sort_unstable();
    let at = |q: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        ms(samples[index])
    };
    json!({
        "p50_ms": at(0.50),
        "p99_ms": at(0.99),
        "max_ms": samples.last().map_or(0.0, |d| ms(*d)),
    })
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// `part` over `whole`, to two places (a `whole` of 0 counts as a tiny one).
pub fn ratio(part: f64, whole: f64) -> f64 {
    (part / whole.max(1e-9) * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = summary(&mut samples);
        assert_eq!(s["p50_ms"], 50.0);
        assert_eq!(s["p99_ms"], 99.0);
        assert_eq!(s["max_ms"], 100.0);
    }

    #[test]
    fn a_ratio_is_rounded_to_two_places_and_stays_finite_over_nothing() {
        assert_eq!(ratio(3791.0, 4000.0), 0.95);
        assert_eq!(ratio(5046.0, 6310.0), 0.8);
        assert!(ratio(1.0, 0.0).is_finite());
    }
}
