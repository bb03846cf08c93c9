//! Scheduler operations (`xen/sched.h`): `HYPERVISOR_sched_op(cmd, arg)`.

use crate::xen::{DomId, GuestHandle};

/// Give up the physical CPU voluntarily.
pub const SCHEDOP_YIELD: u32 = 0;
/// Block until an event is pending (clears `evtchn_upcall_mask` first).
pub const SCHEDOP_BLOCK: u32 = 1;
/// Halt with a reason ([`SchedShutdown`]).
pub const SCHEDOP_SHUTDOWN: u32 = 2;
/// Block until one of a list of ports is pending, or a timeout
/// ([`SchedPoll`]).
pub const SCHEDOP_POLL: u32 = 3;
/// Shut down another domain ([`SchedRemoteShutdown`]).
pub const SCHEDOP_REMOTE_SHUTDOWN: u32 = 4;
/// Record a shutdown reason without shutting down ([`SchedShutdown`]).
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
/// Set up, kick or kill a watchdog ([`SchedWatchdog`]).
pub const SCHEDOP_WATCHDOG: u32 = 6;
/// Override the current vCPU's affinity ([`SchedPinOverride`]).
pub const SCHEDOP_PIN_OVERRIDE: u32 = 7;

/// Domain exited normally; clean up and kill.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// Clean up, kill, and then restart.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// Clean up, save suspend info, kill.
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// Tell the controller we have crashed.
pub const SHUTDOWN_CRASH: u32 = 3;
/// Restart because the watchdog fired.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// Soft reset: rebuild the domain keeping its memory (kexec).
pub const SHUTDOWN_SOFT_RESET: u32 = 5;
pub const SHUTDOWN_MAX: u32 = 5;

pod!(
    /// `struct sched_shutdown`.
    SchedShutdown, 4, {
        /// `SHUTDOWN_*`.
        reason: u32,
    }
);

pod!(
    /// `struct sched_poll`.
    SchedPoll, 24, {
        /// Guest address of an array of `evtchn_port_t`.
        ports: GuestHandle,
        nr_ports: u32,
        _pad0: u32,
        /// Absolute system time (ns); 0 = no timeout.
        timeout: u64,
    }
);

pod!(
    /// `struct sched_remote_shutdown`.
    SchedRemoteShutdown, 8, {
        domain_id: DomId,
        _pad0: u16,
        /// `SHUTDOWN_*`.
        reason: u32,
    }
);

pod!(
    /// `struct sched_watchdog`.
    SchedWatchdog, 8, {
        /// 0 = allocate a new watchdog (id returned); else the watchdog id.
        id: u32,
        /// Seconds; 0 = destroy.
        timeout: u32,
    }
);

pod!(
    /// `struct sched_pin_override`.
    SchedPinOverride, 4, {
        /// Physical CPU, or negative to end the override.
        pcpu: i32,
    }
);
