//! Event channels (`xen/event_channel.h`) and virtual IRQ numbers
//! (`VIRQ_*`, from `xen/xen.h`): `HYPERVISOR_event_channel_op(cmd, arg)`.

use crate::xen::DomId;

/// An event channel port (`evtchn_port_t`).
pub type EvtchnPort = u32;

pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
pub const EVTCHNOP_CLOSE: u32 = 3;
pub const EVTCHNOP_SEND: u32 = 4;
pub const EVTCHNOP_STATUS: u32 = 5;
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
pub const EVTCHNOP_BIND_IPI: u32 = 7;
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
pub const EVTCHNOP_UNMASK: u32 = 9;
pub const EVTCHNOP_RESET: u32 = 10;
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;
/// Hypervisor-internal continuation of `EVTCHNOP_RESET`.
pub const EVTCHNOP_RESET_CONT: u32 = 14;

// ---------------------------------------------------------------------------
// Virtual IRQs. V = per vCPU, G = global.
// ---------------------------------------------------------------------------

/// V. Timebase update and/or requested timeout.
pub const VIRQ_TIMER: u32 = 0;
/// V. Request the guest to dump debug info.
pub const VIRQ_DEBUG: u32 = 1;
/// G. (dom0) Bytes received on the emergency console.
pub const VIRQ_CONSOLE: u32 = 2;
/// G. (dom0) Exceptional event for some domain.
pub const VIRQ_DOM_EXC: u32 = 3;
/// G. (dom0) Trace buffer has records available.
pub const VIRQ_TBUF: u32 = 4;
/// G. (dom0) A domain has paused for debugging.
pub const VIRQ_DEBUGGER: u32 = 6;
/// V. XenOprofile interrupt.
pub const VIRQ_XENOPROF: u32 = 7;
/// G. (dom0) Bytes received on the console.
pub const VIRQ_CON_RING: u32 = 8;
/// G. (dom0) Physical CPU state changed.
pub const VIRQ_PCPU_STATE: u32 = 9;
/// G. (dom0) A memory event has occurred.
pub const VIRQ_MEM_EVENT: u32 = 10;
/// G. Argo interdomain message notification.
pub const VIRQ_ARGO: u32 = 11;
/// G. (dom0) Low on heap memory.
pub const VIRQ_ENOMEM: u32 = 12;
/// V. PMC interrupt.
pub const VIRQ_XENPMU: u32 = 13;
pub const VIRQ_ARCH_0: u32 = 16;
pub const VIRQ_ARCH_1: u32 = 17;
pub const VIRQ_ARCH_2: u32 = 18;
pub const VIRQ_ARCH_3: u32 = 19;
pub const VIRQ_ARCH_4: u32 = 20;
pub const VIRQ_ARCH_5: u32 = 21;
pub const VIRQ_ARCH_6: u32 = 22;
pub const VIRQ_ARCH_7: u32 = 23;
/// x86: G. (dom0) Machine Check Architecture.
pub const VIRQ_MCA: u32 = VIRQ_ARCH_0;
pub const NR_VIRQS: u32 = 24;

/// Ports in the 2-level ABI: `bits(xen_ulong_t)^2` = 4096 on x86-64.
pub const EVTCHN_2L_NR_CHANNELS: u32 = 64 * 64;
/// Old name (interfaces before 0x00040400).
pub const NR_EVENT_CHANNELS: u32 = EVTCHN_2L_NR_CHANNELS;

/// `evtchn_bind_pirq.flags`: the PIRQ may be shared.
pub const BIND_PIRQ_WILL_SHARE: u32 = 1;

/// `evtchn_status.status`: not in use.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// Awaiting an interdomain connection.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// Connected to a remote domain.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// Bound to a physical IRQ.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// Bound to a virtual IRQ.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// Bound to an inter-vCPU IPI.
pub const EVTCHNSTAT_IPI: u32 = 5;

