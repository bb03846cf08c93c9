//! Memory reservation and physmap operations (`xen/memory.h`):
//! `HYPERVISOR_memory_op(cmd, arg)`, plus the E820 entry that
//! `XENMEM_memory_map` fills in.

use crate::xen::{DomId, GuestHandle, XenPfn};

/// Give extents to a domain ([`XenMemoryReservation`]); returns the number done.
pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
/// Take extents from a domain ([`XenMemoryReservation`]); returns the number done.
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
/// Largest machine frame number in the system; arg is NULL.
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
/// Current pages of a domain; arg points to a `domid_t`.
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
/// Maximum pages of a domain; arg points to a `domid_t`.
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
/// MFNs of the M2P table's frames ([`XenMachphysMfnList`]).
pub const XENMEM_MACHPHYS_MFN_LIST: u32 = 5;
/// Populate guest-physical frames ([`XenMemoryReservation`]).
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
/// [`XenAddToPhysmap`].
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
/// The domain's pseudo-physical memory map as E820 entries ([`XenMemoryMap`]).
pub const XENMEM_MEMORY_MAP: u32 = 9;
/// The machine memory map (privileged; [`XenMemoryMap`]).
pub const XENMEM_MACHINE_MEMORY_MAP: u32 = 10;
/// [`XenMemoryExchange`].
pub const XENMEM_EXCHANGE: u32 = 11;
/// Where the M2P table is mapped ([`XenMachphysMapping`]).
pub const XENMEM_MACHPHYS_MAPPING: u32 = 12;
/// Set a domain's memory map ([`XenForeignMemoryMap`], toolstack).
pub const XENMEM_SET_MEMORY_MAP: u32 = 13;
/// Largest guest frame number in use; arg points to a `domid_t`.
pub const XENMEM_MAXIMUM_GPFN: u32 = 14;
/// [`XenRemoveFromPhysmap`].
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;
pub const XENMEM_SET_POD_TARGET: u32 = 16;
pub const XENMEM_GET_POD_TARGET: u32 = 17;
pub const XENMEM_GET_SHARING_FREED_PAGES: u32 = 18;
pub const XENMEM_GET_SHARING_SHARED_PAGES: u32 = 19;
pub const XENMEM_PAGING_OP: u32 = 20;
pub const XENMEM_ACCESS_OP: u32 = 21;
pub const XENMEM_SHARING_OP: u32 = 22;
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u32 = 23;
pub const XENMEM_CLAIM_PAGES: u32 = 24;
pub const XENMEM_MACHPHYS_COMPAT_MFN_LIST: u32 = 25;
pub const XENMEM_GET_VNUMAINFO: u32 = 26;
pub const XENMEM_RESERVED_DEVICE_MEMORY_MAP: u32 = 27;
/// [`XenMemAcquireResource`].
pub const XENMEM_ACQUIRE_RESOURCE: u32 = 28;

/// `mem_flags`: populate-on-demand.
pub const XENMEMF_POPULATE_ON_DEMAND: u32 = 1 << 16;
pub const XENMEMF_EXACT_NODE_REQUEST: u32 = 1 << 17;
pub const XENMEMF_VNODE: u32 = 1 << 18;

/// `XENMEMF_address_bits(x)`: restrict the machine address width.
pub const fn xenmemf_address_bits(bits: u32) -> u32 {
    bits
}
/// `XENMEMF_get_address_bits(flags)`.
pub const fn xenmemf_get_address_bits(flags: u32) -> u32 {
    flags & 0xff
}
/// `XENMEMF_node(node)`: NUMA node hint.
pub const fn xenmemf_node(node: u32) -> u32 {
    (node + 1) << 8
}
/// `XENMEMF_get_node(flags)`.
pub const fn xenmemf_get_node(flags: u32) -> u32 {
    ((flags >> 8).wrapping_sub(1)) & 0xff
}

