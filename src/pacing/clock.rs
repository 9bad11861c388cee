//! The clock pacing reads and waits on, in nanoseconds since it was made.
//! Where the CPU reports an invariant TSC (`constant_tsc` and `nonstop_tsc`)
//! it reads the TSC (through `quanta`): a few nanoseconds a read and no
//! system call. The ticks-to-nanoseconds scale starts from quanta's short
//! calibration and is refined against CLOCK_MONOTONIC (after 10, 20, 40 and
//! 80 ms, then every ~100 ms) over an
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
fn cpu_has_invariant_tsc() -> bool {
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

/// Re-estimate the TSC scale about this often, once the clock has run
/// this long.
const RECALIBRATE_EVERY: Duration = Duration::from_millis(100);
/// The first re-estimate, after which the interval doubles up to
/// [`RECALIBRATE_EVERY`]: quanta's short start-up calibration can be some
/// hundred ppm off, and what the clock gains meanwhile stays in it (it is
/// continuous), so the first stretch is kept short.
const FIRST_RECALIBRATION: Duration = Duration::from_millis(10);

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
    /// CLOCK_MONOTONIC at `origin_tsc`, in ns after `origin`.
    origin_offset: f64,
    /// Ticks of the current piece after which the scale is re-estimated.
    recalibrate_ticks: Cell<u64>,
    /// Ticks of [`RECALIBRATE_EVERY`], the longest piece.
    longest_ticks: u64,
    segment: Cell<Segment>,
}

/// Most time between the two CLOCK_MONOTONIC readings around a TSC reading
/// for the pair to calibrate with: wider means the thread was interrupted
/// (on a VM, its vCPU preempted), which would skew the scale.
const MAX_BRACKET: Duration = Duration::from_micros(1);

/// A reading of `read` and the CLOCK_MONOTONIC time it was taken at (ns
/// after `origin`): `read` called between two monotonic readings at most
/// [`MAX_BRACKET`] apart, paired with their midpoint. `None` when four
/// tries were all interrupted.
fn paired_reading<T>(origin: Instant, mut read: impl FnMut() -> T) -> Option<(T, f64)> {
    (0..4).find_map(|_| {
        let before = origin.elapsed();
        let value = read();
        let after = origin.elapsed();
        let mid = (before.as_nanos() + after.as_nanos()) as f64 / 2.0;
        (after - before <= MAX_BRACKET).then_some((value, mid))
    })
}

impl TscClock {
    fn new() -> Self {
        let clock = quanta::Clock::new();
        let origin = Instant::now();
        let (origin_tsc, origin_offset) = paired_reading(origin, || clock.raw())
            .unwrap_or_else(|| (clock.raw(), origin.elapsed().as_nanos() as f64));
        // quanta's calibration: nanoseconds for a million ticks.
        let scale = clock.delta_as_nanos(0, 1_000_000) as f64 / 1e6;
        TscClock {
            recalibrate_ticks: Cell::new((FIRST_RECALIBRATION.as_nanos() as f64 / scale) as u64),
            longest_ticks: (RECALIBRATE_EVERY.as_nanos() as f64 / scale) as u64,
            clock,
            origin_tsc,
            origin,
            origin_offset,
            segment: Cell::new(Segment {
                tsc: origin_tsc,
                value: 0.0,
                scale,
            }),
        }
    }

    fn now(&self) -> u64 {
        let raw = self.clock.raw();
        let segment = self.segment.get();
        // A TSC read on a core slightly behind the last one counts as no
        // time, not as a wrap.
        let ticks = raw.saturating_sub(segment.tsc);
        if ticks > self.recalibrate_ticks.get() {
            if let Some(bent) = self.recalibrated(segment) {
                self.segment.set(bent);
                let next = (self.recalibrate_ticks.get() * 2).min(self.longest_ticks);
                self.recalibrate_ticks.set(next);
                // Its start is a reading taken after `raw`: the time now.
                return bent.value as u64;
            }
        }
        (segment.value + ticks as f64 * segment.scale) as u64
    }