// FIFO ABI.
pub const EVTCHN_FIFO_PRIORITY_MAX: u32 = 0;
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u32 = 7;
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;
pub const EVTCHN_FIFO_MAX_QUEUES: usize = EVTCHN_FIFO_PRIORITY_MIN as usize + 1;
/// Bit numbers in an `event_word_t`.
pub const EVTCHN_FIFO_PENDING: u32 = 31;
pub const EVTCHN_FIFO_MASKED: u32 = 30;
pub const EVTCHN_FIFO_LINKED: u32 = 29;
pub const EVTCHN_FIFO_BUSY: u32 = 28;
pub const EVTCHN_FIFO_LINK_BITS: u32 = 17;
pub const EVTCHN_FIFO_LINK_MASK: u32 = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
pub const EVTCHN_FIFO_NR_CHANNELS: u32 = 1 << EVTCHN_FIFO_LINK_BITS;

pod!(
    /// `struct evtchn_alloc_unbound`: allocate a port in `dom` that
    /// `remote_dom` may bind to.
    EvtchnAllocUnbound, 8, {
        dom: DomId,
        remote_dom: DomId,
        /// Output.
        port: EvtchnPort,
    }
);

pod!(
    /// `struct evtchn_bind_interdomain`.
    EvtchnBindInterdomain, 12, {
        remote_dom: DomId,
        _pad0: u16,
        remote_port: EvtchnPort,
        /// Output.
        local_port: EvtchnPort,
    }
);

pod!(
    /// `struct evtchn_bind_virq`.
    EvtchnBindVirq, 12, {
        /// `VIRQ_*`.
        virq: u32,
        vcpu: u32,
        /// Output.
        port: EvtchnPort,
    }
);

pod!(
    /// `struct evtchn_bind_pirq`.
    EvtchnBindPirq, 12, {
        pirq: u32,
        /// `BIND_PIRQ_WILL_SHARE`.
        flags: u32,
        /// Output.
        port: EvtchnPort,
    }
);

pod!(
    /// `struct evtchn_bind_ipi`.
    EvtchnBindIpi, 8, {
        vcpu: u32,
        /// Output.
        port: EvtchnPort,
    }
);

pod!(
    /// `struct evtchn_close`.
    EvtchnClose, 4, { port: EvtchnPort }
);

pod!(
    /// `struct evtchn_send`.
    EvtchnSend, 4, { port: EvtchnPort }
);

pod!(
    /// `struct evtchn_status` (24 bytes).
    ///
    /// The C union `u` at offset 16 is kept as two raw words:
    /// - `EVTCHNSTAT_UNBOUND`: `u[0] & 0xffff` = `unbound.dom`;
    /// - `EVTCHNSTAT_INTERDOMAIN`: `u[0] & 0xffff` = `interdomain.dom`,
    ///   `u[1]` = `interdomain.port`;
    /// - `EVTCHNSTAT_PIRQ`: `u[0]` = `pirq`; `EVTCHNSTAT_VIRQ`: `u[0]` = `virq`.
    EvtchnStatus, 24, {
        /// Input.
        dom: DomId,
        _pad0: u16,
        /// Input.
        port: EvtchnPort,
        /// Output: `EVTCHNSTAT_*`.
        status: u32,
        /// Output: the vCPU notified.
        vcpu: u32,
        u: [u32; 2],
    }
);

pod!(
    /// `struct evtchn_bind_vcpu`.
    EvtchnBindVcpu, 8, {
        port: EvtchnPort,
        vcpu: u32,
    }
);

pod!(
    /// `struct evtchn_unmask`.
    EvtchnUnmask, 4, { port: EvtchnPort }
);

pod!(
    /// `struct evtchn_reset`.
    EvtchnReset, 2, { dom: DomId }
);

pod!(
    /// `struct evtchn_init_control`: switch to the FIFO ABI.
    EvtchnInitControl, 24, {
        control_gfn: u64,
        offset: u32,
        vcpu: u32,
        /// Output.
        link_bits: u8,
        _pad: [u8; 7],
    }
);

pod!(
    /// `struct evtchn_expand_array`.
    EvtchnExpandArray, 8, { array_gfn: u64 }
);

pod!(
    /// `struct evtchn_set_priority`.
    EvtchnSetPriority, 8, {
        port: EvtchnPort,
        priority: u32,
    }
);

pod!(
    /// `struct evtchn_fifo_control_block`.
    EvtchnFifoControlBlock, 72, {
        ready: u32,
        _rsvd: u32,
        head: [u32; EVTCHN_FIFO_MAX_QUEUES],
    }
);
