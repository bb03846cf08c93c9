//! Grant tables (`xen/grant_table.h`): `HYPERVISOR_grant_table_op(cmd, arg, count)`.

use crate::xen::{DomId, GuestHandle, XenPfn};

/// A grant reference (`grant_ref_t`).
pub type GrantRef = u32;
/// A grant mapping handle (`grant_handle_t`).
pub type GrantHandle = u32;

pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
pub const GNTTABOP_DUMP_TABLE: u32 = 3;
pub const GNTTABOP_TRANSFER: u32 = 4;
pub const GNTTABOP_COPY: u32 = 5;
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
pub const GNTTABOP_UNMAP_AND_REPLACE: u32 = 7;
pub const GNTTABOP_SET_VERSION: u32 = 8;
pub const GNTTABOP_GET_STATUS_FRAMES: u32 = 9;
pub const GNTTABOP_GET_VERSION: u32 = 10;
pub const GNTTABOP_SWAP_GRANT_REF: u32 = 11;
pub const GNTTABOP_CACHE_FLUSH: u32 = 12;

/// Entries 0..8 are reserved for the toolstack.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// Reserved entry granting the console ring to the backend.
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
/// Reserved entry granting the xenstore ring to xenstored.
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;

// Grant entry flags (`GrantEntryV1::flags`), type in bits 0..=1.
pub const GTF_INVALID: u16 = 0;
pub const GTF_PERMIT_ACCESS: u16 = 1;
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
pub const GTF_TRANSITIVE: u16 = 3;
pub const GTF_TYPE_MASK: u16 = 3;
/// Access is read-only.
pub const GTF_READONLY: u16 = 1 << 2;
/// Set by the hypervisor while the grant is mapped for reading.
pub const GTF_READING: u16 = 1 << 3;
/// Set by the hypervisor while the grant is mapped for writing.
pub const GTF_WRITING: u16 = 1 << 4;
pub const GTF_PWT: u16 = 1 << 5;
pub const GTF_PCD: u16 = 1 << 6;
pub const GTF_PAT: u16 = 1 << 7;
/// v2 only: a sub-page grant.
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// Transfer: committed (same bit as `GTF_READONLY`).
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// Transfer: completed (same bit as `GTF_READING`).
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

// GNTTABOP_map_grant_ref flags.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
pub const GNTMAP_READONLY: u32 = 1 << 2;
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;
pub const GNTMAP_GUEST_AVAIL0: u32 = 16;
pub const GNTMAP_GUEST_AVAIL_MASK: u32 = !0u32 << GNTMAP_GUEST_AVAIL0;

// GNTTABOP_copy flags.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

// GNTTABOP_cache_flush ops.
pub const GNTTAB_CACHE_CLEAN: u32 = 1 << 0;
pub const GNTTAB_CACHE_INVAL: u32 = 1 << 1;
pub const GNTTAB_CACHE_SOURCE_GREF: u32 = 1 << 31;

// Per-operation status codes.
pub const GNTST_OKAY: i16 = 0;
pub const GNTST_GENERAL_ERROR: i16 = -1;
pub const GNTST_BAD_DOMAIN: i16 = -2;
pub const GNTST_BAD_GNTREF: i16 = -3;
pub const GNTST_BAD_HANDLE: i16 = -4;
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
pub const GNTST_PERMISSION_DENIED: i16 = -8;
pub const GNTST_BAD_PAGE: i16 = -9;
pub const GNTST_BAD_COPY_ARG: i16 = -10;
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
pub const GNTST_EAGAIN: i16 = -12;
pub const GNTST_NO_SPACE: i16 = -13;

/// `GNTTABOP_error_msgs`: message for status `-i` at index `i`.
pub const GNTTABOP_ERROR_MSGS: [&str; 14] = [
    "okay",
    "undefined error",
    "unrecognised domain id",
    "invalid grant reference",
    "invalid mapping handle",
    "invalid virtual address",
    "invalid device address",
    "no spare translation slot in the I/O MMU",
    "permission denied",
    "bad page",
    "copy arguments cross page boundary",
    "page address size too large",
    "operation not done; try again",
    "out of space",
];

pod!(
    /// `struct grant_entry_v1`: one entry of a v1 grant table (512 per page).
    GrantEntryV1, 8, {
        /// `GTF_*`.
        flags: u16,
        /// The domain being granted access.
        domid: DomId,
        /// The frame (GFN) being granted; for transfers, written by Xen.
        frame: u32,
    }
);

pod!(
    /// `struct grant_entry_header`: the common head of a v2 entry.
    GrantEntryHeader, 4, {
        flags: u16,
        domid: DomId,
    }
);

