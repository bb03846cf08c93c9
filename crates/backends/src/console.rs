//! The backend of a PV console ring (`struct xencons_interface`).
//!
//! Layout (`io/console.h`, [`xen_abi::XenconsInterface`]): `in[1024]` at 0,
//! `out[2048]` at 1024, then the free-running `u32` indices `in_cons`,
//! `in_prod`, `out_cons`, `out_prod`. The guest produces into `out` and
//! consumes from `in`; the backend does the opposite. Indices are masked by
//! the ring size to address bytes.
//!
//! The guest may be hostile: indices are re-read on every call, and a
//! producer more than a ring ahead of its consumer marks the console broken
//! (an error, never a panic, never an out-of-bounds access). A broken console
//! stays broken: the guest gets no further output drained or input delivered,
//! as `xenconsoled` does when it closes a misbehaving domain's console.
//! Fences order index and data accesses as Xen's `xen_mb()` does.

use std::collections::VecDeque;
use std::io::Write;
use std::mem::offset_of;
use std::sync::atomic::{fence, Ordering};

use xen_abi::io::console::{XenconsInterface, XENCONS_IN_SIZE, XENCONS_OUT_SIZE};
use xenstore::ring::SharedPage;

/// Offset of the input ring (backend → guest).
pub const IN: usize = offset_of!(XenconsInterface, in_);
/// Offset of the output ring (guest → backend).
pub const OUT: usize = offset_of!(XenconsInterface, out);
/// Offset of `in_cons`.
pub const IN_CONS: usize = offset_of!(XenconsInterface, in_cons);
/// Offset of `in_prod`.
pub const IN_PROD: usize = offset_of!(XenconsInterface, in_prod);
/// Offset of `out_cons`.
pub const OUT_CONS: usize = offset_of!(XenconsInterface, out_cons);
/// Offset of `out_prod`.
pub const OUT_PROD: usize = offset_of!(XenconsInterface, out_prod);

/// Input waiting for room in the ring beyond this is dropped (a guest that
/// never reads its console must not make the host buffer without bound).
pub const MAX_PENDING_INPUT: usize = 64 * 1024;

/// Why a console stopped working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    /// The guest's output producer is more than a ring ahead of our consumer.
    #[error("console output ring indices corrupt: out_cons {cons}, out_prod {prod}")]
    OutputIndex {
        /// `out_cons` as read.
        cons: u32,
        /// `out_prod` as read.
        prod: u32,
    },
    /// The guest's input consumer is behind our producer by more than a ring
    /// (or ahead of it).
    #[error("console input ring indices corrupt: in_cons {cons}, in_prod {prod}")]
    InputIndex {
        /// `in_cons` as read.
        cons: u32,
        /// `in_prod` as read.
        prod: u32,
    },
}

/// What a call to [`ConsoleBackend::service`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Serviced {
    /// Output bytes drained from the guest.
    pub output: usize,
    /// Input bytes delivered into the guest's ring.
    pub input: usize,
}

impl Serviced {
    /// Whether the guest should be notified (something moved either way:
    /// it may be waiting for room in `out` or for bytes in `in`).
    pub fn notify(&self) -> bool {
        self.output > 0 || self.input > 0
    }
}

/// Copies `buf.len()` bytes out of the ring at `ring` (`len` bytes long,
/// a power of two) starting at free-running index `idx`.
fn ring_read(page: &impl SharedPage, ring: usize, len: usize, idx: u32, buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        let pos = (idx as usize).wrapping_add(done) & (len - 1);
        let chunk = (len - pos).min(buf.len() - done);
        page.read_bytes(ring + pos, &mut buf[done..done + chunk]);
        done += chunk;
    }
}

/// Copies `data` into the ring at `ring` (`len` bytes long, a power of two)
/// starting at free-running index `idx`.
fn ring_write(page: &impl SharedPage, ring: usize, len: usize, idx: u32, data: &[u8]) {
    let mut done = 0;
    while done < data.len() {
        let pos = (idx as usize).wrapping_add(done) & (len - 1);
        let chunk = (len - pos).min(data.len() - done);
        page.write_bytes(ring + pos, &data[done..done + chunk]);
        done += chunk;
    }
}

/// The backend's side of one console page.
#[derive(Debug)]
pub struct ConsoleBackend<P> {
    page: P,
    /// Input accepted from the host but not yet fitted into the ring.
    pending: VecDeque<u8>,
    /// Input bytes dropped because `pending` was full.
    dropped: u64,
    broken: Option<ConsoleError>,
}

impl<P: SharedPage> ConsoleBackend<P> {
    /// Serves the console ring on `page`.
    pub fn new(page: P) -> ConsoleBackend<P> {
        ConsoleBackend {
            page,
            pending: VecDeque::new(),
            dropped: 0,
            broken: None,
        }
    }

