//! Guest time: Xen's pvclock (`vcpu_time_info`) and wallclock, derived from
//! the guest's TSC, which KVM runs at a fixed rate.
//!
//! System time is nanoseconds since the domain was built, read from the
//! host's monotonic clock; the guest extrapolates it from its TSC with the
//! scale computed here.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use xen_abi::{VcpuTimeInfo, XEN_PVCLOCK_TSC_STABLE_BIT};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    /// Guest TSC at `start`.
    tsc0: u64,
    tsc_khz: u64,
    mul: u32,
    shift: i8,
}

/// Xen's scale: ns = ((tsc << shift) * mul) >> 32 (shift may be negative).
pub fn time_scale(tsc_hz: u64) -> (u32, i8) {
    let ns = 1_000_000_000u64;
    let mut tps = tsc_hz.max(1);
    let mut shift: i32 = 0;
    // Bring ticks-per-second into (ns, 2ns] so that mul = ns/tps * 2^32
    // lies in [2^31, 2^32).
    while tps > 2 * ns {
        tps >>= 1;
        shift -= 1;
    }
    while tps <= ns {
        tps <<= 1;
        shift += 1;
    }
    (((ns << 32) / tps) as u32, shift as i8)
}

impl Clock {
    pub fn new(tsc0: u64, tsc_khz: u64) -> Clock {
        let (mul, shift) = time_scale(tsc_khz * 1000);
        Clock {
            start: Instant::now(),
            tsc0,
            tsc_khz: tsc_khz.max(1),
            mul,
            shift,
        }
    }

    /// Nanoseconds of system time now.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Guest TSC at system time `ns`.
    pub fn tsc_at(&self, ns: u64) -> u64 {
        self.tsc0 + (ns as u128 * self.tsc_khz as u128 / 1_000_000) as u64
    }

    /// A fresh `vcpu_time_info` (version left to the writer).
    pub fn time_info(&self) -> VcpuTimeInfo {
        let ns = self.now_ns();
        VcpuTimeInfo {
            tsc_timestamp: self.tsc_at(ns),
            system_time: ns,
            tsc_to_system_mul: self.mul,
            tsc_shift: self.shift,
            flags: XEN_PVCLOCK_TSC_STABLE_BIT,
            ..Default::default()
        }
    }

    /// Wallclock at system time 0 (seconds, nanoseconds).
    pub fn boot_wallclock(&self) -> (u64, u32) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let boot = now.saturating_sub(self.start.elapsed());
        (boot.as_secs(), boot.subsec_nanos())
    }

    /// How long until system time `deadline_ns`.
    pub fn until(&self, deadline_ns: u64) -> Duration {
        Duration::from_nanos(deadline_ns.saturating_sub(self.now_ns()))
    }
}

/// What the guest computes from a `vcpu_time_info` at TSC `tsc`.
pub fn guest_ns(t: &VcpuTimeInfo, tsc: u64) -> u64 {
    let delta = tsc.wrapping_sub(t.tsc_timestamp);
    let delta = if t.tsc_shift >= 0 {
        delta << t.tsc_shift
    } else {
        delta >> (-t.tsc_shift)
    };
    t.system_time + ((delta as u128 * t.tsc_to_system_mul as u128) >> 32) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_converts_one_second() {
        for hz in [
            1_000_000_000u64,
            2_100_000_000,
            3_600_000_000,
            800_000_000,
            25_000_000,
        ] {
            let (mul, shift) = time_scale(hz);
            let t = VcpuTimeInfo {
                tsc_to_system_mul: mul,
                tsc_shift: shift,
                ..Default::default()
            };
            let ns = guest_ns(&t, hz);
            let err = (ns as i64 - 1_000_000_000).abs();
            assert!(err < 1000, "{hz} Hz: one second became {ns} ns");
        }
    }

    #[test]
    fn clock_tracks_tsc() {
        let c = Clock::new(1_000_000, 2_000_000);
        let ti = c.time_info();
        // 1 ms of TSC later the guest sees ~1 ms more.
        let later = guest_ns(&ti, ti.tsc_timestamp + 2_000_000);
        assert!((later - ti.system_time).abs_diff(1_000_000) < 10);
    }
}
