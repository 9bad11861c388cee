//! Pacing: when each packet may leave. The rate limiter is pure logic over
//! clock readings (testable with a fake clock); the clock reads and waits.

pub(crate) mod clock;
mod limiter;

pub use clock::{Clock, ClockChoice, ClockSource, SystemClock};
pub use limiter::{RateLimiter, RateLimiterConfig};
