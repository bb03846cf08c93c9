//! The `xenstore_domain_interface` page a guest shares with xenstored.
//!
//! Layout (`io/xs_wire.h`): `req[1024]` at 0, `rsp[1024]` at 1024, then the
//! free-running `u32` indices `req_cons`, `req_prod`, `rsp_cons`, `rsp_prod`
//! at 2048..2064, then `server_features`, `connection`, `error`. Indices are
//! masked by 1023 to address the rings. The guest produces requests and
//! consumes responses; we do the opposite.
//!
//! The page is shared with a guest that may be hostile: every index is
//! re-read and checked, a producer more than 1024 ahead of its consumer is a
//! broken connection (reported, never a panic), and fences order index and
//! data accesses as Xen's `xen_mb()` does.

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};

use crate::conn::ConnId;
use crate::server::Xenstore;
use crate::wire::{Decoder, WireError};

/// Size of each ring (`XENSTORE_RING_SIZE`).
pub const RING_SIZE: usize = 1024;
/// Offset of the request ring.
pub const REQ: usize = 0;
/// Offset of the response ring.
pub const RSP: usize = 1024;
/// Offset of `req_cons`.
pub const REQ_CONS: usize = 2048;
/// Offset of `req_prod`.
pub const REQ_PROD: usize = 2052;
/// Offset of `rsp_cons`.
pub const RSP_CONS: usize = 2056;
/// Offset of `rsp_prod`.
pub const RSP_PROD: usize = 2060;
/// Offset of `server_features`.
pub const SERVER_FEATURES: usize = 2064;
/// Offset of `connection`.
pub const CONNECTION: usize = 2068;
/// Offset of `error`.
pub const ERROR: usize = 2072;
/// Size of the page.
pub const PAGE_SIZE: usize = 4096;

/// `XENSTORE_SERVER_FEATURE_ERROR`: the `error` field is maintained.
pub const FEATURE_ERROR: u32 = 2;
/// `XENSTORE_ERROR_RINGIDX`: invalid ring index.
pub const ERROR_RINGIDX: u32 = 2;
/// `XENSTORE_ERROR_PROTO`: protocol violation (payload too long).
pub const ERROR_PROTO: u32 = 3;

/// Access to a 4 KiB page shared with a guest. Offsets are bytes from the
/// start of the page; `u32` accesses are at 4-byte-aligned offsets.
pub trait SharedPage {
    /// Loads a `u32` (a single, untorn access).
    fn load_u32(&self, offset: usize) -> u32;
    /// Stores a `u32` (a single, untorn access).
    fn store_u32(&self, offset: usize, value: u32);
    /// Copies bytes out of the page.
    fn read_bytes(&self, offset: usize, buf: &mut [u8]);
    /// Copies bytes into the page.
    fn write_bytes(&self, offset: usize, data: &[u8]);
}

/// A page at a raw address (a mapping of guest memory).
#[derive(Debug)]
pub struct RawPage {
    base: NonNull<u8>,
}

// SAFETY: RawPage only performs atomic and volatile accesses to memory the
// creator promised stays mapped; it holds no thread-affine state.
unsafe impl Send for RawPage {}

impl RawPage {
    /// Wraps the page at `base`.
    ///
    /// # Safety
    /// `base` must point to [`PAGE_SIZE`] bytes, 4-byte aligned, that stay
    /// mapped and writable for the life of the returned value. The memory may
    /// be changed concurrently by a guest; it is only accessed with atomic
    /// and volatile operations.
    pub unsafe fn new(base: NonNull<u8>) -> RawPage {
        assert_eq!(
            base.as_ptr() as usize % 4,
            0,
            "ring page must be 4-byte aligned"
        );
        RawPage { base }
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        assert!(
            offset.is_multiple_of(4) && offset + 4 <= PAGE_SIZE,
            "bad u32 offset {offset}"
        );
        // SAFETY: in bounds and aligned (checked above and in `new`); the
        // page outlives `self` per `new`'s contract; AtomicU32 has the size
        // and alignment of u32 and all accesses to the word are atomic.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }
}

impl SharedPage for RawPage {
    fn load_u32(&self, offset: usize) -> u32 {
        self.word(offset).load(Ordering::Relaxed)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        self.word(offset).store(value, Ordering::Relaxed)
    }

    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        assert!(offset + buf.len() <= PAGE_SIZE, "read past the page");
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: in bounds (checked above) of the mapped page.
            *b = unsafe { self.base.as_ptr().add(offset + i).read_volatile() };
        }
    }

    fn write_bytes(&self, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= PAGE_SIZE, "write past the page");
        for (i, b) in data.iter().enumerate() {
            // SAFETY: in bounds (checked above) of the mapped page.
            unsafe { self.base.as_ptr().add(offset + i).write_volatile(*b) };
        }
    }
}

/// A heap-allocated page, for tests and for mocking the guest side.
#[derive(Debug)]
pub struct OwnedPage {
    // Field order matters: `page` points into `_mem`.
    page: RawPage,
    _mem: Box<[AtomicU32; PAGE_SIZE / 4]>,
}