/// Map spaces for [`XenAddToPhysmap::space`].
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
pub const XENMAPSPACE_GMFN: u32 = 2;
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;
/// OR into `idx` with `XENMAPSPACE_GRANT_TABLE` to map status frames.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// `xen_mem_acquire_resource.type`.
pub const XENMEM_RESOURCE_IOREQ_SERVER: u16 = 0;
pub const XENMEM_RESOURCE_GRANT_TABLE: u16 = 1;
pub const XENMEM_RESOURCE_VMTRACE_BUF: u16 = 2;
/// `xen_mem_acquire_resource.id` for grant tables.
pub const XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED: u32 = 0;
pub const XENMEM_RESOURCE_GRANT_TABLE_ID_STATUS: u32 = 1;

/// E820 types used in [`E820Entry::type_`].
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;
pub const E820_ACPI: u32 = 3;
pub const E820_NVS: u32 = 4;
pub const E820_UNUSABLE: u32 = 5;
pub const E820_DISABLED: u32 = 6;
pub const E820_PMEM: u32 = 7;

pod!(
    /// `struct xen_memory_reservation`.
    XenMemoryReservation, 32, {
        /// Guest address of an array of `xen_pfn_t`: MFNs (decrease), GPFNs
        /// (populate, increase outputs MFNs).
        extent_start: GuestHandle,
        /// Number of extents.
        nr_extents: u64,
        /// Each extent is `2^extent_order` pages.
        extent_order: u32,
        /// `XENMEMF_*` (called `address_bits` before interface 0x00030209).
        mem_flags: u32,
        /// `DOMID_SELF` or, for privileged callers, another domain.
        domid: DomId,
        _pad0: [u16; 3],
    }
);

pod!(
    /// `struct xen_memory_exchange`.
    XenMemoryExchange, 72, {
        in_: XenMemoryReservation,
        out: XenMemoryReservation,
        /// Output: extents exchanged so far.
        nr_exchanged: u64,
    }
);

pod!(
    /// `struct xen_machphys_mfn_list`.
    XenMachphysMfnList, 24, {
        max_extents: u32,
        _pad0: u32,
        extent_start: GuestHandle,
        /// Output.
        nr_extents: u32,
        _pad1: u32,
    }
);

pod!(
    /// `struct xen_machphys_mapping`: where the M2P table is mapped.
    XenMachphysMapping, 24, {
        /// Start and end of the virtual range.
        v_start: u64,
        v_end: u64,
        /// Largest MFN the table covers.
        max_mfn: u64,
    }
);

pod!(
    /// `struct xen_add_to_physmap`.
    XenAddToPhysmap, 24, {
        domid: DomId,
        /// Number of GMFNs for `XENMAPSPACE_GMFN_RANGE`.
        size: u16,
        /// `XENMAPSPACE_*`.
        space: u32,
        /// Index into the space.
        idx: u64,
        /// Guest frame to map it at.
        gpfn: XenPfn,
    }
);

pod!(
    /// `struct xen_remove_from_physmap`.
    XenRemoveFromPhysmap, 16, {
        domid: DomId,
        _pad0: [u16; 3],
        gpfn: XenPfn,
    }
);

pod!(
    /// `struct xen_memory_map`: in, capacity of `buffer` in entries; out,
    /// entries written.
    XenMemoryMap, 16, {
        nr_entries: u32,
        _pad0: u32,
        /// Guest address of an array of [`E820Entry`].
        buffer: GuestHandle,
    }
);

pod!(
    /// `struct xen_foreign_memory_map`.
    XenForeignMemoryMap, 24, {
        domid: DomId,
        _pad0: [u16; 3],
        map: XenMemoryMap,
    }
);

pod!(
    /// `struct xen_mem_acquire_resource`.
    XenMemAcquireResource, 32, {
        domid: DomId,
        /// `XENMEM_RESOURCE_*` (`type` in C).
        type_: u16,
        id: u32,
        nr_frames: u32,
        pad: u32,
        frame: u64,
        frame_list: GuestHandle,
    }
);

/// One E820 entry as written by `XENMEM_memory_map` (20 bytes, packed).
///
/// The public headers do not define it; Xen's own `struct e820entry` and
/// Linux's `struct e820_entry` are both packed.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    /// `E820_*` (`type` in C).
    pub type_: u32,
}
const _: () = assert!(size_of::<E820Entry>() == 20);
// SAFETY: plain-old-data: packed integers, no padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for E820Entry {}
