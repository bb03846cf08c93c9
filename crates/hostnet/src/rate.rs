//! The `rate=` limit of a vif: a credit (token bucket) scheme with xl's
//! semantics.
//!
//! xl's `rate=RATE/s@INTERVAL` (xl-network-configuration(5)) means: every
//! INTERVAL (default 50 ms) the vif may send RATE × INTERVAL bytes more.
//! The limit applies to what the guest transmits (netback's tx path): a
//! packet that does not fit in the credit waits, on the ring, until the
//! credit has grown enough. As in Linux netback, unused credit accumulates
//! up to a burst of at least 128 KiB, so that the largest GSO packet (64 KiB
//! plus headers) can always go eventually and a vif cannot seize up.
//!
//! Unlike Linux netback, which restarts its window at the moment it finds
//! the credit exhausted, the window here advances by whole intervals from
//! its start: late checks (a busy host) do not lose credit, so the long-run
//! rate is the configured one, not a little below it.

use std::time::{Duration, Instant};

/// The smallest burst allowed (Linux netback's, for 64 KiB GSO frames).
pub const MIN_BURST: u64 = 128 * 1024;

/// A credit scheme: `credit` bytes per `interval`.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    credit: u64,
    interval: Duration,
    max_burst: u64,
    /// Bytes that may go now; negative after a packet larger than the
    /// whole burst went (paid back by later intervals).
    remaining: i64,
    window_start: Instant,
}

impl RateLimiter {
    /// `credit` bytes every `interval` (both at least 1; zero is clamped
    /// to 1 so a bad caller gets a crawl, not a division by zero).
    pub fn new(credit: u64, interval: Duration, now: Instant) -> RateLimiter {
        let credit = credit.clamp(1, i64::MAX as u64 / 4);
        let interval = interval.max(Duration::from_micros(1));
        let max_burst = credit.max(MIN_BURST);
        RateLimiter {
            credit,
            interval,
            max_burst,
            remaining: credit as i64,
            window_start: now,
        }
    }

    /// From xl's parsed form: bytes per second and the interval in µs.
    pub fn from_rate(bytes_per_sec: u64, interval_usecs: u32, now: Instant) -> RateLimiter {
        let credit = (bytes_per_sec as u128 * interval_usecs as u128 / 1_000_000) as u64;
        RateLimiter::new(credit, Duration::from_micros(interval_usecs as u64), now)
    }

    /// Bytes per interval.
    pub fn credit(&self) -> u64 {
        self.credit
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Bytes per second this limiter allows in the long run.
    pub fn bytes_per_sec(&self) -> f64 {
        self.credit as f64 / self.interval.as_secs_f64()
    }

    /// Adds the credit of the whole intervals that have passed.
    fn replenish(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < self.interval {
            return;
        }
        let k = (elapsed.as_nanos() / self.interval.as_nanos()).min(u32::MAX as u128) as u32;
        self.window_start += self.interval * k;
        let added = (k as u64).saturating_mul(self.credit);
        let grown = (self.remaining as i128 + added as i128).min(self.max_burst as i128);
        self.remaining = grown as i64;
    }

    /// Charges a packet of `bytes` if it may go at `now`; otherwise
    /// returns when it may (call again then; nothing was charged).
    pub fn consume(&mut self, bytes: u64, now: Instant) -> Result<(), Instant> {
        self.replenish(now);
        let fits = self.remaining >= 0 && bytes <= self.remaining as u64;
        // A packet beyond the whole burst goes on a full bucket and puts
        // the credit in debt; the average rate still holds.
        let oversized = bytes > self.max_burst && self.remaining as u64 == self.max_burst;
        if fits || oversized {
            self.remaining -= bytes.min(i64::MAX as u64) as i64;
            return Ok(());
        }
        let need = bytes.min(self.max_burst) as i128 - self.remaining as i128;
        let intervals = (need as u128)
            .div_ceil(self.credit as u128)
            .min(u32::MAX as u128) as u32;
        Err(self.window_start + self.interval * intervals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends back-to-back packets of `size` for `secs` of simulated time,
    /// checking each refusal's retry time is honest; the achieved rate.
    fn simulate(l: &mut RateLimiter, t0: Instant, size: u64, secs: u64, jitter_us: u64) -> f64 {
        let end = t0 + Duration::from_secs(secs);
        let mut now = t0;
        let mut sent = 0u64;
        let mut step = 0u64;
        while now < end {
            match l.consume(size, now) {
                Ok(()) => sent += size,
                Err(at) => {
                    assert!(at > now, "retry time must lie ahead");
                    // Simulate a late wakeup of up to `jitter_us`.
                    step = step
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    now = at + Duration::from_micros((step >> 33) % (jitter_us + 1));
                }
            }
        }
        sent as f64 / secs as f64
    }

    #[test]
    fn long_run_rate_is_the_configured_one() {
        let t0 = Instant::now();
        // 10Mb/s@20ms: 25 000 bytes every 20 ms.
        let mut l = RateLimiter::from_rate(1_250_000, 20_000, t0);
        assert_eq!(l.credit(), 25_000);
        for (size, jitter) in [(1514, 0), (1514, 3_000), (65_000, 0), (60, 900)] {
            let mut l2 = l.clone();
            let rate = simulate(&mut l2, t0, size, 20, jitter);
            let err = (rate - 1_250_000.0).abs() / 1_250_000.0;
            assert!(err < 0.02, "size {size} jitter {jitter}: {rate} B/s");
        }
        // Late checks do not lose credit: one check a second still averages out.
        let mut sent = 0;
        for s in 1..=10 {
            let now = t0 + Duration::from_secs(s);
            while l.consume(1000, now).is_ok() {
                sent += 1000;
            }
        }
        // Credit is capped at the burst between checks: 10 × 128 KiB at most.
        assert!(sent <= 10 * MIN_BURST + 25_000, "{sent}");
    }

    #[test]
    fn refusal_says_when_and_charges_nothing() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(1000, Duration::from_millis(50), t0);
        assert_eq!(l.consume(600, t0), Ok(()));
        let at = l.consume(600, t0).unwrap_err();
        assert_eq!(at, t0 + Duration::from_millis(50));
        // Still refused a moment before, accepted at the time given.
        assert!(l.consume(600, at - Duration::from_micros(1)).is_err());
        assert_eq!(l.consume(600, at), Ok(()));
        // A 5000-byte packet needs the burst to build up over intervals.
        let at2 = l.consume(5000, at).unwrap_err();
        assert_eq!(at2, at + Duration::from_millis(250));
        assert_eq!(l.consume(5000, at2), Ok(()));
    }

    #[test]
    fn bursts_are_capped_and_giant_packets_go_into_debt() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(1000, Duration::from_millis(10), t0);
        // An hour idle buys no more than the burst.
        let later = t0 + Duration::from_secs(3600);
        let mut sent = 0;
        while l.consume(1000, later).is_ok() {
            sent += 1000;
        }
        assert_eq!(sent, MIN_BURST / 1000 * 1000);
        // Larger than any burst: goes once the bucket is full, then debt.
        let t1 = later + Duration::from_secs(10);
        assert_eq!(l.consume(MIN_BURST * 2, t1), Ok(()));
        let at = l.consume(1, t1).unwrap_err();
        assert!(at >= t1 + Duration::from_millis(10) * (MIN_BURST as u32 / 1000));
        // Zero credit or interval are clamped, not a division by zero.
        let mut z = RateLimiter::new(0, Duration::ZERO, t0);
        assert!(z.consume(1, t0).is_ok());
        assert!(z.consume(1, t0).is_err());
    }
}
