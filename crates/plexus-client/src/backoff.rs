//! Reconnect delays: exponential backoff with jitter, as a pure function of the attempt number,
//! the previous delay and a random source (so it is tested with a seeded generator).

use std::time::Duration;

/// How the random part of a reconnect delay is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[min_delay, min(max_delay, min_delay * 2^attempt)]`: the exponential cap
    /// grows, and every delay below it is equally likely ("full jitter").
    Full,
    /// Uniform in `[min_delay, max(previous_delay, min_delay) * 3]`, capped at `max_delay`
    /// ("decorrelated jitter"): spreads a crowd of clients further apart than full jitter.
    Decorrelated,
}

/// Reconnect backoff: the delays between consecutive failed connection attempts.
///
/// Every delay is within `[min_delay, max_delay]`. The attempt count resets after a connection
/// that got as far as `Connected`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The smallest delay (default 500 ms).
    pub min_delay: Duration,
    /// The largest delay (default 20 s).
    pub max_delay: Duration,
    pub jitter: Jitter,
    /// Consecutive failed attempts after which the client stops and emits
    /// [`crate::Event::GaveUp`]; `None` (the default) retries forever.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            jitter: Jitter::Full,
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The delay before reconnect attempt `attempt` (1 for the first retry after a failure or a
    /// lost connection), given the previous delay (zero at first).
    pub fn delay(&self, attempt: u32, previous: Duration, rng: &mut fastrand::Rng) -> Duration {
        let min = nanos(self.min_delay);
        let max = nanos(self.max_delay).max(min);
        let high = match self.jitter {
            Jitter::Full => {
                let exp = attempt.min(63);
                min.saturating_mul(1u64 << exp).min(max)
            }
            Jitter::Decorrelated => nanos(previous).max(min).saturating_mul(3).min(max),
        };
        Duration::from_nanos(rng.u64(min..=high))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(jitter: Jitter) -> Backoff {
        Backoff {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            jitter,
            max_attempts: None,
        }
    }

    #[test]
    fn every_delay_is_within_min_and_max() {
        for jitter in [Jitter::Full, Jitter::Decorrelated] {
            let b = backoff(jitter);
            let mut rng = fastrand::Rng::with_seed(7);
            let mut prev = Duration::ZERO;
            for attempt in 1..=10_000u32 {
                let d = b.delay(attempt, prev, &mut rng);
                assert!(
                    d >= b.min_delay && d <= b.max_delay,
                    "{jitter:?} {attempt}: {d:?}"
                );
                prev = d;
            }
        }
    }

    #[test]
    fn full_jitter_cap_doubles_per_attempt() {
        let b = backoff(Jitter::Full);
        let mut rng = fastrand::Rng::with_seed(1);
        for attempt in 1..=8u32 {
            let cap = (Duration::from_millis(100) * 2u32.pow(attempt)).min(b.max_delay);
            let mut max_seen = Duration::ZERO;
            for _ in 0..2_000 {
                let d = b.delay(attempt, Duration::ZERO, &mut rng);
                assert!(d <= cap, "attempt {attempt}: {d:?} > {cap:?}");
                max_seen = max_seen.max(d);
            }
            // The draws spread over the range: the largest of 2000 is in the top tenth.
            let spread = cap - b.min_delay;
            assert!(
                max_seen >= cap - spread / 10,
                "attempt {attempt}: {max_seen:?}"
            );
        }
        // Even the first retry is spread (over [min, 2 min]), so clients that lost the same
        // server do not all come back at the same instant.
        let first: std::collections::HashSet<_> = (0..100)
            .map(|_| b.delay(1, Duration::ZERO, &mut rng))
            .collect();
        assert!(first.len() > 50);
    }

    #[test]
    fn decorrelated_stays_below_three_times_the_previous_delay() {
        let b = backoff(Jitter::Decorrelated);
        let mut rng = fastrand::Rng::with_seed(42);
        let mut prev = Duration::ZERO;
        for attempt in 1..=1_000u32 {
            let d = b.delay(attempt, prev, &mut rng);
            assert!(
                d <= prev.max(b.min_delay) * 3,
                "{attempt}: {d:?} after {prev:?}"
            );
            prev = d;
        }
    }

    #[test]
    fn same_seed_same_delays() {
        let b = backoff(Jitter::Decorrelated);
        let run = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut prev = Duration::ZERO;
            (1..20)
                .map(|a| {
                    prev = b.delay(a, prev, &mut rng);
                    prev
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn huge_attempts_and_inverted_bounds_do_not_overflow() {
        let mut b = backoff(Jitter::Full);
        let mut rng = fastrand::Rng::with_seed(0);
        assert!(b.delay(u32::MAX, Duration::MAX, &mut rng) <= b.max_delay);
        b.jitter = Jitter::Decorrelated;
        assert!(b.delay(u32::MAX, Duration::MAX, &mut rng) <= b.max_delay);
        b.max_delay = Duration::from_millis(1); // below min: min wins
        assert_eq!(
            b.delay(3, Duration::ZERO, &mut rng),
            Duration::from_millis(100)
        );
    }
}
