//! The guest's xenstore ring, relayed to the host's xenstored.
//!
//! The store is the host's daemon ([`crate::xenstored`]); the monitor only
//! moves bytes. Requests the guest puts on its ring go, as they are, to a
//! daemon connection that speaks for the guest's domain
//! ([`xenstore::server::CONTROL_GUEST`], so the daemon applies the domain's
//! permissions and quotas), and what the daemon sends back (replies, watch
//! events) goes into the ring. The vCPU thread moves requests when the guest
//! notifies (and whatever the daemon already sent); a reader thread
//! ([`XsRelay::run_reader`]) moves the rest. The socket is non-blocking;
//! the reader only polls it and reads under the relay's lock, so the two
//! never split a message between them.
//!
//! The reader marks the guest's event channel pending and wakes a blocked
//! vCPU, but does not signal a running one out of `KVM_RUN`: the event is
//! delivered at its next exit (a kick from another thread that lands while
//! the vCPU thread handles an exit from rxen's shim gets the kick vector
//! injected into the shim, which crashes the domain: seen with Debian's
//! cloud kernel in guest_rootfs; see the report to pv's maintainer). A
//! guest waiting for a reply is blocked, so it wakes at once.
//!
//! The ring is the guest's and may be hostile: a corrupt index or an
//! over-long message ends the relay (reported in the ring's `error` field,
//! as xenstored does), never the monitor.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use pv::domain::DomainShared;
use xenstore::ring::{RawPage, Ring, ERROR_PROTO};
use xenstore::Decoder;

/// Replies held back for a guest that does not consume them; past this the
/// relay stops reading the daemon, which then stops reading the guest's
/// requests once a few replies are queued (`xenstore::unix`).
const OUT_HIGH_WATER: usize = 64 * 1024;

struct Inner {
    ring: Ring<RawPage>,
    daemon: UnixStream,
    /// Only to catch an over-long message (the stream cannot recover).
    decoder: Decoder,
    /// Daemon bytes not yet in the ring.
    out: VecDeque<u8>,
    /// The relay ended (guest error, daemon gone, or closed).
    ended: bool,
    /// When requests were sent that no daemon bytes have answered yet.
    waiting_since: Option<Instant>,
    stats: RelayStats,
}

/// What the relay moved (logged when it closes).
#[derive(Debug, Default, Clone, Copy)]
pub struct RelayStats {
    /// Whole requests the guest sent.
    pub requests: u64,
    /// Bytes from the daemon (replies and watch events).
    pub bytes_in: u64,
    /// Time from sending requests to the daemon's first bytes back, summed:
    /// what the guest waited on the daemon (an upper bound of the relay's
    /// cost over an in-process store).
    pub daemon_wait: Duration,
}

/// One guest's relay. See the module documentation.
pub struct XsRelay {
    inner: Mutex<Inner>,
    room: Condvar,
    port: u32,
}

impl XsRelay {
    /// Relays `ring` (event channel `port`) over `daemon`, a connection
    /// already speaking for the guest.
    pub fn new(ring: Ring<RawPage>, daemon: UnixStream, port: u32) -> std::io::Result<XsRelay> {
        daemon.set_nonblocking(true)?;
        Ok(XsRelay {
            inner: Mutex::new(Inner {
                ring,
                daemon,
                decoder: Decoder::new(),
                out: VecDeque::new(),
                ended: false,
                waiting_since: None,
                stats: RelayStats::default(),
            }),
            room: Condvar::new(),
            port,
        })
    }

