//! Two-level event channels: the port table, and raising an event into the
//! guest's shared_info / vcpu_info bitmaps.
//!
//! The bitmaps live in guest memory that the guest changes with locked
//! instructions at the same time, so the VMM uses atomic operations on them.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex};

use xen_abi::{EVTCHN_2L_NR_CHANNELS, NR_VIRQS};

use crate::mem::GuestRam;

/// Offsets inside shared_info (checked against the ABI struct in tests).
const SHINFO_PENDING: u64 = std::mem::offset_of!(xen_abi::SharedInfo, evtchn_pending) as u64;
const SHINFO_MASK: u64 = std::mem::offset_of!(xen_abi::SharedInfo, evtchn_mask) as u64;
const VI_PENDING: u64 = std::mem::offset_of!(xen_abi::VcpuInfo, evtchn_upcall_pending) as u64;
const VI_MASK: u64 = std::mem::offset_of!(xen_abi::VcpuInfo, evtchn_upcall_mask) as u64;
const VI_SEL: u64 = std::mem::offset_of!(xen_abi::VcpuInfo, evtchn_pending_sel) as u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Free,
    /// Allocated, waiting for `remote` to bind.
    Unbound {
        remote: u16,
    },
    /// Connected to a backend in dom0 (console, xenstore, devices).
    Backend,
    Virq {
        virq: u32,
        vcpu: u32,
    },
    Ipi {
        vcpu: u32,
    },
}

/// What a vCPU waits on while blocked; raised events wake it.
#[derive(Default)]
pub struct Wakeup {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Wakeup {
    pub fn notify(&self) {
        *self.flag.lock().unwrap() = true;
        self.cv.notify_all();
    }

    /// Wait until notified or `timeout` passes; clears the flag.
    pub fn wait(&self, timeout: Option<std::time::Duration>) {
        let mut f = self.flag.lock().unwrap();
        if !*f {
            f = match timeout {
                Some(t) => self.cv.wait_timeout(f, t).unwrap().0,
                None => self.cv.wait(f).unwrap(),
            };
        }
        *f = false;
    }
}

pub struct EventChannels {
    ports: Vec<Port>,
    virqs: [Option<u32>; NR_VIRQS as usize],
}

impl Default for EventChannels {
    fn default() -> Self {
        EventChannels {
            ports: vec![Port::Free; 64],
            virqs: [None; NR_VIRQS as usize],
        }
    }
}

pub const MAX_PORTS: u32 = EVTCHN_2L_NR_CHANNELS;

impl EventChannels {
    pub fn get(&self, port: u32) -> Option<Port> {
        self.ports.get(port as usize).copied()
    }

    /// Reserve a specific port for a backend (builder-assigned ports).
    pub fn reserve_backend(&mut self, port: u32) {
        self.ensure(port);
        self.ports[port as usize] = Port::Backend;
    }

    fn ensure(&mut self, port: u32) {
        if self.ports.len() <= port as usize {
            self.ports.resize(port as usize + 1, Port::Free);
        }
    }

    /// Allocate the lowest free port (port 0 is never used).
    pub fn alloc(&mut self, what: Port) -> Option<u32> {
        let p = (1..MAX_PORTS).find(|&p| self.get(p).is_none_or(|x| x == Port::Free))?;
        self.ensure(p);
        self.ports[p as usize] = what;
        if let Port::Virq { virq, .. } = what {
            self.virqs[virq as usize] = Some(p);
        }
        Some(p)
    }

    pub fn virq_port(&self, virq: u32) -> Option<u32> {
        self.virqs.get(virq as usize).copied().flatten()
    }

    pub fn close(&mut self, port: u32) -> bool {
        match self.get(port) {
            Some(Port::Free) | None => false,
            Some(p) => {
                if let Port::Virq { virq, .. } = p {
                    self.virqs[virq as usize] = None;
                }
                self.ports[port as usize] = Port::Free;
                true
            }
        }
    }

    pub fn set(&mut self, port: u32, what: Port) {
        self.ensure(port);
        self.ports[port as usize] = what;
    }
}

/// Access to the event bitmaps in guest memory.
pub struct EventBits<'a> {
    pub ram: &'a GuestRam,
    pub shared_info_gpa: u64,
}

