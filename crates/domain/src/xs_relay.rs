//! The guest's xenstore ring, relayed to the host's xenstored.
//!
//! The store is the host's daemon ([`crate::xenstored`]); the monitor only
//! moves bytes. Requests the guest puts on its ring go, as they are, to a
//! daemon connection that speaks for the guest's domain
//! ([`xenstore::server::CONTROL_GUEST`], so the daemon applies the domain's
//! permissions and quotas), and what the daemon sends back (replies, watch
//! events) goes into the ring. The vCPU thread moves requests when the guest
//! notifies; a reader thread ([`XsRelay::run_reader`]) moves replies and
//! raises the guest's event channel.
//!
//! The ring is the guest's and may be hostile: a corrupt index or an
//! over-long message ends the relay (reported in the ring's `error` field,
//! as xenstored does), never the monitor.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, Mutex};

use pv::domain::DomainShared;
use xenstore::ring::{RawPage, Ring, ERROR_PROTO};
use xenstore::Decoder;

/// Replies held back for a guest that does not consume them; past this the
/// relay stops reading the daemon (which then queues them itself).
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
    pub fn new(ring: Ring<RawPage>, daemon: UnixStream, port: u32) -> XsRelay {
        XsRelay {
            inner: Mutex::new(Inner {
                ring,
                daemon,
                decoder: Decoder::new(),
                out: VecDeque::new(),
                ended: false,
            }),
            room: Condvar::new(),
            port,
        }
    }

    /// The guest's event channel for xenstore.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// The guest notified: sends its requests to the daemon and fills the
    /// ring with waiting replies. Returns whether to notify it back.
    pub fn guest_notified(&self) -> bool {
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
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("xenstore ring closed: {e}");
                        g.ring.set_error(ERROR_PROTO);
                        g.ended = true;
                        return true;
                    }
                }
            }
            if let Err(e) = g.daemon.write_all(&bytes) {
                tracing::error!("xenstored connection lost: {e}");
                g.ended = true;
                return true;
            }
        }
        let moved = fill_ring(&mut g) || !bytes.is_empty();
        if g.out.len() < OUT_HIGH_WATER {
            self.room.notify_all();
        }
        moved
    }

    /// Moves the daemon's bytes into the ring until the connection ends
    /// ([`XsRelay::close`], or the daemon went). Run it on its own thread.
    pub fn run_reader(&self, dom: &DomainShared) {
        let stream = match self.inner.lock().unwrap().daemon.try_clone() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot read from xenstored: {e}");
                return;
            }
        };
        let mut stream = stream;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("xenstored connection read failed: {e}");
                    break;
                }
            };
            let moved = {
                let mut g = self.inner.lock().unwrap();
                if g.ended {
                    break;
                }
                g.out.extend(&buf[..n]);
                fill_ring(&mut g)
            };
            if moved {
                dom.raise(self.port);
            }
            // Back-pressure: wait for the guest to make room.
            let mut g = self.inner.lock().unwrap();
            while g.out.len() >= OUT_HIGH_WATER && !g.ended {
                g = self.room.wait(g).unwrap();
            }
        }
        let mut g = self.inner.lock().unwrap();
        if !g.ended {
            tracing::error!("xenstored closed the guest's connection");
            g.ended = true;
        }
    }

    /// Ends the relay: the daemon connection closes (the reader returns).
    pub fn close(&self) {
        let mut g = self.inner.lock().unwrap();
        g.ended = true;
        let _ = g.daemon.shutdown(std::net::Shutdown::Both);
        self.room.notify_all();
    }
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
