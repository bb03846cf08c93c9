//! Shared I/O ring layout (`xen/io/ring.h`).
//!
//! A shared ring page starts with a 64-byte [`SringHeader`]; the entries
//! follow. Each entry is a union of the protocol's request and response, so
//! its size is the larger of the two. The entry count is the largest power
//! of two that fits ([`ring_size`], the `__RING_SIZE` rule). Indices are
//! free-running `u32`s, masked with `size - 1` to find an entry.

/// A ring index (`RING_IDX`).
pub type RingIdx = u32;

/// Size of [`SringHeader`]: the offset of `ring[0]` in every `*_sring`.
pub const SRING_HEADER_SIZE: usize = 64;

/// The header of a shared ring (`struct *_sring` up to `ring`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SringHeader {
    /// Requests produced by the frontend.
    pub req_prod: RingIdx,
    /// The backend wants a notification when `req_prod` passes this.
    pub req_event: RingIdx,
    /// Responses produced by the backend.
    pub rsp_prod: RingIdx,
    /// The frontend wants a notification when `rsp_prod` passes this.
    pub rsp_event: RingIdx,
    /// The `pvt` union (netif `smartpoll_active`, tapif `msg`); zeroed.
    pub pvt: [u8; 4],
    /// `__pad`; zeroed.
    pub pad: [u8; 44],
}
const _: () = assert!(size_of::<SringHeader>() == SRING_HEADER_SIZE);
// SAFETY: plain-old-data: integers and byte arrays, no padding, every bit
// pattern valid.
unsafe impl vm_memory::ByteValued for SringHeader {}

/// All zero (see [`SringHeader::INIT`] for the initialised state).
impl Default for SringHeader {
    fn default() -> Self {
        SringHeader {
            req_prod: 0,
            req_event: 0,
            rsp_prod: 0,
            rsp_event: 0,
            pvt: [0; 4],
            pad: [0; 44],
        }
    }
}

impl SringHeader {
    /// `SHARED_RING_INIT`: producers 0, events 1, padding zero.
    pub const INIT: SringHeader = SringHeader {
        req_prod: 0,
        req_event: 1,
        rsp_prod: 0,
        rsp_event: 1,
        pvt: [0; 4],
        pad: [0; 44],
    };
}

/// Entries in a shared ring of `ring_bytes` bytes (header included) whose
/// entries are `entry_size` bytes: the largest power of two not above
/// `(ring_bytes - 64) / entry_size`, or 0 if none fits.
pub const fn ring_size(ring_bytes: usize, entry_size: usize) -> u32 {
    if ring_bytes <= SRING_HEADER_SIZE || entry_size == 0 {
        return 0;
    }
    let n = (ring_bytes - SRING_HEADER_SIZE) / entry_size;
    if n == 0 {
        0
    } else {
        let p = 1usize << (usize::BITS - 1 - n.leading_zeros());
        if p > u32::MAX as usize {
            1 << 31
        } else {
            p as u32
        }
    }
}

/// Byte offset of entry `idx` (free-running) in a ring of `nr_ents`
/// entries (a power of two) of `entry_size` bytes each.
pub const fn ring_entry_offset(idx: RingIdx, nr_ents: u32, entry_size: usize) -> usize {
    SRING_HEADER_SIZE + (idx & nr_ents.wrapping_sub(1)) as usize * entry_size
}
