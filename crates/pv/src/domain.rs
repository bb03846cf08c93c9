//! State of one PV domain shared between its vCPU thread and its device
//! backends.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::events::{EventBits, EventChannels, Port, Wakeup};
use crate::grant::GrantTable;
use crate::layout::hv;
use crate::machine::Machine;
use crate::time::Clock;

/// Why a domain stopped (Xen's SHUTDOWN_* reasons, plus crash for errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownReason {
    Poweroff,
    Reboot,
    Suspend,
    /// The guest crashed or was stopped as misbehaving; the text says why.
    Crash(String),
    Watchdog,
    SoftReset,
    /// Stopped from the host (`rxen destroy`, `^]`, a signal); not the
    /// guest's doing.
    Destroyed,
}

impl ShutdownReason {
    pub fn from_xen(code: u32) -> ShutdownReason {
        match code {
            0 => ShutdownReason::Poweroff,
            1 => ShutdownReason::Reboot,
            2 => ShutdownReason::Suspend,
            4 => ShutdownReason::Watchdog,
            5 => ShutdownReason::SoftReset,
            _ => ShutdownReason::Crash("the guest reported a crash".into()),
        }
    }

    /// Short name as `xl` prints it.
    pub fn name(&self) -> &'static str {
        match self {
            ShutdownReason::Poweroff => "poweroff",
            ShutdownReason::Reboot => "reboot",
            ShutdownReason::Suspend => "suspend",
            ShutdownReason::Crash(_) => "crash",
            ShutdownReason::Watchdog => "watchdog",
            ShutdownReason::SoftReset => "soft_reset",
            ShutdownReason::Destroyed => "destroy",
        }
    }
}

/// Device models in dom0 that the guest talks to over event channels.
pub trait DeviceHub: Send + Sync {
    /// The guest notified `port`, which is bound to a backend.
    fn guest_notify(&self, dom: &DomainShared, port: u32);
    /// Console bytes written with `HYPERVISOR_console_io`.
    fn console_io_write(&self, bytes: &[u8]);
}

pub struct DomainShared {
    pub machine: Machine,
    pub events: Mutex<EventChannels>,
    /// The guest's grant table (backends map granted pages through it).
    pub grants: GrantTable,
    pub clock: Clock,
    pub wakeup: Wakeup,
    pub hub: Box<dyn DeviceHub>,
    shutdown: Mutex<Option<ShutdownReason>>,
    pub stopping: AtomicBool,
    /// vcpu_info location of vCPU 0 (moves with VCPUOP_register_vcpu_info).
    pub vcpu_info_gpa: AtomicU64,
    /// pthread id of the vCPU thread, for kicks.
    pub vcpu_thread: AtomicU64,
    /// Set by [`DomainShared::pause`]: the vCPU parks before its next
    /// KVM_RUN. Guest time (TSC-based) keeps going meanwhile.
    paused: AtomicBool,
    pause_lock: Mutex<()>,
    pause_cv: Condvar,
}

impl DomainShared {
    pub fn new(machine: Machine, clock: Clock, hub: Box<dyn DeviceHub>) -> Arc<DomainShared> {
        let vi = machine.layout.hv_gpa(hv::SHARED_INFO);
        let grants = GrantTable::new(&machine.layout);
        Arc::new(DomainShared {
            machine,
            events: Mutex::new(EventChannels::default()),
            grants,
            clock,
            wakeup: Wakeup::default(),
            hub,
            shutdown: Mutex::new(None),
            stopping: AtomicBool::new(false),
            vcpu_info_gpa: AtomicU64::new(vi),
            vcpu_thread: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            pause_lock: Mutex::new(()),
            pause_cv: Condvar::new(),
        })
    }

    pub fn bits(&self) -> EventBits<'_> {
        EventBits {
            ram: &self.machine.ram,
            shared_info_gpa: self.machine.layout.hv_gpa(hv::SHARED_INFO),
        }
    }

    pub fn vcpu_info(&self) -> u64 {
        self.vcpu_info_gpa.load(Ordering::SeqCst)
    }

    /// Raise `port` in the guest (from a backend) and kick the vCPU.
    pub fn raise(&self, port: u32) {
        if self.bits().set_pending(port, self.vcpu_info()) {
            self.kick();
        }
    }

    pub fn raise_virq(&self, virq: u32) {
        let port = self.events.lock().unwrap().virq_port(virq);
        if let Some(p) = port {
            self.raise(p);
        }
    }

    /// Wake the vCPU: out of a blocked wait, or out of KVM_RUN.
    pub fn kick(&self) {
        self.wakeup.notify();
        let t = self.vcpu_thread.load(Ordering::SeqCst);
        if t != 0 {
            crate::vcpu::kick_thread(t as libc::pthread_t);
        }
    }

    /// Record the first shutdown reason; later ones are ignored.
    pub fn request_shutdown(&self, reason: ShutdownReason) {
        let mut s = self.shutdown.lock().unwrap();
        if s.is_none() {
            *s = Some(reason);
        }
        self.stopping.store(true, Ordering::SeqCst);
        drop(s);
        // A paused vCPU must wake up to stop.
        drop(self.pause_lock.lock().unwrap());
        self.pause_cv.notify_all();
        self.kick();
    }

    /// Stops the vCPU from running guest code until [`Self::unpause`]
    /// (`xl pause`). Returns at once; the vCPU parks at its next exit.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        self.kick();
    }

    pub fn unpause(&self) {
        let _g = self.pause_lock.lock().unwrap();
        self.paused.store(false, Ordering::SeqCst);
        self.pause_cv.notify_all();
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Called by the vCPU thread: blocks while paused and not stopping.
    pub fn wait_while_paused(&self) {
        let mut g = self.pause_lock.lock().unwrap();
        while self.paused.load(Ordering::SeqCst) && !self.stopping.load(Ordering::SeqCst) {
            g = self.pause_cv.wait(g).unwrap();
        }
    }

    pub fn shutdown_reason(&self) -> Option<ShutdownReason> {
        self.shutdown.lock().unwrap().clone()
    }

    pub fn port_is_backend(&self, port: u32) -> bool {
        self.events.lock().unwrap().get(port) == Some(Port::Backend)
    }
}