    /// The guest's event channel for xenstore.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// The guest notified: sends its requests to the daemon and fills the
    /// ring with waiting replies. Returns whether to notify it back.
    /// `stopping`: the domain is stopping (a daemon that stopped reading,
    /// because this guest does not take its replies, is then given up on).
    pub fn guest_notified(&self, stopping: &AtomicBool) -> bool {
        let mut g = self.inner.lock().unwrap();
        if g.ended {
            return false;
        }
        let mut bytes = Vec::new();
        if let Err(e) = g.ring.read_requests(&mut bytes) {
            tracing::warn!("xenstore ring closed: {e}");
            g.ended = true;
            // The guest sees the `error` field; wake it to look.
            return true;
        }
        if !bytes.is_empty() {
            g.decoder.push(&bytes);
            loop {
                match g.decoder.next_message() {
                    Ok(Some(_)) => g.stats.requests += 1,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("xenstore ring closed: {e}");
                        g.ring.set_error(ERROR_PROTO);
                        g.ended = true;
                        return true;
                    }
                }
            }
            if let Err(e) = write_all(&mut g.daemon, &bytes, stopping) {
                tracing::error!("xenstored connection lost: {e}");
                g.ended = true;
                return true;
            }
            g.waiting_since.get_or_insert_with(Instant::now);
        }
        // Replies or events that came meanwhile.
        if self.read_available(&mut g).is_err() {
            return true;
        }
        let moved = fill_ring(&mut g) || !bytes.is_empty();
        if g.out.len() < OUT_HIGH_WATER {
            self.room.notify_all();
        }
        moved
    }

    /// Reads what the daemon sent (without blocking) and puts it in the
    /// ring. Err: the connection ended.
    fn read_available(&self, g: &mut Inner) -> Result<(), ()> {
        let mut buf = [0u8; 4096];
        // Not past the high-water mark: a guest that does not take its
        // replies must not grow this process either.
        while g.out.len() < OUT_HIGH_WATER {
            match g.daemon.read(&mut buf) {
                Ok(0) => {
                    if !g.ended {
                        tracing::error!("xenstored closed the guest's connection");
                    }
                    g.ended = true;
                    return Err(());
                }
                Ok(n) => {
                    g.out.extend(&buf[..n]);
                    g.stats.bytes_in += n as u64;
                    if let Some(t) = g.waiting_since.take() {
                        g.stats.daemon_wait += t.elapsed();
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if !g.ended {
                        tracing::warn!("xenstored connection read failed: {e}");
                    }
                    g.ended = true;
                    return Err(());
                }
            }
        }
        fill_ring(g);
        Ok(())
    }

    /// Moves what the vCPU thread did not pick up (late replies, watch
    /// events) into the ring until the connection ends ([`XsRelay::close`],
    /// or the daemon went). Run it on its own thread.
    pub fn run_reader(&self, dom: &DomainShared) {
        let stream = match self.inner.lock().unwrap().daemon.try_clone() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot read from xenstored: {e}");
                return;
            }
        };
        loop {
            if !wait_readable(&stream, Duration::MAX) {
                continue;
            }
            let moved = {
                let mut g = self.inner.lock().unwrap();
                // Back-pressure: let the guest make room first.
                while g.out.len() >= OUT_HIGH_WATER && !g.ended {
                    g = self.room.wait(g).unwrap();
                }
                if g.ended {
                    break;
                }
                let before = g.stats.bytes_in;
                if self.read_available(&mut g).is_err() {
                    break;
                }
                g.stats.bytes_in != before
            };
            if moved && dom.bits().set_pending(self.port, dom.vcpu_info()) {
                // Not dom.raise(): see the module documentation.
                dom.wakeup.notify();
            }
        }
    }

    /// Ends the relay: the daemon connection closes (the reader returns).
    pub fn close(&self) {
        let mut g = self.inner.lock().unwrap();
        let st = g.stats;
        tracing::info!(
            requests = st.requests,
            bytes_in = st.bytes_in,
            daemon_wait_ms = st.daemon_wait.as_secs_f64() * 1e3,
            "xenstore relay closed"
        );
        g.ended = true;
        let _ = g.daemon.shutdown(std::net::Shutdown::Both);
        self.room.notify_all();
    }
}

/// Waits until `s` is readable (or closed), up to `limit`; false on timeout.
fn wait_readable(s: &UnixStream, limit: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = if limit == Duration::MAX {
        -1
    } else {
        // Round up: a 0 ms poll would spin.
        limit.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
    };
    // SAFETY: one valid pollfd on a descriptor `s` keeps open.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

/// `write_all` on a non-blocking socket; fails once `stopping` is set
/// while the socket stays full (the daemon stops reading a connection
/// whose replies are not taken: a guest that ignores its ring waits here,
/// in its own hypercall, until its domain stops).
fn write_all(s: &mut UnixStream, mut data: &[u8], stopping: &AtomicBool) -> std::io::Result<()> {
    while !data.is_empty() {
        match s.write(data) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(std::io::Error::other("the domain is stopping"));
                }
                let mut pfd = libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd on an open descriptor.
                unsafe { libc::poll(&mut pfd, 1, 1000) };
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes waiting daemon bytes into the ring; whether any went in.
fn fill_ring(g: &mut Inner) -> bool {
    let mut moved = false;
    while !g.out.is_empty() {
        let (a, _) = g.out.as_slices();
        match g.ring.write_responses(a) {
            Ok(0) => break,
            Ok(n) => {
                g.out.drain(..n);
                moved = true;
            }
            Err(e) => {
                tracing::warn!("xenstore ring closed: {e}");
                g.ended = true;
                return true;
            }
        }
    }
    moved
}
