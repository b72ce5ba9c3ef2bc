//! A small circuit breaker: after a failed Redis call, skip Redis for a while, so requests
//! do not each wait out a timeout while Redis is down.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// Closed (0) or open until a moment, in milliseconds since `origin` plus one (so that 0
/// stays free to mean closed).
pub struct Breaker {
    origin: Instant,
    open_until: AtomicU64,
    /// How long Redis is skipped after a failure.
    open_for: Duration,
    /// How long one probing call may take before others probe again.
    probe_for: Duration,
}

impl Breaker {
    pub fn new(open_for: Duration, probe_for: Duration) -> Self {
        Self {
            origin: Instant::now(),
            open_until: AtomicU64::new(0),
            open_for,
            probe_for,
        }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64 + 1
    }

    /// May a call go to Redis now? When the open period is over, exactly one caller is let
    /// through as a probe; the others keep skipping until it reports (or its time is up).
    pub fn allow(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = self.now();
        if now < until {
            return false;
        }
        let probe_until = now + self.probe_for.as_millis() as u64;
        self.open_until
            .compare_exchange(until, probe_until, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn succeeded(&self) {
        if self.open_until.load(Ordering::Acquire) != 0 {
            self.open_until.store(0, Ordering::Release);
        }
    }

    pub fn failed(&self) {
        let until = self.now() + self.open_for.as_millis() as u64;
        self.open_until.store(until, Ordering::Release);
    }

    pub fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_on_failure_and_lets_one_probe_through_later() {
        let breaker = Breaker::new(Duration::from_millis(30), Duration::from_millis(1000));
        assert!(breaker.allow());
        breaker.failed();
        assert!(!breaker.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.allow(), "the probe");
        assert!(!breaker.allow(), "others wait for the probe");
        breaker.succeeded();
        assert!(breaker.allow());
        assert!(!breaker.is_open());
    }
}