impl Default for OwnedPage {
    fn default() -> OwnedPage {
        OwnedPage::new()
    }
}

impl OwnedPage {
    /// A zeroed page.
    pub fn new() -> OwnedPage {
        let mem: Box<[AtomicU32; PAGE_SIZE / 4]> =
            Box::new([const { AtomicU32::new(0) }; PAGE_SIZE / 4]);
        let base = NonNull::from(&mem[0]).cast::<u8>();
        // SAFETY: `mem` is a 4-aligned 4096-byte heap allocation owned by
        // the returned value, so it outlives `page`, and its address does
        // not change when the Box moves.
        let page = unsafe { RawPage::new(base) };
        OwnedPage { page, _mem: mem }
    }
}

impl SharedPage for OwnedPage {
    fn load_u32(&self, offset: usize) -> u32 {
        self.page.load_u32(offset)
    }
    fn store_u32(&self, offset: usize, value: u32) {
        self.page.store_u32(offset, value)
    }
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        self.page.read_bytes(offset, buf)
    }
    fn write_bytes(&self, offset: usize, data: &[u8]) {
        self.page.write_bytes(offset, data)
    }
}

impl<P: SharedPage + ?Sized> SharedPage for &P {
    fn load_u32(&self, offset: usize) -> u32 {
        (**self).load_u32(offset)
    }
    fn store_u32(&self, offset: usize, value: u32) {
        (**self).store_u32(offset, value)
    }
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        (**self).read_bytes(offset, buf)
    }
    fn write_bytes(&self, offset: usize, data: &[u8]) {
        (**self).write_bytes(offset, data)
    }
}

/// Why a ring connection is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// the guest's request producer ({prod}) is more than a ring ahead of our consumer ({cons})
    #[error("request ring indices corrupt: cons {cons}, prod {prod}")]
    RequestIndex {
        /// `req_cons` as read.
        cons: u32,
        /// `req_prod` as read.
        prod: u32,
    },
    /// our response producer ({prod}) is more than a ring ahead of the guest's consumer ({cons})
    #[error("response ring indices corrupt: cons {cons}, prod {prod}")]
    ResponseIndex {
        /// `rsp_cons` as read.
        cons: u32,
        /// `rsp_prod` as read.
        prod: u32,
    },
    /// the guest sent a message the stream cannot recover from
    #[error("protocol violation: {0}")]
    Protocol(#[from] WireError),
}

/// Copies `len` bytes out of a ring starting at free-running index `idx`.
fn ring_read(page: &impl SharedPage, ring: usize, idx: u32, out: &mut Vec<u8>, len: usize) {
    let start = out.len();
    out.resize(start + len, 0);
    let mut done = 0;
    while done < len {
        let pos = (idx as usize + done) & (RING_SIZE - 1);
        let chunk = (RING_SIZE - pos).min(len - done);
        page.read_bytes(ring + pos, &mut out[start + done..start + done + chunk]);
        done += chunk;
    }
}

/// Copies `data` into a ring starting at free-running index `idx`.
fn ring_write(page: &impl SharedPage, ring: usize, idx: u32, data: &[u8]) {
    let mut done = 0;
    while done < data.len() {
        let pos = (idx as usize + done) & (RING_SIZE - 1);
        let chunk = (RING_SIZE - pos).min(data.len() - done);
        page.write_bytes(ring + pos, &data[done..done + chunk]);
        done += chunk;
    }
}

/// The server's side of the ring page.
#[derive(Debug)]
pub struct Ring<P> {
    page: P,
}

impl<P: SharedPage> Ring<P> {
    /// Wraps a page; announces the `error` field feature.
    pub fn new(page: P) -> Ring<P> {
        page.store_u32(SERVER_FEATURES, FEATURE_ERROR);
        Ring { page }
    }

    /// The page.
    pub fn page(&self) -> &P {
        &self.page
    }

    /// Reports a fatal error to the guest in the `error` field.
    pub fn set_error(&self, code: u32) {
        self.page.store_u32(ERROR, code);
        fence(Ordering::SeqCst);
    }

    /// Appends all request bytes the guest has produced to `out` and
    /// consumes them; returns how many.
    pub fn read_requests(&self, out: &mut Vec<u8>) -> Result<usize, RingError> {
        let cons = self.page.load_u32(REQ_CONS);
        let prod = self.page.load_u32(REQ_PROD);
        // Read the indices before the data they cover.
        fence(Ordering::SeqCst);
        let avail = prod.wrapping_sub(cons) as usize;
        if avail > RING_SIZE {
            self.set_error(ERROR_RINGIDX);
            return Err(RingError::RequestIndex { cons, prod });
        }
        if avail == 0 {
            return Ok(0);
        }
        ring_read(&self.page, REQ, cons, out, avail);
        // Finish reading before handing the space back.
        fence(Ordering::SeqCst);
        self.page
            .store_u32(REQ_CONS, cons.wrapping_add(avail as u32));
        Ok(avail)
    }

