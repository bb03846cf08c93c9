//! The domain's device models as the PV machine sees them: a
//! [`DeviceHub`] holding the console backend, the guest's xenstore ring
//! (relayed to the host's xenstored, [`crate::xs_relay`]) and the monitor's
//! own dom0 connection to that daemon, and the console output (terminal
//! and log file).
//!
//! The hub is handed to `pv::launch::prepare` before the ring pages are
//! known, so it starts empty and [`HubState::attach`] wires the rings once
//! the domain is built. Lock order: `console`, then `output`; `xenstore`,
//! then `blk`.
//!
//! Backends watch the store on the dom0 connection ([`StoreOps`], one token
//! each). Whoever holds the `xenstore` lock hands the watch events that
//! arrived to the backends before letting go ([`HubState::store_news`]); a
//! thread of the hub waits for events that arrive while nobody holds it.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use backends::console::{ConsoleBackend, DrainError};
use pv::builder::BootInfo;
use pv::domain::{DeviceHub, DomainShared};
use xenstore::ring::{RawPage, Ring, PAGE_SIZE};
use xenstore::{DomId, StoreOps, XsClient};

use crate::xs_relay::XsRelay;

/// Where console bytes go: the terminal (when attached) and the log file.
/// Writing never fails: a terminal that errors is dropped, a log that errors
/// is closed, each with one warning in the domain log.
#[derive(Default)]
pub struct ConsoleOutput {
    terminal: Option<Box<dyn Write + Send>>,
    log: Option<File>,
}

impl ConsoleOutput {
    /// Output to `terminal` and/or `log`.
    pub fn new(terminal: Option<Box<dyn Write + Send>>, log: Option<File>) -> ConsoleOutput {
        ConsoleOutput { terminal, log }
    }

    /// Stops writing to the terminal (after detaching).
    pub fn detach_terminal(&mut self) {
        if let Some(mut t) = self.terminal.take() {
            let _ = t.flush();
        }
    }
}

