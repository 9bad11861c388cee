//! spead2's rate limiter, exact over time. Rate counts SPEAD packet bytes.
//! Bytes accumulate with the time they are worth at their heap's rate; when
//! the next packet would take the burst past `burst_size` bytes, the burst
//! ends and two deadlines move: the standard one by the burst's time and a
//! burst one by that time divided by `burst_rate_ratio`. (spead2 lets the
//! packet that crosses `burst_size` join the burst; ending before it keeps
//! every burst within `burst_size`, and a `burst_size` below one packet gives
//! one-packet bursts, the smoothest output.) The next packet waits for the later of the two, so a
//! sender that fell behind catches up at rate x ratio, never faster. Time is
//! kept in whole nanoseconds plus a carried fraction, so it never drifts by
//! rounding. An idle stream is not allowed to bank time for a catch-up burst.

/// A time in nanoseconds with a sub-nanosecond remainder in `[0, 1)`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
struct PreciseTime {
    nanos: u64,
    fraction: f64,
}

impl PreciseTime {
    fn at(nanos: u64) -> Self {
        PreciseTime { nanos, fraction: 0.0 }
    }

    fn advance(&mut self, delta_nanos: f64) {
        let total = self.fraction + delta_nanos;
        let whole = total.floor();
        self.nanos = self.nanos.saturating_add(whole as u64);
        self.fraction = total - whole;
    }
}

/// The limiter's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimiterConfig {
    /// Bytes that may go back to back before the deadlines are checked.
    pub burst_size: u64,
    /// Catch-up rate as a multiple of the rate (at least 1).
    pub burst_rate_ratio: f64,
}

/// Decides when the next packet may be sent.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    config: RateLimiterConfig,
    send_time: PreciseTime,
    send_time_burst: PreciseTime,
    /// Bytes since the deadlines last moved.
    burst_bytes: u64,
    /// Time those bytes are worth, in nanoseconds.
    burst_nanos: f64,
    /// Set after a wait was asked for, until it has passed.
    waiting: bool,
    /// How far behind schedule the sender was when it last went idle (ns).
    owed_at_idle: u64,
}

impl RateLimiter {
    /// A limiter whose deadlines start at `now` (nanoseconds).
    pub fn new(config: RateLimiterConfig, now: u64) -> Self {
        RateLimiter {
            config,
            send_time: PreciseTime::at(now),
            send_time_burst: PreciseTime::at(now),
            burst_bytes: 0,
            burst_nanos: 0.0,
            waiting: false,
            owed_at_idle: 0,
        }
    }

    /// Before a packet of `next_len` bytes: `None` if it may go now, or the
    /// time (ns) to wait for. `now` is read only when a burst ends or a wait
    /// is pending, so the clock is not read per packet within a burst.
    /// Always inlined: it is asked once a packet, from both of a batch's
    /// paths, and as a call it cost 26 instructions a packet (of 453).
    #[inline(always)]
    pub fn next_send(&mut self, next_len: usize, now: impl FnOnce() -> u64) -> Option<u64> {
        if self.waiting {
            let now = now();
            let due = self.send_time_burst.nanos;
            if now < due {
                return Some(due);
            }
            self.waiting = false;
            // The burst starts now: if the wait overran (a stall), anchor the
            // burst deadline here, so the next burst still waits its catch-up
            // time instead of following this one back to back.
            if PreciseTime::at(now) > self.send_time_burst {
                self.send_time_burst = PreciseTime::at(now);
            }
            return None;
        }
        if self.burst_bytes == 0 || self.burst_bytes + next_len as u64 <= self.config.burst_size {
            return None;
        }
        if self.burst_nanos == 0.0 {
            // A burst worth no time (unpaced heaps) moves no deadline: the
            // clock is not read, so an unpaced stream never reads it.
            self.burst_bytes = 0;
            return None;
        }
        let now = now();
        self.send_time_burst
            .advance(self.burst_nanos / self.config.burst_rate_ratio);
        self.send_time.advance(self.burst_nanos);
        self.burst_bytes = 0;
        self.burst_nanos = 0.0;
        let target = if self.send_time_burst > self.send_time {
            self.send_time_burst
        } else {
            self.send_time
        };
        // The burst deadline records when this burst really goes out.
        self.send_time_burst = if PreciseTime::at(now) > target {
            PreciseTime::at(now)
        } else {
            target
        };
        // Wait for the whole nanosecond; the fraction carries on.
        let due = target.nanos;
        if now < due {
            self.waiting = true;
            Some(due)
        } else {
            None
        }
    }

    /// Accounts for a packet of `bytes` sent at `nanos_per_byte` (0 for an
    /// unlimited rate).
    #[inline]
    pub fn sent(&mut self, bytes: usize, nanos_per_byte: f64) {
        self.burst_bytes += bytes as u64;
        // A packet is far below 2^32 bytes; converting a u32 is one
        // instruction, a usize several.
        self.burst_nanos += f64::from(bytes as u32) * nanos_per_byte;
    }

