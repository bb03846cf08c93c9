//! The backend's side of a request/response ring (`xen/io/ring.h`), as used
//! by the block and network protocols: a 64-byte header of free-running
//! producer and event indices, then a power-of-two array of entries, each
//! the union of a request and a response.
//!
//! The frontend may be hostile. Its producer index is re-read on every call
//! and checked: more outstanding requests than the ring holds is corruption,
//! reported as [`RingIndexError`] so the caller can mark the device broken.
//! Fences order index and entry accesses as `xen_mb()`/`xen_wmb()` do.

use std::sync::atomic::{fence, Ordering};

use xen_abi::io::ring::{ring_entry_offset, ring_size, RingIdx};
use xenstore::ring::SharedPage;

const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 4;
const RSP_PROD: usize = 8;
const RSP_EVENT: usize = 12;

/// The frontend's request producer is impossibly far ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ring indices corrupt: req_prod {req_prod}, our req_cons {req_cons}, rsp_prod {rsp_prod} ({size} entries)")]
pub struct RingIndexError {
    /// `req_prod` as read.
    pub req_prod: RingIdx,
    /// Our consumer.
    pub req_cons: RingIdx,
    /// Our private response producer.
    pub rsp_prod: RingIdx,
    /// Entries in the ring.
    pub size: u32,
}

/// The back end of one shared ring page.
#[derive(Debug)]
pub struct BackRing<P> {
    page: P,
    entry_size: usize,
    size: u32,
    req_cons: RingIdx,
    rsp_prod_pvt: RingIdx,
}

impl<P: SharedPage> BackRing<P> {
    /// Attaches to a ring the frontend initialised (`SHARED_RING_INIT`):
    /// continues from the page's current `rsp_prod`, as `BACK_RING_ATTACH`.
    pub fn attach(page: P, entry_size: usize) -> BackRing<P> {
        let size = ring_size(4096, entry_size);
        let rsp = page.load_u32(RSP_PROD);
        BackRing {
            page,
            entry_size,
            size,
            req_cons: rsp,
            rsp_prod_pvt: rsp,
        }
    }

    /// The page.
    pub fn page(&self) -> &P {
        &self.page
    }

    /// Entries in the ring.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Requests the frontend has produced and we have not consumed, checked.
    fn unconsumed(&self) -> Result<u32, RingIndexError> {
        let req_prod = self.page.load_u32(REQ_PROD);
        // Read the index before the entries it covers.
        fence(Ordering::SeqCst);
        let outstanding = req_prod.wrapping_sub(self.rsp_prod_pvt);
        if outstanding > self.size {
            return Err(RingIndexError {
                req_prod,
                req_cons: self.req_cons,
                rsp_prod: self.rsp_prod_pvt,
                size: self.size,
            });
        }
        // Requests beyond those we have answered room for must wait
        // (RING_REQUEST_CONS_OVERFLOW).
        Ok(req_prod.wrapping_sub(self.req_cons))
    }

    /// Copies the next request into `entry` (`entry_size` bytes) and consumes
    /// it; `Ok(false)` when there is none.
    pub fn next_request(&mut self, entry: &mut [u8]) -> Result<bool, RingIndexError> {
        if self.unconsumed()? == 0 {
            return Ok(false);
        }
        let off = ring_entry_offset(self.req_cons, self.size, self.entry_size);
        let n = entry.len().min(self.entry_size);
        self.page.read_bytes(off, &mut entry[..n]);
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(true)
    }

    /// Requests produced and not yet consumed (checked as
    /// [`BackRing::next_request`] does).
    pub fn pending_requests(&self) -> Result<u32, RingIndexError> {
        self.unconsumed()
    }

    /// Copies the request `ahead` places after the next one into `entry`
    /// without consuming it. Only meaningful for `ahead` below
    /// [`BackRing::pending_requests`]; beyond, it reads a stale slot.
    pub fn peek_request(&self, ahead: u32, entry: &mut [u8]) {
        let idx = self.req_cons.wrapping_add(ahead);
        let off = ring_entry_offset(idx, self.size, self.entry_size);
        let n = entry.len().min(self.entry_size);
        self.page.read_bytes(off, &mut entry[..n]);
    }

    /// Consumes `n` requests read with [`BackRing::peek_request`]; the
    /// caller checked that `n` are pending.
    pub fn consume(&mut self, n: u32) {
        self.req_cons = self.req_cons.wrapping_add(n);
    }

