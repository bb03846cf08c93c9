//! The PV console ring page (`xen/io/console.h`), located by
//! `start_info.console.domU`.

/// A console ring index (`XENCONS_RING_IDX`).
pub type XenconsRingIdx = u32;

/// Size of the input (backend to guest) ring.
pub const XENCONS_IN_SIZE: usize = 1024;
/// Size of the output (guest to backend) ring.
pub const XENCONS_OUT_SIZE: usize = 2048;

/// `MASK_XENCONS_IDX`: the byte position of free-running index `idx` in a
/// ring of `ring_len` bytes (a power of two).
pub const fn mask_xencons_idx(idx: XenconsRingIdx, ring_len: usize) -> usize {
    idx as usize & (ring_len - 1)
}

/// `struct xencons_interface` (3088 bytes at the start of the page).
///
/// The guest produces into `out` (`out_prod`) and consumes from `in_`
/// (`in_cons`); the backend does the opposite.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenconsInterface {
    /// `in` in C.
    pub in_: [u8; XENCONS_IN_SIZE],
    pub out: [u8; XENCONS_OUT_SIZE],
    pub in_cons: XenconsRingIdx,
    pub in_prod: XenconsRingIdx,
    pub out_cons: XenconsRingIdx,
    pub out_prod: XenconsRingIdx,
}
const _: () = assert!(size_of::<XenconsInterface>() == 3088);
// SAFETY: plain-old-data: byte arrays and u32, no padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for XenconsInterface {}

impl Default for XenconsInterface {
    fn default() -> Self {
        Self {
            in_: [0; XENCONS_IN_SIZE],
            out: [0; XENCONS_OUT_SIZE],
            in_cons: 0,
            in_prod: 0,
            out_cons: 0,
            out_prod: 0,
        }
    }
}