impl Write for ConsoleOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(t) = &mut self.terminal {
            if let Err(e) = t.write_all(buf).and_then(|_| t.flush()) {
                tracing::warn!("console output to the terminal stopped: {e}");
                self.terminal = None;
            }
        }
        if let Some(l) = &mut self.log {
            if let Err(e) = l.write_all(buf) {
                tracing::warn!("console log stopped: {e}");
                self.log = None;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct ConsoleSlot {
    backend: ConsoleBackend<RawPage>,
    port: u32,
}

/// The monitor's dom0 connection to the host's xenstored.
struct XenstoreSlot {
    client: XsClient,
    domid: DomId,
}

/// The monitor's connections to the host's xenstored, made before the
/// domain is built ([`crate::build`]).
pub struct StoreLink {
    /// As dom0: the toolstack's writes and the backends.
    pub client: XsClient,
    /// Speaking for the guest (its ring's relay).
    pub guest: UnixStream,
}

/// Errors wiring the rings.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// A ring page the builder reported is not in guest memory.
    #[error("the {what} ring page (pfn {pfn:#x}) lies outside the domain's memory")]
    BadPfn { what: &'static str, pfn: u64 },
    /// The xenstore relay could not be set up (thread, socket).
    #[error("cannot set up the xenstore relay: {0}")]
    Thread(std::io::Error),
}

/// Device state shared by the hub (called on the vCPU thread) and the
/// monitor's threads (console input).
#[derive(Default)]
pub struct HubState {
    output: Mutex<ConsoleOutput>,
    /// Whether the last `console_io` byte was `\r` (see [`crlf`]).
    console_io_cr: Mutex<bool>,
    console: Mutex<Option<ConsoleSlot>>,
    xenstore: Mutex<Option<XenstoreSlot>>,
    relay: Mutex<Option<Arc<XsRelay>>>,
    /// Wakes the store-event thread to end it.
    store_wake: Mutex<Option<UnixStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Virtual block devices (see `blk.rs`).
    blk: Mutex<crate::blk::BlockDevices>,
    blk_worker: crate::blk::BlockWorker,
    /// Network interfaces (see `net.rs`); lock order: `xenstore`, then `net`.
    net: Mutex<crate::net::NetDevices>,
}

/// Maps guest frame `pfn` of `dom` as a shared page.
fn guest_page(dom: &DomainShared, pfn: u64, what: &'static str) -> Result<RawPage, AttachError> {
    let ram = &dom.machine.ram;
    let bad = AttachError::BadPfn { what, pfn };
    let gpa = pfn
        .checked_mul(PAGE_SIZE as u64)
        .ok_or(AttachError::BadPfn { what, pfn })?;
    match gpa.checked_add(PAGE_SIZE as u64) {
        Some(end) if end <= ram.size() => {}
        _ => return Err(bad),
    }
    let ptr = NonNull::new((ram.host_base() + gpa) as *mut u8).ok_or(bad)?;
    // SAFETY: the page lies inside the domain's guest RAM mapping (checked
    // above; the mapping is page-aligned), which stays mapped as long as
    // `dom` lives. The page is only used by the hub, which `dom` owns, and by
    // the monitor's threads, which hold an `Arc<DomainShared>` while they
    // use it. The guest changes it concurrently; RawPage only makes atomic
    // and volatile accesses.
    Ok(unsafe { RawPage::new(ptr) })
}

impl HubState {
    /// A hub writing console bytes to `output`.
    pub fn new(output: ConsoleOutput) -> Arc<HubState> {
        Arc::new(HubState {
            output: Mutex::new(output),
            ..HubState::default()
        })
    }

    /// The [`DeviceHub`] to give to `pv::launch::prepare`.
    pub fn hub(self: &Arc<Self>) -> Box<dyn DeviceHub> {
        Box::new(Hub(self.clone()))
    }

    /// Wires the console and xenstore rings of a built domain and starts
    /// the hub's xenstore threads. The store must already hold the
    /// domain's tree; `link.guest` already speaks for `domid`.
    pub fn attach(
        self: &Arc<Self>,
        dom: &Arc<DomainShared>,
        boot: &BootInfo,
        link: StoreLink,
        domid: DomId,
    ) -> Result<(), AttachError> {
        let console_page = guest_page(dom, boot.console_pfn, "console")?;
        let xs_page = guest_page(dom, boot.xenstore_pfn, "xenstore")?;
        *self.console.lock().unwrap() = Some(ConsoleSlot {
            backend: ConsoleBackend::new(console_page),
            port: boot.console_evtchn,
        });
        let relay = Arc::new(
            XsRelay::new(Ring::new(xs_page), link.guest, boot.xenstore_evtchn)
                .map_err(AttachError::Thread)?,
        );
        let store_fd = link.client.as_raw_fd();
        *self.xenstore.lock().unwrap() = Some(XenstoreSlot {
            client: link.client,
            domid,
        });
        *self.relay.lock().unwrap() = Some(relay.clone());
        let (wake_rx, wake_tx) = UnixStream::pair().map_err(AttachError::Thread)?;
        *self.store_wake.lock().unwrap() = Some(wake_tx);
        let (d, r) = (dom.clone(), relay);
        let reader = std::thread::Builder::new()
            .name("rxen-xs-relay".into())
            .spawn(move || r.run_reader(&d))
            .map_err(AttachError::Thread)?;
        let (h, d) = (self.clone(), dom.clone());
        let events = std::thread::Builder::new()
            .name("rxen-xs-events".into())
            .spawn(move || h.run_store_events(&d, store_fd, wake_rx))
            .map_err(AttachError::Thread)?;
        self.threads.lock().unwrap().extend([reader, events]);
        Ok(())
    }

    /// Waits for watch events on the dom0 connection that arrive while
    /// nobody holds the `xenstore` lock, and hands them to the backends.
    fn run_store_events(&self, dom: &DomainShared, fd: i32, wake: UnixStream) {
        loop {
            let mut fds = [
                libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two valid pollfds; both descriptors stay open while
            // this thread runs (the slot and `wake` outlive the loop).
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            if fds[1].revents != 0 {
                return;
            }
            {
                let mut slot = self.xenstore.lock().unwrap();
                let Some(s) = slot.as_mut() else { return };
                if let Err(e) = s.client.pump() {
                    tracing::error!("xenstored connection lost: {e}");
                    return;
                }
                self.store_news(dom, &mut s.client);
            }
            // Vifs whose unplug completed go (outside the store lock).
            self.bury_net();
        }
    }

    /// Hands the watch events that arrived on the dom0 connection to the
    /// backends (call with the `xenstore` lock held, before letting go).
    fn store_news(&self, dom: &DomainShared, client: &mut XsClient) {
        // A backend's answer may prompt another change: a few rounds.
        for _ in 0..8 {
            let blk = self.blk.lock().unwrap().poll_store(dom, client);
            let net = self.net.lock().unwrap().poll_store(dom, client);
            if !blk && !net {
                break;
            }
        }
    }

    /// The domain stopped: releases it in the store (its tree and backend
    /// directories go) and closes the connections to the daemon.
    pub fn release_xenstore(&self) {
        if let Some(mut s) = self.xenstore.lock().unwrap().take() {
            let arg = format!("{}\0", s.domid);
            if let Err(e) =
                s.client
                    .request(xenstore::MsgType::Release, xenstore::NO_TX, arg.as_bytes())
            {
                tracing::warn!("cannot release the domain in xenstore: {e}");
            }
        }
        if let Some(r) = self.relay.lock().unwrap().take() {
            r.close();
        }
        if let Some(mut w) = self.store_wake.lock().unwrap().take() {
            let _ = w.write_all(b"x");
        }
        for t in std::mem::take(&mut *self.threads.lock().unwrap()) {
            let _ = t.join();
        }
    }

    /// Hands the domain's vbds to the hub (before [`HubState::attach`]).
    pub fn attach_block(&self, devices: crate::blk::BlockDevices) {
        *self.blk.lock().unwrap() = devices;
    }

    /// Hands the domain's vifs to the hub (before [`HubState::attach`]).
    pub fn attach_net(&self, devices: crate::net::NetDevices) {
        *self.net.lock().unwrap() = devices;
    }

    /// Starts the vifs' workers (and those of vifs attached later).
    pub fn start_net(
        self: &Arc<Self>,
        dom: &Arc<DomainShared>,
    ) -> Result<(), crate::net::NetError> {
        let news: crate::net::StoreNews = {
            let (hub, dom) = (Arc::downgrade(self), Arc::downgrade(dom));
            Arc::new(move || {
                if let (Some(h), Some(d)) = (hub.upgrade(), dom.upgrade()) {
                    h.with_net(&d, |n, xs| n.poll_store(&d, xs));
                }
            })
        };
        self.net.lock().unwrap().start(dom.clone(), news)
    }

    /// Stops the vifs' workers (the domain stopped); the TAPs stay until
    /// the hub goes.
    pub fn stop_net(&self) {
        let vifs = {
            let mut n = self.net.lock().unwrap();
            n.stopping();
            n.all()
        };
        for v in &vifs {
            crate::net::stop_worker(v);
        }
        self.bury_net();
    }

    fn net_owner(&self, port: u32) -> Option<Arc<crate::net::VifDevice>> {
        self.net.lock().unwrap().owner(port)
    }

    /// Joins and unplugs the vifs whose hot-unplug completed.
    fn bury_net(&self) {
        let dead = self.net.lock().unwrap().take_dead();
        for v in dead {
            crate::net::bury(v);
        }
    }

    /// Runs `f` on the store and the vifs, delivers what it changed to the
    /// guest, then unplugs vifs that went.
    fn with_net<R>(
        &self,
        dom: &DomainShared,
        f: impl FnOnce(&mut crate::net::NetDevices, &mut XsClient) -> R,
    ) -> Option<R> {
        let r = {
            let mut slot = self.xenstore.lock().unwrap();
            let s = slot.as_mut()?;
            let r = f(&mut self.net.lock().unwrap(), &mut s.client);
            self.store_news(dom, &mut s.client);
            r
        };
        self.bury_net();
        Some(r)
    }

    /// Hot-plugs a network interface (`network-attach`).
    pub fn network_attach(
        &self,
        dom: &DomainShared,
        domid: DomId,
        nic: &crate::net::NicAttach,
    ) -> Result<(), crate::net::NetError> {
        self.with_net(dom, |n, xs| n.attach(xs, domid, nic))
            .unwrap_or(Err(crate::net::NetError::NoSuchNic(nic.devid.to_string())))
    }

    /// Starts a hot-unplug (`network-detach`) of the interface with that
    /// devid or MAC; it goes once the guest has let go.
    pub fn network_detach(
        &self,
        dom: &DomainShared,
        which: &str,
    ) -> Result<(), crate::net::NetError> {
        self.with_net(dom, |n, xs| n.detach(dom, xs, which))
            .unwrap_or(Err(crate::net::NetError::NoSuchNic(which.to_string())))
    }

    /// The domain's network interfaces (`network-list`).
    pub fn network_list(&self) -> Vec<crate::net::NetInfo> {
        self.net.lock().unwrap().list()
    }

    /// Runs `f` on the store and the disks (hot-plug), then delivers what
    /// it changed to the guest's xenstore connection.
    fn with_block<R>(
        &self,
        dom: &DomainShared,
        f: impl FnOnce(&mut crate::blk::BlockDevices, &mut XsClient) -> R,
    ) -> Option<R> {
        let mut slot = self.xenstore.lock().unwrap();
        let s = slot.as_mut()?;
        let r = f(&mut self.blk.lock().unwrap(), &mut s.client);
        self.store_news(dom, &mut s.client);
        Some(r)
    }

    /// Hot-plugs a disk (`block-attach`) into the running domain `domid`.
    pub fn block_attach(
        &self,
        dom: &DomainShared,
        domid: DomId,
        disk: &crate::blk::DiskAttach,
    ) -> Result<(), crate::blk::BlockError> {
        self.with_block(dom, |b, xs| b.attach(xs, domid, disk))
            .unwrap_or(Err(crate::blk::BlockError::NoSuchDisk(disk.vdev.clone())))
    }

    /// Starts a hot-unplug (`block-detach`); the disk goes once the guest
    /// has closed it.
    pub fn block_detach(
        &self,
        dom: &DomainShared,
        vdev: &str,
    ) -> Result<(), crate::blk::BlockError> {
        self.with_block(dom, |b, xs| b.detach(dom, xs, vdev))
            .unwrap_or(Err(crate::blk::BlockError::NoSuchDisk(vdev.to_string())))
    }

    /// The domain's disks (`block-list`).
    pub fn block_list(&self) -> Vec<crate::blk::BlockInfo> {
        self.blk.lock().unwrap().list()
    }

    /// Serves the block rings on the calling thread until
    /// [`HubState::stop_block`] (run it on a thread of its own).
    pub fn run_block(&self, dom: &DomainShared) {
        self.blk_worker
            .run(&self.blk, dom, &|| self.block_store_news(dom));
    }

    /// Serves a block port on the caller's thread (no worker running):
    /// whether to notify back, and whether the store has news.
    fn serve_block_inline(&self, dom: &DomainShared, port: u32) -> Option<(bool, bool)> {
        let mut blk = self.blk.lock().unwrap();
        let notify = blk.notified(dom, port)?;
        Some((notify, blk.wants_store()))
    }

    /// Lets the disks write what they have to tell the store.
    fn block_store_news(&self, dom: &DomainShared) {
        self.with_block(dom, |b, xs| b.poll_store(dom, xs));
    }

    /// Ends [`HubState::run_block`] and makes every disk's writes durable
    /// (the domain stopped).
    pub fn stop_block(&self) {
        self.blk_worker.stop();
        self.blk.lock().unwrap().flush_all();
    }

    /// Stops console output to the terminal (the log goes on).
    pub fn detach_terminal(&self) {
        self.output.lock().unwrap().detach_terminal();
    }

    /// Sends `bytes` to the guest's console; raises its event if any went in.
    pub fn console_input(&self, dom: &DomainShared, bytes: &[u8]) {
        let raise = {
            let mut slot = self.console.lock().unwrap();
            let Some(c) = slot.as_mut() else { return };
            match c.backend.push_input(bytes) {
                Ok(n) => (n > 0).then_some(c.port),
                Err(_) => None,
            }
        };
        if let Some(port) = raise {
            dom.raise(port);
        }
    }

    /// Retries console input that did not fit; raises the event if any went in.
    pub fn flush_console_input(&self, dom: &DomainShared) {
        let raise = {
            let mut slot = self.console.lock().unwrap();
            let Some(c) = slot.as_mut() else { return };
            match c.backend.flush_input() {
                Ok(n) => (n > 0).then_some(c.port),
                Err(_) => None,
            }
        };
        if let Some(port) = raise {
            dom.raise(port);
        }
    }

    /// Runs `f` on the monitor's dom0 connection to the store.
    pub fn with_xenstore<R>(&self, f: impl FnOnce(&mut dyn StoreOps) -> R) -> Option<R> {
        let mut slot = self.xenstore.lock().unwrap();
        slot.as_mut().map(|s| f(&mut s.client))
    }

    /// Writes `value` at `path` as dom0 (e.g. `control/shutdown` for `rxen
    /// shutdown`); the daemon delivers the watch events to the guest.
    pub fn xenstore_write(
        &self,
        dom: &DomainShared,
        path: &str,
        value: &[u8],
    ) -> Result<(), xenstore::XsError> {
        let mut slot = self.xenstore.lock().unwrap();
        let s = slot.as_mut().ok_or(xenstore::XsError::Io)?;
        s.client.write(path, value)?;
        tracing::debug!(path, "dom0 wrote a node");
        self.store_news(dom, &mut s.client);
        Ok(())
    }

    fn service_console(&self) -> Option<u32> {
        let mut slot = self.console.lock().unwrap();
        let c = slot.as_mut()?;
        let was_broken = c.backend.broken().is_some();
        let mut out = self.output.lock().unwrap();
        match c.backend.service(&mut *out) {
            Ok(s) => s.notify().then_some(c.port),
            Err(DrainError::Console(e)) => {
                if !was_broken {
                    tracing::warn!("console disabled: {e}");
                }
                None
            }
            Err(DrainError::Sink(e)) => {
                tracing::warn!("console output failed: {e}");
                Some(c.port)
            }
        }
    }

    fn service_xenstore(&self, dom: &DomainShared) -> Option<u32> {
        let relay = self.relay.lock().unwrap().clone()?;
        relay.guest_notified(&dom.stopping).then_some(relay.port())
    }

    fn ports(&self) -> (Option<u32>, Option<u32>) {
        (
            self.console.lock().unwrap().as_ref().map(|c| c.port),
            self.relay.lock().unwrap().as_ref().map(|r| r.port()),
        )
    }
}

/// `HYPERVISOR_console_io` text ends lines with a bare `\n` (Xen adds the
/// `\r` on its serial line); the terminal is raw, so add it here. `cr` says
/// whether the previous byte, possibly from an earlier call, was `\r`.
pub fn crlf(bytes: &[u8], cr: &mut bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for &b in bytes {
        if b == b'\n' && !*cr {
            out.push(b'\r');
        }
        out.push(b);
        *cr = b == b'\r';
    }
    out
}

/// The [`DeviceHub`] of one domain.
struct Hub(Arc<HubState>);

impl DeviceHub for Hub {
    fn guest_notify(&self, dom: &DomainShared, port: u32) {
        let (console, xenstore) = self.0.ports();
        let raise = if Some(port) == console {
            self.0.service_console()
        } else if Some(port) == xenstore {
            let r = self.0.service_xenstore(dom);
            self.0.bury_net();
            r
        } else if let Some(vif) = self.0.net_owner(port) {
            if vif.guest_notified(dom, port) {
                self.0.with_net(dom, |n, xs| n.poll_store(dom, xs));
            }
            None
        } else if self.0.blk_worker.kick(port) {
            None
        } else if let Some((notify, news)) = self.0.serve_block_inline(dom, port) {
            if news {
                self.0.block_store_news(dom);
            }
            notify.then_some(port)
        } else {
            tracing::debug!(port, "notification on a port with no backend");
            None
        };
        if let Some(p) = raise {
            dom.raise(p);
        }
    }

    fn console_io_write(&self, bytes: &[u8]) {
        let text = crlf(bytes, &mut self.0.console_io_cr.lock().unwrap());
        let _ = self.0.output.lock().unwrap().write_all(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose bytes the test can see after handing it away.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Failing;
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(libc::EIO))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn console_io_goes_to_the_terminal_and_the_log() {
        let term = Shared::default();
        let dir = std::env::temp_dir().join(format!("rxen-hub-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log_path = dir.join("console.log");
        let log = File::create(&log_path).unwrap();
        let state = HubState::new(ConsoleOutput::new(Some(Box::new(term.clone())), Some(log)));
        let hub = state.hub();
        hub.console_io_write(b"Linux version 6.1\n");
        state.detach_terminal();
        hub.console_io_write(b"after detach\n");
        assert_eq!(&*term.0.lock().unwrap(), b"Linux version 6.1\r\n");
        assert_eq!(
            std::fs::read(&log_path).unwrap(),
            b"Linux version 6.1\r\nafter detach\r\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn console_io_lines_get_a_carriage_return_once() {
        let mut cr = false;
        assert_eq!(crlf(b"a\nb\r\nc", &mut cr), b"a\r\nb\r\nc");
        assert_eq!(crlf(b"\r", &mut cr), b"\r");
        // The \r came in the previous call: no second one.
        assert_eq!(crlf(b"\n\n", &mut cr), b"\n\r\n");
    }

    #[test]
    fn a_failing_terminal_is_dropped_without_losing_the_log() {
        let log_dir = std::env::temp_dir().join(format!("rxen-hub-test2-{}", std::process::id()));
        std::fs::create_dir_all(&log_dir).unwrap();
        let log_path = log_dir.join("console.log");
        let mut out = ConsoleOutput::new(
            Some(Box::new(Failing)),
            Some(File::create(&log_path).unwrap()),
        );
        out.write_all(b"one ").unwrap();
        out.write_all(b"two").unwrap();
        assert!(out.terminal.is_none());
        assert_eq!(std::fs::read(&log_path).unwrap(), b"one two");
        std::fs::remove_dir_all(&log_dir).unwrap();
    }
}