    /// Asks the frontend to notify us once its request producer passes
    /// the one it has now (a backend waiting for buffers: the receive
    /// ring of `feature-rx-notify`). Returns the requests pending after
    /// the request is visible, so none that came meanwhile is missed.
    pub fn request_notify(&mut self) -> Result<u32, RingIndexError> {
        let prod = self.page.load_u32(REQ_PROD);
        self.page.store_u32(REQ_EVENT, prod.wrapping_add(1));
        fence(Ordering::SeqCst);
        self.unconsumed()
    }

    /// Writes a response into the next response slot (not yet published).
    pub fn push_response(&mut self, rsp: &[u8]) {
        let off = ring_entry_offset(self.rsp_prod_pvt, self.size, self.entry_size);
        let n = rsp.len().min(self.entry_size);
        self.page.write_bytes(off, &rsp[..n]);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
    }

    /// Publishes the responses written so far; returns whether the frontend
    /// asked to be notified (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`).
    pub fn publish_responses(&mut self) -> bool {
        let old = self.page.load_u32(RSP_PROD);
        let new = self.rsp_prod_pvt;
        if old == new {
            return false;
        }
        // Responses before the index that publishes them.
        fence(Ordering::SeqCst);
        self.page.store_u32(RSP_PROD, new);
        fence(Ordering::SeqCst);
        let event = self.page.load_u32(RSP_EVENT);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// Whether more requests arrived; if none, asks the frontend to notify
    /// us for the next one (`RING_FINAL_CHECK_FOR_REQUESTS`).
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingIndexError> {
        if self.unconsumed()? > 0 {
            return Ok(true);
        }
        self.page
            .store_u32(REQ_EVENT, self.req_cons.wrapping_add(1));
        fence(Ordering::SeqCst);
        Ok(self.unconsumed()? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xenstore::ring::OwnedPage;

    const ENTRY: usize = 112;

    fn init(page: &OwnedPage) {
        page.store_u32(REQ_EVENT, 1);
        page.store_u32(RSP_EVENT, 1);
    }

    fn produce(page: &OwnedPage, n: u32, tag: u8) {
        let prod = page.load_u32(REQ_PROD);
        for i in 0..n {
            let idx = prod.wrapping_add(i);
            page.write_bytes(
                ring_entry_offset(idx, 32, ENTRY),
                &[tag.wrapping_add(i as u8); 8],
            );
        }
        page.store_u32(REQ_PROD, prod.wrapping_add(n));
    }

    #[test]
    fn requests_in_responses_out_with_wraparound() {
        let page = OwnedPage::new();
        init(&page);
        // Start near the u32 wrap point to test free-running indices.
        let start = u32::MAX - 5;
        for off in [REQ_PROD, RSP_PROD] {
            page.store_u32(off, start);
        }
        let mut ring = BackRing::attach(&page, ENTRY);
        assert_eq!(ring.size(), 32);
        produce(&page, 10, 40);
        let mut e = [0u8; ENTRY];
        let mut got = 0;
        while ring.next_request(&mut e).unwrap() {
            assert_eq!(e[0], 40 + got);
            ring.push_response(&[got; 16]);
            got += 1;
        }
        assert_eq!(got, 10);
        // rsp_event is 1: far behind, so no notification is asked for...
        page.store_u32(RSP_EVENT, start.wrapping_add(1));
        assert!(ring.publish_responses(), "...unless the frontend waits");
        assert_eq!(page.load_u32(RSP_PROD), start.wrapping_add(10));
        assert!(!ring.final_check_for_requests().unwrap());
        assert_eq!(page.load_u32(REQ_EVENT), start.wrapping_add(11));
    }

    #[test]
    fn a_runaway_producer_is_an_error_not_a_panic() {
        let page = OwnedPage::new();
        init(&page);
        let mut ring = BackRing::attach(&page, ENTRY);
        page.store_u32(REQ_PROD, 33);
        let mut e = [0u8; ENTRY];
        assert!(ring.next_request(&mut e).is_err());
        page.store_u32(REQ_PROD, u32::MAX);
        assert!(ring.final_check_for_requests().is_err());
        // A full ring of unanswered requests is fine; more must wait for
        // responses (no overwriting of unpublished response slots).
        page.store_u32(REQ_PROD, 32);
        for _ in 0..32 {
            assert!(ring.next_request(&mut e).unwrap());
        }
        assert!(!ring.next_request(&mut e).unwrap());
    }
}