impl EventBits<'_> {
    fn atomic64(&self, gpa: u64) -> Option<&AtomicU64> {
        if !gpa.is_multiple_of(8) || gpa + 8 > self.ram.size() {
            return None;
        }
        // SAFETY: the address is inside the guest mapping (checked above),
        // 8-byte aligned, and the mapping lives as long as `ram`. The guest
        // accesses the same word with locked instructions, so atomics are the
        // right access; no Rust reference to this memory exists elsewhere.
        Some(unsafe { &*((self.ram.host_base() + gpa) as *const AtomicU64) })
    }

    fn atomic8(&self, gpa: u64) -> Option<&AtomicU8> {
        if gpa + 1 > self.ram.size() {
            return None;
        }
        // SAFETY: as for `atomic64`; a byte needs no alignment.
        Some(unsafe { &*((self.ram.host_base() + gpa) as *const AtomicU8) })
    }

    /// Mark `port` pending; if it is not masked, flag the vCPU whose
    /// vcpu_info is at `vcpu_info_gpa`. Returns true if the vCPU should be
    /// woken (an upcall became pending).
    pub fn set_pending(&self, port: u32, vcpu_info_gpa: u64) -> bool {
        if port >= MAX_PORTS {
            return false;
        }
        let word = (port / 64) as u64;
        let bit = 1u64 << (port % 64);
        let Some(pending) = self.atomic64(self.shared_info_gpa + SHINFO_PENDING + word * 8) else {
            return false;
        };
        if pending.fetch_or(bit, Ordering::SeqCst) & bit != 0 {
            return false;
        }
        let masked = self
            .atomic64(self.shared_info_gpa + SHINFO_MASK + word * 8)
            .is_some_and(|m| m.load(Ordering::SeqCst) & bit != 0);
        if masked {
            return false;
        }
        self.mark_upcall(word, vcpu_info_gpa)
    }

    fn mark_upcall(&self, word: u64, vcpu_info_gpa: u64) -> bool {
        let Some(sel) = self.atomic64(vcpu_info_gpa + VI_SEL) else {
            return false;
        };
        if sel.fetch_or(1 << word, Ordering::SeqCst) & (1 << word) != 0 {
            return false;
        }
        if let Some(p) = self.atomic8(vcpu_info_gpa + VI_PENDING) {
            p.store(1, Ordering::SeqCst);
        }
        true
    }

    /// EVTCHNOP_unmask: clear the mask bit and re-raise if pending.
    pub fn unmask(&self, port: u32, vcpu_info_gpa: u64) -> bool {
        if port >= MAX_PORTS {
            return false;
        }
        let word = (port / 64) as u64;
        let bit = 1u64 << (port % 64);
        let Some(mask) = self.atomic64(self.shared_info_gpa + SHINFO_MASK + word * 8) else {
            return false;
        };
        mask.fetch_and(!bit, Ordering::SeqCst);
        let pending = self
            .atomic64(self.shared_info_gpa + SHINFO_PENDING + word * 8)
            .is_some_and(|p| p.load(Ordering::SeqCst) & bit != 0);
        pending && self.mark_upcall(word, vcpu_info_gpa)
    }

    /// Clear a port's pending bit (on close).
    pub fn clear_pending(&self, port: u32) {
        if port >= MAX_PORTS {
            return;
        }
        let word = (port / 64) as u64;
        if let Some(p) = self.atomic64(self.shared_info_gpa + SHINFO_PENDING + word * 8) {
            p.fetch_and(!(1u64 << (port % 64)), Ordering::SeqCst);
        }
    }

    pub fn upcall_pending(&self, vcpu_info_gpa: u64) -> bool {
        self.atomic8(vcpu_info_gpa + VI_PENDING)
            .is_some_and(|p| p.load(Ordering::SeqCst) != 0)
    }

    pub fn upcall_mask(&self, vcpu_info_gpa: u64) -> u8 {
        self.atomic8(vcpu_info_gpa + VI_MASK)
            .map_or(1, |p| p.load(Ordering::SeqCst))
    }

    pub fn set_upcall_mask(&self, vcpu_info_gpa: u64, v: u8) {
        if let Some(p) = self.atomic8(vcpu_info_gpa + VI_MASK) {
            p.store(v, Ordering::SeqCst);
        }
    }

    pub fn is_pending(&self, port: u32) -> bool {
        port < MAX_PORTS
            && self
                .atomic64(self.shared_info_gpa + SHINFO_PENDING + (port / 64) as u64 * 8)
                .is_some_and(|p| p.load(Ordering::SeqCst) & (1 << (port % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_close_virq() {
        let mut ev = EventChannels::default();
        ev.reserve_backend(1);
        ev.reserve_backend(2);
        let p = ev
            .alloc(Port::Virq {
                virq: xen_abi::VIRQ_TIMER,
                vcpu: 0,
            })
            .unwrap();
        assert_eq!(p, 3);
        assert_eq!(ev.virq_port(xen_abi::VIRQ_TIMER), Some(3));
        assert!(ev.close(3));
        assert!(!ev.close(3));
        assert_eq!(ev.virq_port(xen_abi::VIRQ_TIMER), None);
    }

    #[test]
    fn pending_and_mask() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let bits = EventBits {
            ram: &ram,
            shared_info_gpa: 0x1000,
        };
        let vi = 0x1000;
        assert!(bits.set_pending(5, vi));
        assert!(bits.upcall_pending(vi));
        assert!(!bits.set_pending(5, vi), "already pending");
        // Masked port: pending but no upcall.
        ram.write_u64(0x1000 + SHINFO_MASK, 1 << 9).unwrap();
        ram.write_u8(vi + VI_PENDING, 0).unwrap();
        ram.write_u64(vi + VI_SEL, 0).unwrap();
        assert!(!bits.set_pending(9, vi));
        assert!(bits.is_pending(9));
        assert!(bits.unmask(9, vi));
        assert!(bits.upcall_pending(vi));
        assert!(!bits.set_pending(MAX_PORTS + 1, vi));
    }
}
