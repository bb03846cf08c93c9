//! Xen public ABI types and constants for x86-64 PV guests. No logic.
//!
//! Our own Rust rendering of the interface described by Xen's public headers
//! (`/usr/include/xen/`, Debian package `libxen-dev`); every struct's size,
//! alignment and field offsets, and the constants, are checked against those
//! headers by `tests/layout.rs`.
//!
//! # Contents
//!
//! | module | header | what |
//! | --- | --- | --- |
//! | [`xen`] | `xen.h`, `errno.h` | hypercall numbers, `MMU_*`, `MMUEXT_*`, `UVMF_*`, `VMASST_*`, `CONSOLEIO_*`, `DOMID_*`, `SIF_*`, `XEN_E*`; [`MmuUpdate`], [`MmuextOp`], [`MulticallEntry`], [`StartInfo`], [`SharedInfo`], [`VcpuInfo`], [`VcpuTimeInfo`] |
//! | [`arch_x86_64`] | `arch-x86/xen.h`, `arch-x86/xen-x86_64.h` | `FLAT_*` selectors, `HYPERVISOR_VIRT_*`, `MACH2PHYS_*`, `SEGBASE_*`, `VGCF_*`, `FIRST_RESERVED_GDT_*`, `TI_*`; [`TrapInfo`], [`IretContext`], [`ArchVcpuInfo`], [`ArchSharedInfo`], [`CpuUserRegs`], [`VcpuGuestContext`] |
//! | [`vcpu`] | `vcpu.h` | `VCPUOP_*`, `RUNSTATE_*`; [`VcpuRunstateInfo`], [`VcpuRegisterVcpuInfo`], [`VcpuSetSingleshotTimer`], ... |
//! | [`event_channel`] | `event_channel.h` (+ `VIRQ_*` from `xen.h`) | `EVTCHNOP_*`, `EVTCHNSTAT_*`, `VIRQ_*`, [`EVTCHN_2L_NR_CHANNELS`]; one struct per op |
//! | [`sched`] | `sched.h` | `SCHEDOP_*`, `SHUTDOWN_*`; [`SchedShutdown`], [`SchedPoll`], ... |
//! | [`callback`] | `callback.h` | `CALLBACKOP_*`, `CALLBACKTYPE_*`, [`CALLBACKF_MASK_EVENTS`]; [`CallbackRegister`], [`CallbackUnregister`] |
//! | [`memory`] | `memory.h` | `XENMEM_*`, `XENMAPSPACE_*`, `E820_*`; [`XenMemoryReservation`], [`XenMachphysMapping`], [`XenMemoryMap`], [`XenAddToPhysmap`], [`E820Entry`], ... |
//! | [`grant_table`] | `grant_table.h` | `GNTTABOP_*`, `GTF_*`, `GNTMAP_*`, `GNTST_*`; [`GrantEntryV1`], [`GntTabSetupTable`], [`GntTabQuerySize`], [`GntTabSetVersion`], [`GntTabCopy`], ... |
//! | [`version`] | `version.h`, `features.h` | `XENVER_*`, `XENFEAT_*`; [`XenFeatureInfo`], [`XenExtraversion`], [`XenCapabilitiesInfo`], [`XenPlatformParameters`], ... |
//! | [`physdev`] | `physdev.h` | `PHYSDEVOP_*`; [`PhysdevSetIopl`], [`PhysdevIrqStatusQuery`], ... |
//! | [`elfnote`] | `elfnote.h` | `XEN_ELFNOTE_*` |
//! | [`io::ring`] | `io/ring.h` | [`SringHeader`], [`ring_size`] |
//! | [`io::console`] | `io/console.h` | [`XenconsInterface`] |
//! | [`io::xs_wire`] | `io/xs_wire.h` | [`XsSockmsgType`], [`XsdSockmsg`], [`XenstoreDomainInterface`], [`XSD_ERRORS`], [`XsWatchType`], `XENSTORE_*` |
//! | [`io::xenbus`] | `io/xenbus.h` | [`XenbusState`] |
//! | [`io::blkif`] | `io/blkif.h` | `BLKIF_*`, `VDISK_*`; [`BlkifRequest`], [`BlkifResponse`], [`BlkifRequestIndirect`], ... |
//! | [`io::netif`] | `io/netif.h` | `NETTXF_*`, `NETRXF_*`, `XEN_NETIF_*`; [`NetifTxRequest`], [`NetifRxResponse`], ... |
//! | [`io::protocols`] | `io/protocols.h` | `XEN_IO_PROTO_ABI_*` |
//!
//! Everything is also re-exported at the crate root.
//!
//! # Conventions
//!
//! - Names: constants keep the header's name, upper-cased, without leading
//!   underscores (`__HYPERVISOR_mmu_update` is [`HYPERVISOR_MMU_UPDATE`]);
//!   structs are the header's name in CamelCase (`struct mmu_update` is
//!   [`MmuUpdate`]); fields keep the C name, with `_` appended where it is a
//!   Rust keyword (`type_`, `in_`, `ref_`).
//! - Types: `unsigned long`, `xen_ulong_t`, `xen_pfn_t` and guest handles
//!   are `u64` (x86-64). Hypercall numbers are `u64` (they arrive in `rax`);
//!   sub-command numbers are `u32`, like the C `unsigned int cmd` (a handler
//!   truncates the register to 32 bits, as Xen does); other constants take
//!   the type of the field they go into. Error codes are positive `i64`:
//!   hypercalls return their negation.
//! - C unions are flattened into raw integer fields of the same size, with
//!   the meaning of each member documented on the field or struct.
//! - Every struct is `#[repr(C)]` with all padding spelt out as `_pad*`
//!   fields (so no byte is uninitialised) and implements
//!   [`vm_memory::ByteValued`], so it can be read from and written to guest
//!   memory directly. Each has a compile-time size assertion.