    /// The page.
    pub fn page(&self) -> &P {
        &self.page
    }

    /// Why the console is broken, if it is.
    pub fn broken(&self) -> Option<ConsoleError> {
        self.broken
    }

    /// Input bytes waiting for room in the guest's ring.
    pub fn pending_input(&self) -> usize {
        self.pending.len()
    }

    /// Input bytes dropped so far because the guest did not read its console.
    pub fn dropped_input(&self) -> u64 {
        self.dropped
    }

    fn fail(&mut self, e: ConsoleError) -> ConsoleError {
        self.broken = Some(e);
        self.pending.clear();
        e
    }

    /// Appends everything the guest has written to `out` and consumes it;
    /// returns how many bytes.
    pub fn drain_output(&mut self, out: &mut Vec<u8>) -> Result<usize, ConsoleError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        let cons = self.page.load_u32(OUT_CONS);
        let prod = self.page.load_u32(OUT_PROD);
        // Read the indices before the data they cover.
        fence(Ordering::SeqCst);
        let avail = prod.wrapping_sub(cons) as usize;
        if avail > XENCONS_OUT_SIZE {
            return Err(self.fail(ConsoleError::OutputIndex { cons, prod }));
        }
        if avail == 0 {
            return Ok(0);
        }
        let start = out.len();
        out.resize(start + avail, 0);
        ring_read(&self.page, OUT, XENCONS_OUT_SIZE, cons, &mut out[start..]);
        // Finish reading before handing the space back.
        fence(Ordering::SeqCst);
        self.page
            .store_u32(OUT_CONS, cons.wrapping_add(avail as u32));
        Ok(avail)
    }

    /// Drains the guest's output into `sink`; returns how many bytes. A sink
    /// error is returned as such; the bytes are consumed either way (the
    /// guest must not stall because a terminal went away).
    pub fn drain_to(&mut self, sink: &mut dyn Write) -> Result<usize, DrainError> {
        let mut buf = Vec::new();
        let n = self.drain_output(&mut buf)?;
        if n > 0 {
            sink.write_all(&buf).map_err(DrainError::Sink)?;
            sink.flush().map_err(DrainError::Sink)?;
        }
        Ok(n)
    }

    /// Queues `bytes` for the guest and moves as many as fit into its `in`
    /// ring; returns how many were delivered now (notify the guest if > 0).
    /// The rest waits for [`ConsoleBackend::flush_input`]; beyond
    /// [`MAX_PENDING_INPUT`] waiting bytes, new input is dropped.
    pub fn push_input(&mut self, bytes: &[u8]) -> Result<usize, ConsoleError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        let room = MAX_PENDING_INPUT - self.pending.len();
        let take = room.min(bytes.len());
        self.pending.extend(&bytes[..take]);
        self.dropped += (bytes.len() - take) as u64;
        self.flush_input()
    }

    /// Moves waiting input into the guest's ring as room allows; returns how
    /// many bytes were delivered.
    pub fn flush_input(&mut self) -> Result<usize, ConsoleError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        if self.pending.is_empty() {
            return Ok(0);
        }
        let cons = self.page.load_u32(IN_CONS);
        let prod = self.page.load_u32(IN_PROD);
        fence(Ordering::SeqCst);
        let used = prod.wrapping_sub(cons) as usize;
        if used > XENCONS_IN_SIZE {
            return Err(self.fail(ConsoleError::InputIndex { cons, prod }));
        }
        let n = (XENCONS_IN_SIZE - used).min(self.pending.len());
        if n == 0 {
            return Ok(0);
        }
        let data: Vec<u8> = self.pending.drain(..n).collect();
        ring_write(&self.page, IN, XENCONS_IN_SIZE, prod, &data);
        // The data must be visible before the producer index says so.
        fence(Ordering::SeqCst);
        self.page.store_u32(IN_PROD, prod.wrapping_add(n as u32));
        Ok(n)
    }

    /// What to do when the guest notifies the console's event channel:
    /// drain its output into `sink` and deliver waiting input.
    pub fn service(&mut self, sink: &mut dyn Write) -> Result<Serviced, DrainError> {
        let output = self.drain_to(sink)?;
        let input = self.flush_input()?;
        Ok(Serviced { output, input })
    }
}

/// Why [`ConsoleBackend::drain_to`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// The ring is broken.
    #[error(transparent)]
    Console(#[from] ConsoleError),
    /// The sink failed (the bytes were consumed from the ring anyway).
    #[error("cannot write console output: {0}")]
    Sink(std::io::Error),
}

/// The guest's side of a console ring, for tests of code that serves it.
pub mod mock {
    use super::*;

