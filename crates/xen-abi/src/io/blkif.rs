//! The block device protocol (`xen/io/blkif.h`) between xen-blkfront and a
//! block backend. Sectors are always 512 bytes.

use crate::grant_table::GrantRef;
use crate::io::ring::ring_size;

/// Virtual device handle (`blkif_vdev_t`).
pub type BlkifVdev = u16;
/// Sector number (`blkif_sector_t`), in 512-byte units.
pub type BlkifSector = u64;

pub const BLKIF_OP_READ: u8 = 0;
pub const BLKIF_OP_WRITE: u8 = 1;
/// Write with barrier semantics (`feature-barrier`).
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
/// Flush the disk cache (`feature-flush-cache`).
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
/// Reserved (was used by a vendor).
pub const BLKIF_OP_RESERVED_1: u8 = 4;
/// Discard ([`BlkifRequestDiscard`], `feature-discard`).
pub const BLKIF_OP_DISCARD: u8 = 5;
/// Indirect request ([`BlkifRequestIndirect`],
/// `feature-max-indirect-segments`).
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// Segments in a direct request.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// Grant references to indirect segment pages in an indirect request.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// Segments per indirect page (Linux's `XEN_PAGE_SIZE /
/// sizeof(struct blkif_request_segment)`; not in the Xen header).
pub const BLKIF_SEGS_PER_INDIRECT_FRAME: usize = 4096 / size_of::<BlkifRequestSegment>();

/// `blkif_request_discard.flag`: secure discard (`discard-secure`).
pub const BLKIF_DISCARD_SECURE: u8 = 1 << 0;

/// Response status: the operation is not supported.
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;
/// Response status: error.
pub const BLKIF_RSP_ERROR: i16 = -1;
/// Response status: success.
pub const BLKIF_RSP_OKAY: i16 = 0;

/// The backend's `info` node bits.
pub const VDISK_CDROM: u32 = 0x1;
pub const VDISK_REMOVABLE: u32 = 0x2;
pub const VDISK_READONLY: u32 = 0x4;

/// Size of the sector unit used by the protocol.
pub const BLKIF_SECTOR_SIZE: u64 = 512;

pod!(
    /// `struct blkif_request_segment`: a granted page and the inclusive
    /// range of 512-byte sectors used within it (0..=7).
    BlkifRequestSegment, 8, {
        gref: GrantRef,
        first_sect: u8,
        last_sect: u8,
        _pad0: u16,
    }
);

pod!(
    /// `struct blkif_request` (112 bytes).
    BlkifRequest, 112, {
        /// `BLKIF_OP_*`.
        operation: u8,
        nr_segments: u8,
        /// Only for read/write requests.
        handle: BlkifVdev,
        _pad0: u32,
        /// Private guest value, echoed in the response.
        id: u64,
        /// Start sector on disk.
        sector_number: BlkifSector,
        seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
    }
);

pod!(
    /// `struct blkif_request_discard` (overlays [`BlkifRequest`]).
    BlkifRequestDiscard, 32, {
        /// `BLKIF_OP_DISCARD`.
        operation: u8,
        /// `BLKIF_DISCARD_*`.
        flag: u8,
        handle: BlkifVdev,
        _pad0: u32,
        id: u64,
        sector_number: BlkifSector,
        nr_sectors: u64,
    }
);

pod!(
    /// `struct blkif_request_indirect` (overlays [`BlkifRequest`]): the
    /// segments live in granted pages of [`BlkifRequestSegment`]s.
    BlkifRequestIndirect, 64, {
        /// `BLKIF_OP_INDIRECT`.
        operation: u8,
        /// The real operation: `BLKIF_OP_{READ,WRITE}`.
        indirect_op: u8,
        nr_segments: u16,
        _pad0: u32,
        id: u64,
        sector_number: BlkifSector,
        handle: BlkifVdev,
        _pad1: u16,
        indirect_grefs: [GrantRef; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
        _pad2: u32,
    }
);

pod!(
    /// `struct blkif_response`.
    BlkifResponse, 16, {
        /// Copied from the request.
        id: u64,
        /// Copied from the request.
        operation: u8,
        _pad0: u8,
        /// `BLKIF_RSP_*`.
        status: i16,
        _pad1: u32,
    }
);

/// Size of one ring entry (`union blkif_sring_entry`).
pub const BLKIF_RING_ENTRY_SIZE: usize = if size_of::<BlkifRequest>() > size_of::<BlkifResponse>() {
    size_of::<BlkifRequest>()
} else {
    size_of::<BlkifResponse>()
};

/// Entries in a one-page block ring (32).
pub const BLKIF_RING_SIZE: u32 = ring_size(4096, BLKIF_RING_ENTRY_SIZE);