    /// The current piece continued to a fresh paired reading, its slope
    /// bent to the scale measured over the whole baseline; `None` (try
    /// again on the next reading) when the pairing was interrupted.
    fn recalibrated(&self, segment: Segment) -> Option<Segment> {
        let (raw, monotonic) = paired_reading(self.origin, || self.clock.raw())?;
        let value = segment.value + raw.saturating_sub(segment.tsc) as f64 * segment.scale;
        let scale = (monotonic - self.origin_offset) / raw.saturating_sub(self.origin_tsc).max(1) as f64;
        Some(Segment {
            tsc: raw,
            value,
            scale,
        })
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
    /// How long before a deadline a wait stops sleeping and spins (ns):
    /// the spin threshold, or more where sleeps here overshoot by more.
    margin: Cell<u64>,
}

/// Most a wait spins for, however late this host's sleeps wake.
const MAX_MARGIN: Duration = Duration::from_millis(2);

/// The spin margin after a sleep that overshot by `overshoot` ns: at once
/// a quarter above a larger overshoot, else decaying by 1/1024 a sleep
/// towards `floor`, never above [`MAX_MARGIN`]. A decaying maximum: a host
/// whose sleeps wake late (a busy VM: 80 to 200 us late is common) is
/// learned from the first late wake, and forgotten slowly.
fn next_margin(margin: u64, overshoot: u64, floor: u64) -> u64 {
    let decayed = margin - margin / 1024;
    let wanted = overshoot.saturating_add(overshoot / 4);
    wanted.max(decayed).min(MAX_MARGIN.as_nanos() as u64).max(floor)
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
            margin: Cell::new(spin_threshold.as_nanos() as u64),
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

    /// Sleeps for the long part of the wait and spins for the last stretch
    /// (at least `spin_threshold`, more where this host's sleeps have been
    /// waking later than that), since a sleep overshoots: a wake past the
    /// deadline is time the stream can only catch up at its burst rate.
    fn wait_until(&self, deadline: u64) {
        let mut first = true;
        loop {
            let now = self.now();
            if now >= deadline {
                return;
            }
            let left = deadline - now;
            let margin = self.margin.get();
            let floor = self.spin_threshold.as_nanos() as u64;
            if first && left <= margin {
                // A wait spun whole: no overshoot to learn, so the margin
                // decays, or one stall would keep every later wait spinning.
                self.margin.set(next_margin(margin, 0, floor));
            }
            first = false;
            if left > margin {
                let asked = left - margin;
                std::thread::sleep(Duration::from_nanos(asked));
                let overshoot = self.now().saturating_sub(now + asked);
                self.margin.set(next_margin(margin, overshoot, floor));
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
    fn the_spin_margin_learns_late_wakes_at_once_and_forgets_them_slowly() {
        let floor = 100_000;
        // Sleeps on time: the spin threshold.
        assert_eq!(next_margin(floor, 20_000, floor), floor);
        // A wake 200 us late: a quarter more than that at once.
        let learned = next_margin(floor, 200_000, floor);
        assert_eq!(learned, 250_000);
        // Forgotten by 1/1024 a sleep, back to the floor in time.
        let after_100 = (0..100).fold(learned, |m, _| next_margin(m, 0, floor));
        assert!(after_100 < learned && after_100 > 200_000, "{after_100}");
        let after_10000 = (0..10_000).fold(learned, |m, _| next_margin(m, 0, floor));
        assert_eq!(after_10000, floor);
        // A stall of many milliseconds spins no more than MAX_MARGIN.
        assert_eq!(
            next_margin(floor, 50_000_000, floor),
            MAX_MARGIN.as_nanos() as u64
        );
    }

    #[test]
    fn the_tsc_scale_converges_on_monotonic() {
        // The calibration itself, on whatever counter quanta reads here
        // (the TSC, invariant or not; elsewhere a monotonic counter).
        let tsc = TscClock::new();
        let origin = Instant::now();
        // Both clocks read together: a reading of ours between two of
        // CLOCK_MONOTONIC close together (this VM's host can stop a vCPU
        // for milliseconds between any two instructions).
        let together = || loop {
            if let Some((ours, monotonic)) = paired_reading(origin, || tsc.now()) {
                return (ours as f64, monotonic);
            }
        };
        // After a few recalibrations the scale matches CLOCK_MONOTONIC to
        // within 20 ppm over the next stretch.
        std::thread::sleep(Duration::from_millis(350));
        tsc.now();
        let (start, wall_start) = together();
        std::thread::sleep(Duration::from_millis(250));
        let (end, wall_end) = together();
        let (elapsed, wall) = (end - start, wall_end - wall_start);
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