    /// Writes output as a guest's `hvc_xen` would; returns how many fitted.
    pub fn guest_write(page: &impl SharedPage, data: &[u8]) -> usize {
        let cons = page.load_u32(OUT_CONS);
        let prod = page.load_u32(OUT_PROD);
        fence(Ordering::SeqCst);
        let room = XENCONS_OUT_SIZE.saturating_sub(prod.wrapping_sub(cons) as usize);
        let n = room.min(data.len());
        ring_write(page, OUT, XENCONS_OUT_SIZE, prod, &data[..n]);
        fence(Ordering::SeqCst);
        page.store_u32(OUT_PROD, prod.wrapping_add(n as u32));
        n
    }

    /// Consumes all input as a guest would.
    pub fn guest_read(page: &impl SharedPage) -> Vec<u8> {
        let cons = page.load_u32(IN_CONS);
        let prod = page.load_u32(IN_PROD);
        fence(Ordering::SeqCst);
        let avail = (prod.wrapping_sub(cons) as usize).min(XENCONS_IN_SIZE);
        let mut out = vec![0; avail];
        ring_read(page, IN, XENCONS_IN_SIZE, cons, &mut out);
        fence(Ordering::SeqCst);
        page.store_u32(IN_CONS, cons.wrapping_add(avail as u32));
        out
    }

    /// Sets all four indices (to test wraparound and corruption).
    pub fn set_indices(
        page: &impl SharedPage,
        in_cons: u32,
        in_prod: u32,
        out_cons: u32,
        out_prod: u32,
    ) {
        page.store_u32(IN_CONS, in_cons);
        page.store_u32(IN_PROD, in_prod);
        page.store_u32(OUT_CONS, out_cons);
        page.store_u32(OUT_PROD, out_prod);
    }
}

#[cfg(test)]
mod tests {
    use super::mock::*;
    use super::*;
    use xenstore::ring::OwnedPage;

