//! Waiting before the next attempt: exponential, jittered, capped. Used by
//! every loop that reconnects (the LISTEN session, the agent's stream) and by
//! the agent's answer retries.

use std::time::Duration;

/// Delays of `base * 2^failures`, each lengthened by up to half at random so
/// that many clients do not come back in step, and never above `cap`.
///
/// The base is never undercut: after a stream that worked, the first delay
/// honours the `retry:` the server asked for.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// The server asked for this reconnection delay (`retry:`).
    pub fn set_base(&mut self, base: Duration) {
        self.base = base.min(self.cap);
    }

    /// Something worked: start from the base again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay before the next attempt; each call doubles the next one.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        let delay = self.base.saturating_mul(factor).min(self.cap);
        jitter(delay, 0.5).min(self.cap)
    }
}

/// `delay` lengthened by a random share of up to `spread` of itself.
pub fn jitter(delay: Duration, spread: f64) -> Duration {
    let share: f64 = rand::random_range(0.0..=spread);
    delay.saturating_add(delay.mul_f64(share))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(30);

    #[test]
    fn doubles_from_the_base_never_below_it_never_above_the_cap() {
        let base = Duration::from_secs(2);
        let mut backoff = Backoff::new(base, CAP);
        let mut floor = base;
        for _ in 0..10 {
            let delay = backoff.next_delay();
            assert!(delay >= floor.min(CAP), "{delay:?} < {floor:?}");
            assert!(delay <= CAP);
            floor *= 2;
        }
        assert_eq!(backoff.next_delay(), CAP);
        backoff.reset();
        assert!(backoff.next_delay() <= base.mul_f64(1.5));
    }

    #[test]
    fn the_server_retry_becomes_the_base() {
        let mut backoff = Backoff::new(Duration::from_secs(1), CAP);
        backoff.set_base(Duration::from_millis(100));
        assert!(backoff.next_delay() <= Duration::from_millis(150));
        backoff.set_base(Duration::from_secs(600));
        assert_eq!(backoff.next_delay(), CAP);
    }
}
