//! The clock pacing reads and waits on, in nanoseconds since it was made.
//! Where the CPU reports an invariant TSC (`constant_tsc` and `nonstop_tsc`)
//! it reads the TSC (through `quanta`): a few nanoseconds a read and no
//! system call. The ticks-to-nanoseconds scale starts from quanta's short
//! calibration and is refined against CLOCK_MONOTONIC every ~100 ms over an
//! ever longer baseline, so the rate error falls from tens of ppm to well
//! under one within a second; the clock stays continuous (only its slope
//! changes). Elsewhere it reads CLOCK_MONOTONIC. Waits sleep for the long part and spin with a pause
//! for the last stretch, since a sleep overshoots by tens of microseconds.

use std::cell::Cell;
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

/// Re-estimate the TSC scale about this often.
const RECALIBRATE_EVERY: Duration = Duration::from_millis(100);

/// One straight piece of the TSC clock: from `tsc` on, time is `value` plus
/// ticks times `scale`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    tsc: u64,
    value: f64,
    scale: f64,
}

#[derive(Debug, Clone)]
struct TscClock {
    clock: quanta::Clock,
    origin_tsc: u64,
    origin: Instant,
    recalibrate_ticks: u64,
    segment: Cell<Segment>,
}

impl TscClock {
    fn new() -> Self {
        let clock = quanta::Clock::new();
        let origin = Instant::now();
        let origin_tsc = clock.raw();
        // quanta's calibration: nanoseconds for a million ticks.
        let scale = clock.delta_as_nanos(0, 1_000_000) as f64 / 1e6;
        TscClock {
            recalibrate_ticks: (RECALIBRATE_EVERY.as_nanos() as f64 / scale) as u64,
            clock,
            origin_tsc,
            origin,
            segment: Cell::new(Segment {
                tsc: origin_tsc,
                value: 0.0,
                scale,
            }),
        }
    }

    fn now(&self) -> u64 {
        let raw = self.clock.raw();
        let mut segment = self.segment.get();
        let ticks = raw.wrapping_sub(segment.tsc);
        if ticks > self.recalibrate_ticks {
            // Continue the current piece to `raw`, then bend the slope to
            // the scale measured over the whole baseline.
            let value = segment.value + ticks as f64 * segment.scale;
            let elapsed = self.origin.elapsed().as_nanos() as f64;
            let scale = elapsed / raw.wrapping_sub(self.origin_tsc) as f64;
            segment = Segment {
                tsc: raw,
                value,
                scale,
            };
            self.segment.set(segment);
        }
        (segment.value + raw.wrapping_sub(segment.tsc) as f64 * segment.scale) as u64
    }
}

#[derive(Debug, Clone)]
enum Source {
    Tsc(TscClock),
    Monotonic { base: Instant },
}

/// What pacing reads and waits on: nanoseconds on a monotonic clock.
/// [`SystemClock`] is the host's; tests drive pacing with a clock of their
/// own that moves only when waited on.
pub trait Clock: Send {
    /// Nanoseconds since the clock's start.
    fn now(&self) -> u64;

    /// Returns at or after `deadline` (nanoseconds on this clock).
    fn wait_until(&self, deadline: u64);
}

/// The host's clock: the invariant TSC where there is one, else
/// CLOCK_MONOTONIC, with a sleep-then-spin wait.
#[derive(Debug, Clone)]
pub struct SystemClock {
    source: Source,
    spin_threshold: Duration,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new(ClockChoice::Auto, DEFAULT_SPIN_THRESHOLD)
    }
}

impl SystemClock {
    /// A clock starting now, spinning for the last `spin_threshold` of a
    /// wait. The source chosen is logged.
    pub fn new(choice: ClockChoice, spin_threshold: Duration) -> Self {
        let source = if choice == ClockChoice::Auto && cpu_has_invariant_tsc() {
            tracing::info!("pacing clock: invariant TSC, calibrated against CLOCK_MONOTONIC");
            Source::Tsc(TscClock::new())
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
        SystemClock {
            source,
            spin_threshold,
        }
    }

    /// The source this clock reads.
    pub fn source(&self) -> ClockSource {
        match self.source {
            Source::Tsc(_) => ClockSource::Tsc,
            Source::Monotonic { .. } => ClockSource::Monotonic,
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        match &self.source {
            Source::Tsc(tsc) => tsc.now(),
            Source::Monotonic { base } => base.elapsed().as_nanos() as u64,
        }
    }

    /// Sleeps for the long part of the wait and spins for the last
    /// `spin_threshold`, since a sleep overshoots by tens of microseconds.
    fn wait_until(&self, deadline: u64) {
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
            let clock = SystemClock::new(choice, DEFAULT_SPIN_THRESHOLD);
            for wait in [0u64, 10_000, 300_000] {
                let deadline = clock.now() + wait;
                clock.wait_until(deadline);
                assert!(clock.now() >= deadline);
            }
        }
    }

    #[test]
    fn the_tsc_scale_converges_on_monotonic() {
        if !cpu_has_invariant_tsc() {
            return;
        }
        let tsc = TscClock::new();
        // After a few recalibrations the scale matches CLOCK_MONOTONIC to
        // within 20 ppm over the next stretch.
        std::thread::sleep(Duration::from_millis(350));
        tsc.now();
        let (start, wall) = (tsc.now(), Instant::now());
        std::thread::sleep(Duration::from_millis(250));
        let (elapsed, wall) = ((tsc.now() - start) as f64, wall.elapsed().as_nanos() as f64);
        assert!((elapsed / wall - 1.0).abs() < 20e-6, "{elapsed} ns vs {wall} ns");
    }

    #[test]
    fn the_tsc_is_used_where_it_is_invariant_and_agrees_with_monotonic() {
        let clock = SystemClock::default();
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