pod!(
    /// `union grant_entry_v2` (16 bytes), as raw words after the header:
    /// - `full_page`: `word1` = pad, `frame` = the frame;
    /// - `sub_page`: `word1` = `page_off | length << 16`, `frame` = the frame;
    /// - `transitive`: `word1` = `trans_domid | pad << 16`, low 32 bits of
    ///   `frame` = `gref`.
    GrantEntryV2, 16, {
        hdr: GrantEntryHeader,
        word1: u32,
        frame: u64,
    }
);

/// v2 status entry (`grant_status_t`).
pub type GrantStatus = u16;

pod!(
    /// `struct gnttab_map_grant_ref`.
    GntTabMapGrantRef, 32, {
        host_addr: u64,
        /// `GNTMAP_*`.
        flags: u32,
        ref_: GrantRef,
        dom: DomId,
        /// Output: `GNTST_*`.
        status: i16,
        /// Output.
        handle: GrantHandle,
        /// Output.
        dev_bus_addr: u64,
    }
);

pod!(
    /// `struct gnttab_unmap_grant_ref`.
    GntTabUnmapGrantRef, 24, {
        host_addr: u64,
        dev_bus_addr: u64,
        handle: GrantHandle,
        /// Output: `GNTST_*`.
        status: i16,
        _pad0: u16,
    }
);

pod!(
    /// `struct gnttab_setup_table`: get the frames of the grant table.
    GntTabSetupTable, 24, {
        dom: DomId,
        _pad0: u16,
        nr_frames: u32,
        /// Output: `GNTST_*`.
        status: i16,
        _pad1: [u16; 3],
        /// Guest address of an array of `xen_pfn_t` (output).
        frame_list: GuestHandle,
    }
);

pod!(
    /// `struct gnttab_dump_table`.
    GntTabDumpTable, 4, {
        dom: DomId,
        /// Output: `GNTST_*`.
        status: i16,
    }
);

pod!(
    /// `struct gnttab_transfer`.
    GntTabTransfer, 24, {
        mfn: XenPfn,
        domid: DomId,
        _pad0: u16,
        ref_: GrantRef,
        /// Output: `GNTST_*`.
        status: i16,
        _pad1: [u16; 3],
    }
);

pod!(
    /// `struct gnttab_copy_ptr`: one side of a [`GntTabCopy`].
    ///
    /// `u` is the C union: a grant reference (low 32 bits) with
    /// `GNTCOPY_*_GREF`, else a GMFN.
    GntTabCopyPtr, 16, {
        u: u64,
        domid: DomId,
        offset: u16,
        _pad0: u32,
    }
);

pod!(
    /// `struct gnttab_copy`.
    GntTabCopy, 40, {
        source: GntTabCopyPtr,
        dest: GntTabCopyPtr,
        len: u16,
        /// `GNTCOPY_*`.
        flags: u16,
        /// Output: `GNTST_*`.
        status: i16,
        _pad0: u16,
    }
);

pod!(
    /// `struct gnttab_query_size`.
    GntTabQuerySize, 16, {
        dom: DomId,
        _pad0: u16,
        /// Output.
        nr_frames: u32,
        /// Output.
        max_nr_frames: u32,
        /// Output: `GNTST_*`.
        status: i16,
        _pad1: u16,
    }
);

pod!(
    /// `struct gnttab_unmap_and_replace`.
    GntTabUnmapAndReplace, 24, {
        host_addr: u64,
        new_addr: u64,
        handle: GrantHandle,
        /// Output: `GNTST_*`.
        status: i16,
        _pad0: u16,
    }
);

pod!(
    /// `struct gnttab_set_version`: in, the version wanted; out, in use.
    GntTabSetVersion, 4, { version: u32 }
);

pod!(
    /// `struct gnttab_get_status_frames`.
    GntTabGetStatusFrames, 16, {
        nr_frames: u32,
        dom: DomId,
        /// Output: `GNTST_*`.
        status: i16,
        /// Guest address of an array of `uint64_t` (output).
        frame_list: GuestHandle,
    }
);

pod!(
    /// `struct gnttab_get_version`.
    GntTabGetVersion, 8, {
        dom: DomId,
        pad: u16,
        /// Output.
        version: u32,
    }
);

pod!(
    /// `struct gnttab_swap_grant_ref`.
    GntTabSwapGrantRef, 12, {
        ref_a: GrantRef,
        ref_b: GrantRef,
        /// Output: `GNTST_*`.
        status: i16,
        _pad0: u16,
    }
);

pod!(
    /// `struct gnttab_cache_flush`. `a` is the C union: a device bus address,
    /// or a grant reference (low 32 bits) with `GNTTAB_CACHE_SOURCE_GREF`.
    GntTabCacheFlush, 16, {
        a: u64,
        offset: u16,
        length: u16,
        /// `GNTTAB_CACHE_*`.
        op: u32,
    }
);