    /// When the sender runs out of packets and goes idle: notes how far
    /// behind schedule it is, time owed from while it was busy (a stall),
    /// which the [`wake`](Self::wake) that ends the idleness keeps.
    pub fn idle(&mut self, now: u64) {
        let due = self.send_time.nanos.saturating_add(self.burst_nanos as u64);
        self.owed_at_idle = now.saturating_sub(due);
    }

    /// When a new heap wakes an idle sender: move the standard deadline to
    /// at least `now` less the time already owed (the pending burst's, and
    /// what the sender owed when it went idle), so idleness is not banked
    /// for a catch-up burst, but time lost while busy is still caught up
    /// (at rate x ratio, as ever).
    pub fn wake(&mut self, now: u64) {
        let owed = self.burst_nanos as u64 + std::mem::take(&mut self.owed_at_idle);
        let backdate = now.saturating_sub(owed);
        if PreciseTime::at(backdate) > self.send_time {
            self.send_time = PreciseTime::at(backdate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GBPS: f64 = 1e9 / 8.0; // bytes per second at 1 Gb/s

    fn ns_per_byte(bytes_per_second: f64) -> f64 {
        1e9 / bytes_per_second
    }

    /// Sends `packets` packets of `size` bytes with a fake clock that only
    /// moves when the limiter asks to wait (an infinitely fast sender), and
    /// returns the time each packet left.
    fn run(limiter: &mut RateLimiter, clock: &mut u64, packets: usize, size: usize, rate: f64) -> Vec<u64> {
        let mut times = Vec::with_capacity(packets);
        for _ in 0..packets {
            while let Some(due) = limiter.next_send(size, || *clock) {
                assert!(due > *clock, "a wait must be in the future");
                *clock = due;
            }
            times.push(*clock);
            limiter.sent(size, ns_per_byte(rate));
        }
        times
    }

    #[test]
    fn long_run_rate_is_exact() {
        let config = RateLimiterConfig {
            burst_size: 65536,
            burst_rate_ratio: 1.05,
        };
        let mut clock = 1_000;
        let mut limiter = RateLimiter::new(config, clock);
        let size = 1472;
        let rate = 2.0 * GBPS + 0.3; // not a round number of ns per byte
        let packets = 1_000_000;
        let times = run(&mut limiter, &mut clock, packets, size, rate);
        // The last packet leaves when the bytes before it are due.
        let elapsed = (times[packets - 1] - times[0]) as f64;
        let expected = ((packets - 1) * size) as f64 * ns_per_byte(rate);
        // At most one burst of slack: bursts go back to back.
        let burst_time = 65536.0 * ns_per_byte(rate);
        assert!(
            elapsed <= expected && elapsed >= expected - burst_time,
            "{elapsed} vs {expected}"
        );
        assert!((elapsed - expected).abs() / expected < 1e-4);
    }

    #[test]
    fn bursts_never_exceed_burst_size_back_to_back() {
        for (burst_size, size, per_burst) in
            [(8192, 1000, 8), (65536, 1472, 44), (65536, 8192, 8), (1, 1472, 1)]
        {
            let config = RateLimiterConfig {
                burst_size,
                burst_rate_ratio: 1.05,
            };
            let mut clock = 0;
            let mut limiter = RateLimiter::new(config, clock);
            let times = run(&mut limiter, &mut clock, 10_000, size, GBPS);
            // Packets sharing a timestamp form a burst.
            let mut longest = 0;
            let mut run_len = 0;
            for pair in times.windows(2) {
                run_len = if pair[0] == pair[1] { run_len + 1 } else { 0 };
                longest = longest.max(run_len + 1);
            }
            assert_eq!(longest, per_burst, "burst_size {burst_size}, {size}-byte packets");
            assert!((longest * size) as u64 <= burst_size.max(size as u64));
        }
    }

    #[test]
    fn catch_up_is_limited_by_the_ratio() {
        let config = RateLimiterConfig {
            burst_size: 1000,
            burst_rate_ratio: 1.25,
        };
        let mut limiter = RateLimiter::new(config, 0);
        let rate = GBPS;
        // Fall 1 ms behind: the sender stalls after the first burst.
        let mut clock = 0;
        run(&mut limiter, &mut clock, 1, 1000, rate);
        clock += 1_000_000;
        let start = clock;
        let times = run(&mut limiter, &mut clock, 2000, 1000, rate);
        let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).filter(|g| *g > 0).collect();
        let nominal = 1000.0 * ns_per_byte(rate);
        // While catching up, a burst every nominal/1.25 ns, never less.
        assert!(
            gaps.iter().all(|g| *g as f64 >= nominal / 1.25 - 1.0),
            "{:?}",
            &gaps[..5]
        );
        assert!((gaps[0] as f64 - nominal / 1.25).abs() <= 1.0);
        // Once caught up, back to the nominal rate.
        let last = *gaps.last().unwrap() as f64;
        assert!((last - nominal).abs() <= 1.0, "{last}");
        assert!(times[0] >= start);
    }

    #[test]
    fn an_idle_stream_does_not_burst_to_catch_up() {
        let config = RateLimiterConfig {
            burst_size: 1000,
            burst_rate_ratio: 1.05,
        };
        let mut limiter = RateLimiter::new(config, 0);
        let mut clock = 0;
        run(&mut limiter, &mut clock, 10, 1000, GBPS);
        limiter.idle(clock);
        clock += 1_000_000_000; // idle for a second
        limiter.wake(clock);
        let times = run(&mut limiter, &mut clock, 100, 1000, GBPS);
        let nominal = 1000.0 * ns_per_byte(GBPS);
        // Not even the catch-up rate: nothing is owed after idling.
        for gap in times.windows(2).map(|w| (w[1] - w[0]) as f64) {
            assert!(gap >= nominal - 1.0, "burst after idle: gap {gap}");
        }
    }

    #[test]
    fn time_owed_from_a_stall_is_kept_across_an_idle_wait() {
        let config = RateLimiterConfig {
            burst_size: 1000,
            burst_rate_ratio: 1.05,
        };
        let mut limiter = RateLimiter::new(config, 0);
        let mut clock = 0;
        let nominal = 1000.0 * ns_per_byte(GBPS);
        run(&mut limiter, &mut clock, 100, 1000, GBPS);
        // A 1 ms stall while busy, then the queue runs dry for a second.
        clock += 1_000_000;
        limiter.idle(clock);
        clock += 1_000_000_000;
        limiter.wake(clock);
        let times = run(&mut limiter, &mut clock, 3000, 1000, GBPS);
        // The stall's time is caught up at 1.05 x the rate, never faster,
        // and the idle second is not: once caught up, packet 100 + k leaves
        // when it would have had the stream only paused for that second.
        let gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
        assert!(
            gaps.iter().all(|g| *g >= nominal / 1.05 - 1.0),
            "{:?}",
            &gaps[..3]
        );
        assert!(
            (gaps[0] - nominal / 1.05).abs() <= 1.0,
            "catching up: {}",
            gaps[0]
        );
        let on_schedule = 1e9 + (100.0 + 2999.0) * nominal;
        assert!(
            (times[2999] as f64 - on_schedule).abs() <= 1.0,
            "last packet at {} ns, on schedule at {on_schedule}",
            times[2999]
        );
    }

    #[test]
    fn a_stall_during_a_wait_does_not_let_two_bursts_go_back_to_back() {
        let config = RateLimiterConfig {
            burst_size: 8000,
            burst_rate_ratio: 1.05,
        };
        let mut limiter = RateLimiter::new(config, 0);
        let nominal = 8000.0 * ns_per_byte(GBPS);
        let (mut clock, mut starts) = (0u64, Vec::new());
        for burst in 0..20 {
            for packet in 0..8 {
                if let Some(due) = limiter.next_send(1000, || clock) {
                    // The sender wakes 3 bursts late once (a stall).
                    clock = if burst == 5 { due + 3 * nominal as u64 } else { due };
                    assert_eq!(limiter.next_send(1000, || clock), None);
                }
                if packet == 0 {
                    starts.push(clock);
                }
                limiter.sent(1000, ns_per_byte(GBPS));
            }
        }
        // Every burst starts at least a burst time / ratio after the last,
        // stall or not: catch-up never exceeds rate x ratio.
        for pair in starts.windows(2) {
            let gap = (pair[1] - pair[0]) as f64;
            assert!(gap >= nominal / 1.05 - 1.0, "bursts {gap} ns apart after a stall");
        }
    }

    #[test]
    fn unlimited_rate_never_waits() {
        let config = RateLimiterConfig {
            burst_size: 1000,
            burst_rate_ratio: 1.05,
        };
        let mut limiter = RateLimiter::new(config, 0);
        for _ in 0..1000 {
            let read = || panic!("an unpaced stream has no use for the clock");
            assert_eq!(limiter.next_send(1472, read), None);
            limiter.sent(1472, 0.0);
        }
    }

    #[test]
    fn a_paced_heap_after_unpaced_ones_keeps_its_rate() {
        let config = RateLimiterConfig {
            burst_size: 65536,
            burst_rate_ratio: 1.05,
        };
        let mut clock = 1_000;
        let mut limiter = RateLimiter::new(config, clock);
        run(&mut limiter, &mut clock, 500, 1472, f64::INFINITY);
        assert_eq!(clock, 1_000, "unpaced packets never wait");
        // They took a millisecond to send.
        clock += 1_000_000;
        let times = run(&mut limiter, &mut clock, 10_000, 1472, GBPS);
        let elapsed = (times[times.len() - 1] - times[0]) as f64;
        let expected = (9_999 * 1472) as f64 * ns_per_byte(GBPS);
        // Unpaced bytes bank no time: within a burst of the rate, and no
        // faster than the catch-up ratio allows.
        assert!(elapsed <= expected, "{elapsed} vs {expected}");
        assert!(
            elapsed >= expected / 1.05 - 65536.0 * ns_per_byte(GBPS),
            "{elapsed} vs {expected}"
        );
    }
}