    /// Writes as much of `data` as the response ring has room for; returns
    /// how many bytes were written.
    pub fn write_responses(&self, data: &[u8]) -> Result<usize, RingError> {
        let cons = self.page.load_u32(RSP_CONS);
        let prod = self.page.load_u32(RSP_PROD);
        fence(Ordering::SeqCst);
        let used = prod.wrapping_sub(cons) as usize;
        if used > RING_SIZE {
            self.set_error(ERROR_RINGIDX);
            return Err(RingError::ResponseIndex { cons, prod });
        }
        let n = (RING_SIZE - used).min(data.len());
        if n == 0 {
            return Ok(0);
        }
        ring_write(&self.page, RSP, prod, &data[..n]);
        // Data must be visible before the producer index says so.
        fence(Ordering::SeqCst);
        self.page.store_u32(RSP_PROD, prod.wrapping_add(n as u32));
        Ok(n)
    }
}

/// Output held back once this much is waiting for the guest to consume.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// A domain's xenstore connection over its ring page.
#[derive(Debug)]
pub struct RingConnection<P> {
    ring: Ring<P>,
    conn: ConnId,
    decoder: Decoder,
    out: VecDeque<u8>,
}

impl<P: SharedPage> RingConnection<P> {
    /// Serves `conn` (from [`Xenstore::connect`]) over `ring`.
    pub fn new(ring: Ring<P>, conn: ConnId) -> RingConnection<P> {
        RingConnection {
            ring,
            conn,
            decoder: Decoder::new(),
            out: VecDeque::new(),
        }
    }

    /// The connection id.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// The ring.
    pub fn ring(&self) -> &Ring<P> {
        &self.ring
    }

    /// Bytes produced but not yet fitted into the response ring.
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// Reads and handles the guest's requests, then writes replies and watch
    /// events. Returns whether anything moved (so the guest should be
    /// notified on its event channel). An error means the connection is
    /// broken: the guest corrupted an index or sent an over-long message.
    pub fn poll(&mut self, xs: &mut Xenstore) -> Result<bool, RingError> {
        let mut moved = false;
        if self.out.len() < OUTPUT_HIGH_WATER {
            let mut bytes = Vec::new();
            moved |= self.ring.read_requests(&mut bytes)? > 0;
            self.decoder.push(&bytes);
            loop {
                match self.decoder.next_message() {
                    Ok(Some(msg)) => xs.submit(self.conn, &msg),
                    Ok(None) => break,
                    Err(e) => {
                        self.ring.set_error(ERROR_PROTO);
                        return Err(e.into());
                    }
                }
            }
        }
        if self.out.len() < OUTPUT_HIGH_WATER {
            let mut buf = Vec::new();
            for m in xs.take_output(self.conn) {
                m.encode_into(&mut buf);
            }
            self.out.extend(buf);
        }
        while !self.out.is_empty() {
            let (a, _) = self.out.as_slices();
            let n = self.ring.write_responses(a)?;
            if n == 0 {
                break;
            }
            self.out.drain(..n);
            moved = true;
        }
        Ok(moved)
    }
}

/// The guest's side of the ring, for tests of code that serves rings.
pub mod mock {
    use super::*;

    /// Writes request bytes as a guest would; returns how many fitted.
    pub fn guest_send(page: &impl SharedPage, data: &[u8]) -> usize {
        let cons = page.load_u32(REQ_CONS);
        let prod = page.load_u32(REQ_PROD);
        fence(Ordering::SeqCst);
        let room = RING_SIZE.saturating_sub(prod.wrapping_sub(cons) as usize);
        let n = room.min(data.len());
        ring_write(page, REQ, prod, &data[..n]);
        fence(Ordering::SeqCst);
        page.store_u32(REQ_PROD, prod.wrapping_add(n as u32));
        n
    }

    /// Consumes all response bytes as a guest would.
    pub fn guest_receive(page: &impl SharedPage) -> Vec<u8> {
        let cons = page.load_u32(RSP_CONS);
        let prod = page.load_u32(RSP_PROD);
        fence(Ordering::SeqCst);
        let avail = (prod.wrapping_sub(cons) as usize).min(RING_SIZE);
        let mut out = Vec::new();
        ring_read(page, RSP, cons, &mut out, avail);
        fence(Ordering::SeqCst);
        page.store_u32(RSP_CONS, cons.wrapping_add(avail as u32));
        out
    }

    /// Sets all four indices (to test wraparound and corruption).
    pub fn set_indices(
        page: &impl SharedPage,
        req_cons: u32,
        req_prod: u32,
        rsp_cons: u32,
        rsp_prod: u32,
    ) {
        page.store_u32(REQ_CONS, req_cons);
        page.store_u32(REQ_PROD, req_prod);
        page.store_u32(RSP_CONS, rsp_cons);
        page.store_u32(RSP_PROD, rsp_prod);
    }
}
