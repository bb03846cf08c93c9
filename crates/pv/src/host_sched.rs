//! How the host schedules a vCPU thread: a Xen-like time slice.
//!
//! On an overcommitted host (20 domains booting on 2 cores) Linux's EEVDF
//! scheduler runs each CPU-bound vCPU thread for its base slice, ~1.5 ms
//! on 2 cores, then switches to the next. A PV guest's 4 ms tick has always
//! expired by the time its thread runs again, so nearly every slice began
//! with a tick, and a tick costs the guest ~336 µs of traps here
//! (docs/trap-paths.md): measured, 20 boots together cost ~23 % more CPU
//! each than one boot alone. Xen's credit scheduler gives a vCPU 30 ms
//! before it switches; rxen asks the host for the same slice
//! (`sched_setattr`'s `sched_runtime` for SCHED_OTHER, Linux 6.12 and
//! later). Fairness does not change — the scheduler still shares CPU time
//! by weight — only how often it switches; threads with shorter slices
//! (interactive host programs) still preempt a vCPU when they wake.

use std::time::Duration;

/// Xen credit scheduler's default time slice (`tslice_ms`).
pub const VCPU_SLICE: Duration = Duration::from_millis(30);

/// `struct sched_attr`, its first version (48 bytes).
#[repr(C)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
}

/// Asks the host to run the calling thread in slices of `slice` (Linux
/// clamps it to 0.1-100 ms), keeping its nice value. Fails on kernels
/// without custom slices (EINVAL, E2BIG) or when the thread runs under a
/// real-time policy (left alone: an administrator chose it).
pub fn set_thread_slice(slice: Duration) -> std::io::Result<()> {
    // SAFETY: sched_getscheduler(0) reads the calling thread's policy.
    let policy = unsafe { libc::sched_getscheduler(0) };
    if policy != libc::SCHED_OTHER && policy != libc::SCHED_BATCH {
        return Err(std::io::Error::other(format!(
            "the thread runs under scheduling policy {policy}"
        )));
    }
    // getpriority returns the nice value; -1 is also a valid one, so errno
    // tells an error apart.
    // SAFETY: errno is thread-local; getpriority has no preconditions.
    let nice = unsafe {
        *libc::__errno_location() = 0;
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::getpriority(libc::PRIO_PROCESS, tid)
    };
    if nice == -1 && std::io::Error::last_os_error().raw_os_error() != Some(0) {
        return Err(std::io::Error::last_os_error());
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: policy as u32,
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: slice.as_nanos().min(u64::MAX as u128) as u64,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: `attr` is a valid sched_attr of the size it states; pid 0
    // is the calling thread.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slice reaches the kernel: /proc's sched file shows it (field
    /// `se.slice`, nanoseconds), and the nice value stays.
    #[test]
    fn the_thread_gets_the_slice_and_keeps_its_nice_value() {
        std::thread::spawn(|| {
            // SAFETY: plain syscalls on the calling thread.
            let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
            unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 3) };
            set_thread_slice(Duration::from_millis(30)).expect("sched_setattr");
            let sched = std::fs::read_to_string(format!("/proc/self/task/{tid}/sched")).unwrap();
            let slice: u64 = sched
                .lines()
                .find(|l| l.trim_start().starts_with("se.slice"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse().ok())
                .expect("se.slice in /proc/.../sched");
            assert_eq!(slice, 30_000_000);
            // SAFETY: as above.
            assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) }, 3);
        })
        .join()
        .unwrap();
    }
}