    fn backend() -> ConsoleBackend<OwnedPage> {
        ConsoleBackend::new(OwnedPage::new())
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn offsets_match_the_abi() {
        assert_eq!((IN, OUT), (0, 1024));
        assert_eq!(
            (IN_CONS, IN_PROD, OUT_CONS, OUT_PROD),
            (3072, 3076, 3080, 3084)
        );
    }

    #[test]
    fn output_reaches_the_sink_in_order() {
        let mut b = backend();
        assert_eq!(guest_write(b.page(), b"Linux version 6.1\n"), 18);
        let mut sink = Vec::new();
        let s = b.service(&mut sink).unwrap();
        assert_eq!(sink, b"Linux version 6.1\n");
        assert_eq!(
            s,
            Serviced {
                output: 18,
                input: 0
            }
        );
        assert!(s.notify());
        assert_eq!(b.page().load_u32(OUT_CONS), 18);
        // Nothing new: nothing moves, no notification.
        let s = b.service(&mut sink).unwrap();
        assert!(!s.notify());
        assert_eq!(sink.len(), 18);
    }

    #[test]
    fn a_full_output_ring_drains_completely() {
        let mut b = backend();
        let data = pattern(XENCONS_OUT_SIZE + 100, 7);
        assert_eq!(guest_write(b.page(), &data), XENCONS_OUT_SIZE);
        let mut out = Vec::new();
        assert_eq!(b.drain_output(&mut out).unwrap(), XENCONS_OUT_SIZE);
        assert_eq!(guest_write(b.page(), &data[XENCONS_OUT_SIZE..]), 100);
        b.drain_output(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn output_wraps_around_the_ring_and_the_index_space() {
        for start in [
            XENCONS_OUT_SIZE as u32 - 5,
            u32::MAX - 10,
            u32::MAX,
            0x8000_0000 - 1,
        ] {
            let mut b = backend();
            set_indices(b.page(), 0, 0, start, start);
            let mut out = Vec::new();
            let mut want = Vec::new();
            for round in 0..5u8 {
                let data = pattern(700 + round as usize * 300, round);
                let n = guest_write(b.page(), &data);
                want.extend_from_slice(&data[..n]);
                b.drain_output(&mut out).unwrap();
            }
            assert_eq!(out, want, "start index {start:#x}");
        }
    }

    #[test]
    fn input_reaches_the_guest_and_wraps() {
        for start in [0, XENCONS_IN_SIZE as u32 - 3, u32::MAX - 2] {
            let mut b = backend();
            set_indices(b.page(), start, start, 0, 0);
            let mut got = Vec::new();
            let mut want = Vec::new();
            for round in 0..6u8 {
                let data = pattern(300 + 211 * round as usize, round);
                want.extend_from_slice(&data);
                b.push_input(&data).unwrap();
                got.extend(guest_read(b.page()));
            }
            // Anything left over goes in once the guest makes room.
            while b.pending_input() > 0 {
                assert!(b.flush_input().unwrap() > 0);
                got.extend(guest_read(b.page()));
            }
            assert_eq!(got, want, "start index {start:#x}");
        }
    }

    #[test]
    fn input_waits_for_room_and_says_when_to_notify() {
        let mut b = backend();
        let data = pattern(XENCONS_IN_SIZE + 10, 3);
        assert_eq!(b.push_input(&data).unwrap(), XENCONS_IN_SIZE);
        assert_eq!(b.pending_input(), 10);
        // The guest has not read: nothing fits, nothing to notify.
        assert_eq!(b.flush_input().unwrap(), 0);
        let first = guest_read(b.page());
        assert_eq!(first, data[..XENCONS_IN_SIZE]);
        // Its notification after reading lets the rest in.
        let s = b.service(&mut Vec::new()).unwrap();
        assert_eq!(
            s,
            Serviced {
                output: 0,
                input: 10
            }
        );
        assert_eq!(guest_read(b.page()), data[XENCONS_IN_SIZE..]);
    }

    #[test]
    fn input_beyond_the_limit_is_dropped_not_buffered() {
        let mut b = backend();
        let big = vec![b'x'; MAX_PENDING_INPUT + XENCONS_IN_SIZE + 5];
        b.push_input(&big).unwrap();
        assert_eq!(b.pending_input(), MAX_PENDING_INPUT - XENCONS_IN_SIZE);
        assert_eq!(b.dropped_input(), XENCONS_IN_SIZE as u64 + 5);
    }

    #[test]
    fn hostile_output_indices_break_the_console_without_panicking() {
        for (cons, prod) in [
            (0, XENCONS_OUT_SIZE as u32 + 1),
            (10, 5),
            (0, u32::MAX),
            (u32::MAX, 0x7fff_ffff),
        ] {
            let mut b = backend();
            set_indices(b.page(), 0, 0, cons, prod);
            let mut out = Vec::new();
            let err = b.drain_output(&mut out).unwrap_err();
            assert_eq!(err, ConsoleError::OutputIndex { cons, prod });
            assert!(out.is_empty());
            // Broken stays broken, even if the guest repairs its indices.
            set_indices(b.page(), 0, 0, 0, 1);
            assert_eq!(b.drain_output(&mut out), Err(err));
            assert_eq!(b.push_input(b"x"), Err(err));
            assert_eq!(b.broken(), Some(err));
            // Our consumer index was left alone.
            assert_eq!(b.page().load_u32(OUT_CONS), 0);
        }
    }

    #[test]
    fn exactly_a_full_ring_is_not_corruption() {
        let mut b = backend();
        set_indices(
            b.page(),
            5,
            5 + XENCONS_IN_SIZE as u32,
            9,
            9 + XENCONS_OUT_SIZE as u32,
        );
        let mut out = Vec::new();
        assert_eq!(b.drain_output(&mut out).unwrap(), XENCONS_OUT_SIZE);
        assert_eq!(b.push_input(b"abc").unwrap(), 0);
        assert_eq!(b.pending_input(), 3);
        assert_eq!(b.broken(), None);
    }

    #[test]
    fn hostile_input_indices_break_the_console_without_panicking() {
        for (cons, prod) in [(0, XENCONS_IN_SIZE as u32 + 1), (7, 3), (u32::MAX, 1 << 20)] {
            let mut b = backend();
            set_indices(b.page(), cons, prod, 0, 0);
            let err = b.push_input(b"hello").unwrap_err();
            assert_eq!(err, ConsoleError::InputIndex { cons, prod });
            assert_eq!(b.pending_input(), 0);
            assert_eq!(b.page().load_u32(IN_PROD), prod);
            assert!(matches!(
                b.service(&mut Vec::new()),
                Err(DrainError::Console(_))
            ));
        }
    }

    #[test]
    fn random_hostile_pages_never_panic() {
        // A tiny xorshift: deterministic garbage in every index and byte.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let mut b = backend();
            let r = next();
            let garbage: Vec<u8> = (0..64).map(|i| (r >> (i % 8)) as u8).collect();
            b.page().write_bytes((r as usize) % 3000, &garbage);
            set_indices(
                b.page(),
                next() as u32,
                next() as u32,
                next() as u32,
                next() as u32,
            );
            let mut sink = Vec::new();
            let _ = b.service(&mut sink);
            let _ = b.push_input(&garbage);
            assert!(sink.len() <= XENCONS_OUT_SIZE);
        }
    }

    #[test]
    fn a_failing_sink_still_consumes_output() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("terminal gone"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut b = backend();
        guest_write(b.page(), b"lost");
        assert!(matches!(b.drain_to(&mut Broken), Err(DrainError::Sink(_))));
        assert_eq!(b.page().load_u32(OUT_CONS), 4);
        assert_eq!(b.broken(), None);
    }
}
