//! Stream settings, with spead2's names, meanings and defaults.

use thiserror::Error;

use std::time::Duration;

use crate::pacing::clock::{ClockChoice, DEFAULT_SPIN_THRESHOLD};
use crate::protocol::{PacketSizing, PacketizeError};

/// How a stream sends: spead2's `StreamConfig`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamConfig {
    /// Largest SPEAD packet (UDP payload), rounded down to a multiple of 8.
    pub max_packet_size: usize,
    /// Bytes per second of SPEAD packets; 0 for unlimited.
    pub rate: f64,
    /// Bytes that may go back to back before pacing applies.
    pub burst_size: usize,
    /// Heaps queued or in flight at once; more fails at once.
    pub max_heaps: usize,
    /// Catch-up rate, as a multiple of `rate`, after falling behind.
    pub burst_rate_ratio: f64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            max_packet_size: 1472,
            rate: 0.0,
            burst_size: 65536,
            max_heaps: 4,
            burst_rate_ratio: 1.05,
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    /// The packet size is too small for SPEAD.
    #[error(transparent)]
    PacketSize(#[from] PacketizeError),
    /// A rate must be a finite number of bytes per second, 0 or more.
    #[error("rate must be finite and >= 0 bytes/s, got {0}")]
    Rate(f64),
    /// The catch-up ratio must be finite and at least 1.
    #[error("burst_rate_ratio must be finite and >= 1, got {0}")]
    BurstRateRatio(f64),
    /// A burst must hold at least one whole packet.
    #[error(
        "burst_size {burst} is below one packet (max_packet_size {packet}): \
         use at least {packet} (one-packet bursts)"
    )]
    BurstSize {
        /// The burst size given.
        burst: usize,
        /// The (rounded) max packet size.
        packet: usize,
    },
    /// At least one heap must fit in the queue.
    #[error("max_heaps must be at least 1")]
    MaxHeaps,
    /// A heap cnt sequence needs a non-zero step.
    #[error("heap cnt step must not be 0")]
    CntStep,
    /// Each transport needs one worker configuration.
    #[error("{transports} transport(s) but {workers} worker configuration(s); need one each, at least one")]
    Workers {
        /// Transports given.
        transports: usize,
        /// Worker configurations given.
        workers: usize,
    },
    /// No such core to pin the worker to.
    #[error("core {core} does not exist or is not allowed (cores: {available:?})")]
    Core {
        /// Requested core.
        core: usize,
        /// Cores this process may use.
        available: Vec<usize>,
    },
}

/// How a stream's worker thread runs (beyond spead2's settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Core to pin the worker to; `None` leaves it to the scheduler.
    pub core: Option<usize>,
    /// A pacing wait spins (with a pause) for at least its last this-long
    /// instead of sleeping; the clock spins longer where this host's sleeps
    /// have been waking later than that.
    pub spin_threshold: Duration,
    /// Clock source for pacing.
    pub clock: ClockChoice,
    /// How long the worker polls an empty queue before it sleeps. Sleeping
    /// between heaps and being woken for the next costs an interrupt
    /// between cores each time (on a VM, a halted vCPU's wake-up too);
    /// polling costs that much busy CPU. Worth it where the worker has a
    /// core of its own, most with small heaps (spead-send polls 200 us
    /// when it has a spare core); 0 (the default) sleeps at once.
    pub idle_poll: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            core: None,
            spin_threshold: DEFAULT_SPIN_THRESHOLD,
            clock: ClockChoice::Auto,
            idle_poll: Duration::ZERO,
        }
    }
}

impl WorkerConfig {
    /// Checks that the core exists and this process may run on it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Some(core) = self.core else { return Ok(()) };
        let available: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        if available.contains(&core) {
            Ok(())
        } else {
            Err(ConfigError::Core { core, available })
        }
    }
}

/// Checks a rate in bytes per second.
pub(crate) fn check_rate(rate: f64) -> Result<f64, ConfigError> {
    if rate.is_finite() && rate >= 0.0 {
        Ok(rate)
    } else {
        Err(ConfigError::Rate(rate))
    }
}

impl StreamConfig {
    /// Checks every setting; the error names the bad value.
    pub fn validate(&self) -> Result<PacketSizing, ConfigError> {
        check_rate(self.rate)?;
        if !(self.burst_rate_ratio.is_finite() && self.burst_rate_ratio >= 1.0) {
            return Err(ConfigError::BurstRateRatio(self.burst_rate_ratio));
        }
        if self.max_heaps == 0 {
            return Err(ConfigError::MaxHeaps);
        }
        let sizing = PacketSizing::new(self.max_packet_size)?;
        if self.burst_size < sizing.max_packet_size() {
            return Err(ConfigError::BurstSize {
                burst: self.burst_size,
                packet: sizing.max_packet_size(),
            });
        }
        Ok(sizing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_spead2s() {
        let c = StreamConfig::default();
        assert_eq!((c.max_packet_size, c.burst_size, c.max_heaps), (1472, 65536, 4));
        assert_eq!((c.rate, c.burst_rate_ratio), (0.0, 1.05));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn bad_values_are_named() {
        let bad = |c: StreamConfig| c.validate().unwrap_err().to_string();
        let d = StreamConfig::default();
        assert!(bad(StreamConfig { rate: -1.0, ..d }).contains("-1"));
        assert!(bad(StreamConfig { rate: f64::NAN, ..d }).contains("NaN"));
        assert!(bad(StreamConfig {
            burst_rate_ratio: 0.5,
            ..d
        })
        .contains("0.5"));
        assert!(bad(StreamConfig { max_heaps: 0, ..d }).contains("max_heaps"));
        assert!(bad(StreamConfig {
            max_packet_size: 40,
            ..d
        })
        .contains("40"));
        let burst = bad(StreamConfig {
            burst_size: 1000,
            ..d
        });
        assert!(
            burst.contains("burst_size 1000") && burst.contains("1472"),
            "{burst}"
        );
        // One packet (rounded down to a multiple of 8) is the least.
        let one_packet = StreamConfig {
            max_packet_size: 1475,
            burst_size: 1472,
            ..d
        };
        assert!(one_packet.validate().is_ok());
    }
}
