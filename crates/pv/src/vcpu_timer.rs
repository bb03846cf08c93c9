//! The vCPU's single-shot timer as a POSIX timer that signals the vCPU
//! thread itself.
//!
//! Xen's `set_singleshot_timer` deadline is armed here on the vCPU thread's
//! own CLOCK_MONOTONIC timer (`SIGEV_THREAD_ID`, the kick signal). When it
//! expires while the guest runs, the signal interrupts KVM_RUN on the same
//! CPU and the vCPU loop raises VIRQ_TIMER; when the vCPU is blocked in
//! `SCHEDOP_block`, the wait simply times out at the deadline. No other
//! thread wakes up for the guest's tick: an earlier design used a timer
//! thread that woke, took a lock and signalled the vCPU thread, one host
//! context switch and cross-CPU signal per tick (250 per second under load).

use std::time::Duration;

use crate::vcpu::kick_signal;

/// How late a running vCPU's timer signal must be taken to mean that the
/// host had preempted the vCPU thread (a running thread takes it within
/// microseconds).
pub const PREEMPTED_LATENESS: Duration = Duration::from_millis(1);

/// How much longer a timer that fell due while the host had the running
/// vCPU preempted waits once the vCPU runs again: one tick of a 250 Hz
/// guest.
pub const PREEMPTED_TIMER_DELAY: Duration = Duration::from_millis(4);

/// What to do with the single-shot timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerDue {
    /// Not set, or its deadline is ahead.
    NotYet,
    /// Raise VIRQ_TIMER.
    Fire,
    /// Move the deadline to this system time (ns).
    PutOffUntil(u64),
}

/// The timer with `deadline` (system-time ns, 0 = not set) at `now`.
///
/// `running`: the guest was running when the timer's signal came, and
/// `put_off`: this deadline was moved once already. A timer found
/// [`PREEMPTED_LATENESS`] overdue by a running vCPU fell due while the host
/// ran other threads. Raising it at once would start the vCPU's new host
/// time slice with an overdue tick (~340 µs of traps here,
/// docs/trap-paths.md), and the guest ticks again at its next period
/// anyway: among 20 busy domains that was one extra tick per slice. Such a
/// timer waits [`PREEMPTED_TIMER_DELAY`] more, once. Timers may always
/// fire late and the guest keeps time by its clock, not by its ticks; a
/// blocked vCPU (not `running`) still wakes at its deadline.
pub fn timer_due(deadline: u64, now: u64, running: bool, put_off: bool) -> TimerDue {
    if deadline == 0 {
        return TimerDue::NotYet;
    }
    // A put-off timer's own deadline has passed: a vCPU that blocks (the
    // guest went idle) gets it now, not after the extra delay.
    if !running && put_off {
        return TimerDue::Fire;
    }
    if now < deadline {
        return TimerDue::NotYet;
    }
    let late = Duration::from_nanos(now - deadline);
    if running && !put_off && late >= PREEMPTED_LATENESS {
        return TimerDue::PutOffUntil(now.saturating_add(PREEMPTED_TIMER_DELAY.as_nanos() as u64));
    }
    TimerDue::Fire
}

/// A POSIX timer delivering [`kick_signal`] to the thread that created it.
pub struct VcpuTimer {
    id: libc::timer_t,
}

// SAFETY: a timer_t is a kernel handle; arming it from any thread is sound
// (rxen only uses it from the vCPU thread).
unsafe impl Send for VcpuTimer {}

impl VcpuTimer {
    /// A disarmed timer that signals the calling thread.
    pub fn for_this_thread() -> std::io::Result<VcpuTimer> {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::c_int;
        // SAFETY: a zeroed sigevent is valid; the fields set below select
        // thread-directed delivery of a signal whose handler is installed
        // by `vcpu::install_kick_handler`.
        let mut ev: libc::sigevent = unsafe { std::mem::zeroed() };
        ev.sigev_notify = libc::SIGEV_THREAD_ID;
        ev.sigev_signo = kick_signal();
        ev.sigev_notify_thread_id = tid;
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `ev` and `id` are valid for the call.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut id) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(VcpuTimer { id })
    }

    /// Signals the thread after `after` (at once when zero); `None` disarms.
    pub fn arm(&self, after: Option<Duration>) {
        let value = match after {
            // A zero it_value disarms, so "now" is one nanosecond.
            Some(d) => libc::timespec {
                tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: d.subsec_nanos().max(u32::from(d.as_secs() == 0)) as libc::c_long,
            },
            None => libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        // SAFETY: `self.id` is a live timer; `spec` is valid for the call.
        // It can only fail for an invalid id or value, neither possible here.
        unsafe { libc::timer_settime(self.id, 0, &spec, std::ptr::null_mut()) };
    }
}

impl Drop for VcpuTimer {
    fn drop(&mut self) {
        // SAFETY: `self.id` is a live timer, deleted once.
        unsafe { libc::timer_delete(self.id) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_timer_long_overdue_on_a_running_vcpu_is_put_off_and_only_once() {
        const MS: u64 = 1_000_000;
        assert_eq!(timer_due(0, 50 * MS, true, false), TimerDue::NotYet);
        assert_eq!(timer_due(10 * MS, 9 * MS, true, false), TimerDue::NotYet);
        // On time (the thread was running): at once.
        assert_eq!(
            timer_due(10 * MS, 10 * MS + 20_000, true, false),
            TimerDue::Fire
        );
        // 30 ms overdue: the host had the vCPU preempted.
        assert_eq!(
            timer_due(10 * MS, 40 * MS, true, false),
            TimerDue::PutOffUntil(44 * MS)
        );
        // The moved deadline fires however late it is taken.
        assert_eq!(timer_due(44 * MS, 90 * MS, true, true), TimerDue::Fire);
        // A blocked vCPU wakes at its deadline, late or not, and at once
        // if the deadline was put off (it had passed).
        assert_eq!(timer_due(10 * MS, 40 * MS, false, false), TimerDue::Fire);
        assert_eq!(timer_due(10 * MS, 9 * MS, false, false), TimerDue::NotYet);
        assert_eq!(timer_due(44 * MS, 41 * MS, false, true), TimerDue::Fire);
        assert_eq!(timer_due(44 * MS, 41 * MS, true, true), TimerDue::NotYet);
    }

    /// Waits up to `limit` for the kick signal, which the caller blocked.
    fn wait_kick(limit: Duration) -> bool {
        // SAFETY: zeroed sigset/siginfo are valid; the set holds one signal.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, kick_signal());
            let ts = libc::timespec {
                tv_sec: limit.as_secs() as libc::time_t,
                tv_nsec: limit.subsec_nanos() as libc::c_long,
            };
            libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) == kick_signal()
        }
    }

    #[test]
    fn the_timer_signals_its_own_thread_at_the_deadline_and_not_when_disarmed() {
        // SAFETY: blocks the kick signal on this test thread only, so that
        // sigtimedwait can take it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, kick_signal());
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let t = VcpuTimer::for_this_thread().unwrap();
        let start = std::time::Instant::now();
        t.arm(Some(Duration::from_millis(20)));
        assert!(
            wait_kick(Duration::from_secs(5)),
            "the armed timer never fired"
        );
        assert!(start.elapsed() >= Duration::from_millis(20), "fired early");

        t.arm(Some(Duration::ZERO));
        assert!(
            wait_kick(Duration::from_secs(5)),
            "a zero delay must fire at once"
        );

        t.arm(Some(Duration::from_millis(10)));
        t.arm(None);
        assert!(
            !wait_kick(Duration::from_millis(50)),
            "a disarmed timer fired"
        );
    }
}