/// Defines a plain-old-data ABI struct: `#[repr(C)]`, the usual derives, a
/// compile-time size check and `ByteValued`. Every field of every use is an
/// integer, an integer array or another such struct, and padding is spelt
/// out as fields, which is what makes the `unsafe impl` sound.
macro_rules! pod {
    ($(#[$m:meta])* $name:ident, $size:expr, { $($(#[$fm:meta])* $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fm])* pub $f: $t,)*
        }
        const _: () = assert!(size_of::<$name>() == $size);
        // SAFETY: plain-old-data: integers (and arrays or structs of them)
        // with explicit padding fields, so every byte is initialised and
        // every bit pattern is a valid value.
        unsafe impl vm_memory::ByteValued for $name {}
    };
}

pub mod arch_x86_64;
pub mod callback;
pub mod elfnote;
pub mod event_channel;
pub mod grant_table;
pub mod io;
pub mod memory;
pub mod physdev;
pub mod sched;
pub mod vcpu;
pub mod version;
pub mod xen;

pub use arch_x86_64::*;
pub use callback::*;
pub use elfnote::*;
pub use event_channel::*;
pub use grant_table::*;
pub use io::blkif::*;
pub use io::console::*;
pub use io::netif::*;
pub use io::protocols::*;
pub use io::ring::*;
pub use io::xenbus::*;
pub use io::xs_wire::*;
pub use memory::*;
pub use physdev::*;
pub use sched::*;
pub use vcpu::*;
pub use version::*;
pub use xen::*;

use std::fmt;

/// A number or string that is not a valid value of an ABI enumeration
/// (from `TryFrom<u32>` or `FromStr`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidValue {
    /// What was being parsed, e.g. `"xenbus state"`.
    pub what: &'static str,
    /// The offending input, as text.
    pub value: String,
}

impl InvalidValue {
    pub(crate) fn new(what: &'static str, value: impl fmt::Display) -> Self {
        Self {
            what,
            value: value.to_string(),
        }
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {:?}", self.what, self.value)
    }
}

impl std::error::Error for InvalidValue {}
