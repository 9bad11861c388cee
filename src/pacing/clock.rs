//! The clock pacing reads and waits on, in nanoseconds since it was made.
//! Where the CPU reports an invariant TSC (`constant_tsc` and `nonstop_tsc`)
//! it reads the TSC (through `quanta`, calibrated against CLOCK_MONOTONIC):
//! a few nanoseconds a read and no system call. Elsewhere it reads
//! CLOCK_MONOTONIC. Waits sleep for the long part and spin with a pause
//! for the last stretch, since a sleep overshoots by tens of microseconds.

use std::time::{Duration, Instant};

/// Spin instead of sleeping for waits shorter than this, by default.
pub const DEFAULT_SPIN_THRESHOLD: Duration = Duration::from_micros(100);

/// Which time source a clock reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSource {
    /// The CPU's invariant time-stamp counter.
    Tsc,
    /// CLOCK_MONOTONIC.
    Monotonic,
}

/// Which source to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClockChoice {
    /// The TSC where it is invariant, CLOCK_MONOTONIC elsewhere.
    #[default]
    Auto,
    /// CLOCK_MONOTONIC always.
    Monotonic,
}

/// Whether /proc/cpuinfo lists both `constant_tsc` and `nonstop_tsc`.
pub fn cpu_has_invariant_tsc() -> bool {
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|flags| {
            let has = |f: &str| flags.split_whitespace().any(|w| w == f);
            has("constant_tsc") && has("nonstop_tsc")
        })
}

#[derive(Debug, Clone)]
enum Source {
    Tsc { clock: quanta::Clock, base: u64 },
    Monotonic { base: Instant },
}

/// A nanosecond clock with a sleep-then-spin wait.
#[derive(Debug, Clone)]
pub struct Clock {
    source: Source,
    spin_threshold: Duration,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new(ClockChoice::Auto, DEFAULT_SPIN_THRESHOLD)
    }
}

impl Clock {
    /// A clock starting now, spinning for the last `spin_threshold` of a
    /// wait. The source chosen is logged.
    pub fn new(choice: ClockChoice, spin_threshold: Duration) -> Self {
        let source = if choice == ClockChoice::Auto && cpu_has_invariant_tsc() {
            let clock = quanta::Clock::new();
            let base = clock.raw();
            tracing::info!("pacing clock: invariant TSC, calibrated against CLOCK_MONOTONIC");
            Source::Tsc { clock, base }
        } else {
            tracing::info!(
                "pacing clock: CLOCK_MONOTONIC ({})",
                if choice == ClockChoice::Monotonic {
                    "as asked"
                } else {
                    "no invariant TSC (constant_tsc and nonstop_tsc)"
                }
            );
            Source::Monotonic { base: Instant::now() }
        };
        Clock {
            source,
            spin_threshold,
        }
    }

    /// The source this clock reads.
    pub fn source(&self) -> ClockSource {
        match self.source {
            Source::Tsc { .. } => ClockSource::Tsc,
            Source::Monotonic { .. } => ClockSource::Monotonic,
        }
    }

    /// Nanoseconds since the clock was made.
    pub fn now(&self) -> u64 {
        match &self.source {
            Source::Tsc { clock, base } => clock.delta_as_nanos(*base, clock.raw()),
            Source::Monotonic { base } => base.elapsed().as_nanos() as u64,
        }
    }

    /// Returns at or after `deadline` (nanoseconds on this clock).
    pub fn wait_until(&self, deadline: u64) {
        let spin = self.spin_threshold.as_nanos() as u64;
        loop {
            let now = self.now();
            if now >= deadline {
                return;
            }
            let left = deadline - now;
            if left > spin {
                std::thread::sleep(Duration::from_nanos(left - spin));
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
    fn waits_reach_the_deadline_on_every_source() {
        for choice in [ClockChoice::Auto, ClockChoice::Monotonic] {
            let clock = Clock::new(choice, DEFAULT_SPIN_THRESHOLD);
            for wait in [0u64, 10_000, 300_000] {
                let deadline = clock.now() + wait;
                clock.wait_until(deadline);
                assert!(clock.now() >= deadline);
            }
        }
    }

    #[test]
    fn the_tsc_is_used_where_it_is_invariant_and_agrees_with_monotonic() {
        let clock = Clock::default();
        let expected = if cpu_has_invariant_tsc() {
            ClockSource::Tsc
        } else {
            ClockSource::Monotonic
        };
        assert_eq!(clock.source(), expected);
        // Over 50 ms the two clocks agree to well within 1 %.
        let (start, wall) = (clock.now(), Instant::now());
        std::thread::sleep(Duration::from_millis(50));
        let (elapsed, wall) = ((clock.now() - start) as f64, wall.elapsed().as_nanos() as f64);
        assert!((elapsed / wall - 1.0).abs() < 0.01, "{elapsed} ns vs {wall} ns");
    }
}
