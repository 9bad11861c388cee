//! The clock pacing reads and waits on: CLOCK_MONOTONIC through
//! `std::time::Instant`, in nanoseconds since the clock was made. Waits
//! sleep for the long part and spin for the last stretch, since a sleep
//! overshoots by tens of microseconds.

use std::time::{Duration, Instant};

/// Spin instead of sleeping for waits shorter than this, by default.
pub const DEFAULT_SPIN_THRESHOLD: Duration = Duration::from_micros(100);

/// A monotonic nanosecond clock with a sleep-then-spin wait.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    base: Instant,
    spin_threshold: Duration,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new(DEFAULT_SPIN_THRESHOLD)
    }
}

impl MonotonicClock {
    /// A clock starting now, spinning for the last `spin_threshold` of a wait.
    pub fn new(spin_threshold: Duration) -> Self {
        MonotonicClock {
            base: Instant::now(),
            spin_threshold,
        }
    }

    /// Nanoseconds since the clock was made.
    pub fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Returns at or after `deadline` (nanoseconds on this clock).
    pub fn wait_until(&self, deadline: u64) {
        let deadline = self.base + Duration::from_nanos(deadline);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let left = deadline - now;
            if left > self.spin_threshold {
                std::thread::sleep(left - self.spin_threshold);
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_reach_the_deadline() {
        let clock = MonotonicClock::default();
        for wait in [0u64, 10_000, 300_000] {
            let deadline = clock.now() + wait;
            clock.wait_until(deadline);
            assert!(clock.now() >= deadline);
        }
    }
}
