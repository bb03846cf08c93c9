//! Network interfaces of a domain: each `vif=` entry is a TAP device on
//! the host (plugged into its bridge by `hostnet`), a vif on xenbus
//! (`backends::vif`) and a worker thread that moves packets between the
//! two (`backends::netback`).
//!
//! The TAP devices are created before the domain is built, so a missing
//! bridge stops `create` before the guest runs. A TAP is non-persistent:
//! it goes with the monitor's file descriptors, so even `kill -9` of the
//! monitor leaves nothing behind.
//!
//! Each vif's worker sleeps in `poll(2)` on an eventfd (the guest's
//! notifications, forwarded by the hub from the vCPU thread) and on the
//! TAP's queues (packets for the guest). It serves the tx rings, then
//! reads the TAP until the guest's rx buffers run out; a packet that does
//! not fit waits, and the TAP is not read until the guest posts buffers
//! (it was asked to notify then). The TAP's carrier follows the link: up
//! while the frontend is connected.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use backends::net_packet::{flow_hash, VirtioNetHdr};
use backends::netback::{RxOutcome, TxSink};
use backends::vif::{Vif, VifConfig};
use backends::RawPage;
use hostnet::{HostVif, HostVifConfig, Mac, Offload, RateLimiter, TapQueue, VnetHdr};
use pv::domain::DomainShared;
use xenstore::{DomId, StoreOps, XsError};

use crate::blk::Link;

/// Queues a vif offers (`multi-queue-max-queues`); netfront uses as many
/// as the guest has vCPUs, up to this (or its `max_queues` parameter).
pub const MAX_QUEUES: u32 = 2;
/// Packets read from one TAP queue per round before the others get a turn.
const RX_BATCH: usize = 256;

/// One network interface to give the guest (a validated `vif=` entry).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NicAttach {
    pub devid: u32,
    /// The guest's MAC (the toolstack picks a random one in Xen's OUI).
    pub mac: [u8; 6],
    /// `bridge=` (default `xenbr0`).
    pub bridge: Option<String>,
    /// `vifname=` (default `vifDOMID.DEVID`).
    pub vifname: Option<String>,
    pub mtu: Option<u32>,
    /// `ip=` as written; only told to the store and the script.
    pub ip: Option<String>,
    /// `script=` (none or `vif-bridge`: rxen bridges natively).
    pub script: Option<String>,
    pub gatewaydev: Option<String>,
    /// `rate=`: bytes per second and the credit interval in µs.
    pub rate: Option<(u64, u32)>,
}

/// Why a network interface could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Host(#[from] hostnet::HostNetError),
    #[error("vif {devid}: cannot write its xenstore entries: {source}")]
    Store { devid: u32, source: XsError },
    #[error("vif {devid}: the domain already has a network interface with that devid")]
    InUse { devid: u32 },
    #[error("the domain has no network interface {0}")]
    NoSuchNic(String),
    #[error("vif {devid}: {what}: {source}")]
    Io {
        devid: u32,
        what: &'static str,
        source: std::io::Error,
    },
}

/// One interface as `network-list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetInfo {
    pub devid: u32,
    pub mac: String,
    pub vifname: String,
    pub bridge: Option<String>,
    /// The backend's xenbus state (4: connected).
    pub state: u32,
    /// Event channels of the connected queues.
    pub ports: Vec<u32>,
    /// The first queue's ring grant references, while connected.
    pub tx_ring_ref: Option<u32>,
    pub rx_ring_ref: Option<u32>,
    /// `/local/domain/0/backend/vif/DOMID/DEVID`.
    pub backend_path: String,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
}

/// A random guest MAC in Xen's OUI (00:16:3e), as xl picks one.
pub fn random_mac() -> [u8; 6] {
    Mac::random_xen().0
}

fn mac_string(m: &[u8; 6]) -> String {
    Mac(*m).to_string()
}

/// Host sides plugged before the domain is built, and where script vifs
/// keep their `offline` call (see [`plug_nics`]).
pub struct PluggedNics(Vec<(NicAttach, HostVif)>, Option<PathBuf>);

/// Creates each interface's TAP and puts it on its bridge (or runs its
/// script). A missing bridge is an error naming it. With `record_dir`
/// (the domain's state directory), a script vif's `offline` call is kept
/// there while it is online, this and hot-plugged ones alike, so that the
/// registry makes it if this monitor dies without (`kill -9`).
pub fn plug_nics(
    domid: DomId,
    nics: &[NicAttach],
    record_dir: Option<PathBuf>,
) -> Result<PluggedNics, NetError> {
    let mut out = Vec::new();
    for n in nics {
        out.push((n.clone(), plug(domid, n, record_dir.clone())?));
    }
    Ok(PluggedNics(out, record_dir))
}

fn plug(domid: DomId, n: &NicAttach, record_dir: Option<PathBuf>) -> Result<HostVif, NetError> {
    let mut cfg = HostVifConfig::new(u32::from(domid), n.devid);
    cfg.record_dir = record_dir;
    cfg.vifname = n.vifname.clone();
    cfg.bridge = n.bridge.clone();
    cfg.mtu = n.mtu;
    cfg.script = n.script.clone();
    cfg.gatewaydev = n.gatewaydev.clone();
    cfg.mac = Some(Mac(n.mac));
    cfg.ip = n.ip.clone();
    cfg.queues = MAX_QUEUES as usize;
    // Nothing unfinished reaches the guest before it says what it takes.
    cfg.offload = Offload::NONE;
    let host = HostVif::plug(&cfg)?;
    for q in host.tap().queues() {
        set_carrier(q.as_raw_fd(), false);
    }
    Ok(host)
}

/// `TUNSETCARRIER`: the TAP's link follows the frontend's connection.
fn set_carrier(fd: RawFd, on: bool) {
    const TUNSETCARRIER: libc::c_ulong = 0x4004_54e2;
    let v: libc::c_int = on.into();
    // SAFETY: the ioctl reads one int from the pointer, valid for the call.
    let r = unsafe { libc::ioctl(fd, TUNSETCARRIER, &v) };
    if r < 0 {
        tracing::debug!(
            "TUNSETCARRIER: {} (the link state stays up)",
            std::io::Error::last_os_error()
        );
    }
}

/// One vif: its xenbus side, its host side, and its worker.
pub struct VifDevice {
    devid: u32,
    mac: [u8; 6],
    vif: Mutex<Vif<RawPage>>,
    host: HostVif,
    rate: Option<(u64, u32)>,
    /// The guest's notifications and the stop request wake the worker.
    wake: OwnedFd,
    /// Event channels of the connected queues (for [`NetDevices::owner`]).
    ports: Mutex<Vec<u32>>,
    /// A packet for the guest waits for rx buffers (the worker wants to
    /// hear of the guest's notifications).
    rx_waiting: AtomicBool,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl VifDevice {
    fn new(
        xs: &mut dyn StoreOps,
        domid: DomId,
        n: NicAttach,
        host: HostVif,
    ) -> Result<Self, NetError> {
        let cfg = VifConfig {
            domid,
            devid: n.devid,
            mac: mac_string(&n.mac),
            vifname: host.name().to_string(),
            bridge: host.bridge().map(str::to_string),
            ip: n.ip.clone(),
            mtu: host.mtu(),
            max_queues: MAX_QUEUES,
            script: n.script.clone(),
            rate: n
                .rate
                .map(|(b, us)| format!("{},{us}", u128::from(b) * u128::from(us) / 1_000_000)),
        };
        let vif = Vif::create(xs, cfg).map_err(|source| NetError::Store {
            devid: n.devid,
            source,
        })?;
        // SAFETY: eventfd has no memory preconditions.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(NetError::Io {
                devid: n.devid,
                what: "eventfd",
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: a descriptor eventfd just returned, owned by nobody else.
        let wake = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(VifDevice {
            devid: n.devid,
            mac: n.mac,
            vif: Mutex::new(vif),
            host,
            rate: n.rate,
            wake,
            ports: Mutex::new(Vec::new()),
            rx_waiting: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        })
    }

    /// The guest notified `port`, one of ours (on its vCPU thread): its
    /// tx ring is served right here, so the packets are out and their
    /// responses back before the guest runs on, with no thread to wake.
    /// The worker hears of it when it waits for rx buffers, or when the
    /// vif is busy or rate-limited. Returns whether the store has news.
    pub fn guest_notified(&self, dom: &DomainShared, port: u32) -> bool {
        let vif = if self.rate.is_some() {
            None
        } else {
            self.vif.try_lock().ok()
        };
        let Some(mut vif) = vif else {
            self.notify();
            return false;
        };
        let taps = self.host.tap().queues();
        let link = Link { dom };
        let mut failed = None;
        let mut more = false;
        for (i, q) in vif.queues_mut().iter_mut().enumerate() {
            if q.port != port {
                continue;
            }
            let (mut rate, mut retry_at) = (None, None);
            let mut sink = TapSink {
                q: &taps[i % taps.len()],
                rate: &mut rate,
                retry_at: &mut retry_at,
            };
            match q.engine.service_tx(&link, &mut sink) {
                Ok(out) => {
                    if out.notify {
                        dom.raise(port);
                    }
                    // The worker serves what is left.
                    more |= out.more;
                }
                Err(e) => failed = Some(e.to_string()),
            }
        }
        if let Some(why) = failed {
            vif.fail(why, &link);
            *self.ports.lock().unwrap() = Vec::new();
            return true;
        }
        drop(vif);
        if more || self.rx_waiting.load(Ordering::SeqCst) {
            self.notify();
        }
        false
    }

    fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd. A full
        // counter (EAGAIN) still leaves the worker woken.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn drain_wake(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64; non-blocking.
        unsafe { libc::read(self.wake.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    fn info(&self) -> NetInfo {
        let vif = self.vif.lock().unwrap();
        let s = vif.stats();
        NetInfo {
            devid: self.devid,
            mac: mac_string(&self.mac),
            vifname: self.host.name().to_string(),
            bridge: self.host.bridge().map(str::to_string),
            state: vif.state() as u32,
            ports: vif.ports(),
            tx_ring_ref: vif.ring_refs().map(|r| r.0),
            rx_ring_ref: vif.ring_refs().map(|r| r.1),
            backend_path: vif.backend_path().to_string(),
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
        }
    }
}

/// What the hub calls when a vif has news for the store.
pub type StoreNews = Arc<dyn Fn() + Send + Sync>;

/// The domain's vifs.
#[derive(Default)]
pub struct NetDevices {
    vifs: Vec<Arc<VifDevice>>,
    /// Set by [`NetDevices::start`]: new vifs get a worker at once.
    running: Option<(Arc<DomainShared>, StoreNews)>,
    /// Unplugged vifs waiting for [`bury`].
    dead: Vec<Arc<VifDevice>>,
    /// Where script vifs keep their `offline` call ([`plug_nics`]).
    record_dir: Option<PathBuf>,
}

impl NetDevices {
    /// Writes each interface's backend and frontend nodes for `domid`.
    pub fn create(
        xs: &mut dyn StoreOps,
        domid: DomId,
        nics: PluggedNics,
    ) -> Result<Self, NetError> {
        let mut vifs = Vec::new();
        for (n, host) in nics.0 {
            vifs.push(Arc::new(VifDevice::new(xs, domid, n, host)?));
        }
        Ok(NetDevices {
            vifs,
            running: None,
            dead: Vec::new(),
            record_dir: nics.1,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.vifs.is_empty()
    }

    /// Starts a worker per vif (and for vifs attached later).
    pub fn start(&mut self, dom: Arc<DomainShared>, news: StoreNews) -> Result<(), NetError> {
        self.running = Some((dom.clone(), news.clone()));
        for v in &self.vifs {
            spawn_worker(v, &dom, &news)?;
        }
        Ok(())
    }

    /// The vif whose queue has event channel `port`.
    pub fn owner(&self, port: u32) -> Option<Arc<VifDevice>> {
        self.vifs
            .iter()
            .find(|v| v.ports.lock().unwrap().contains(&port))
            .cloned()
    }

    /// Reacts to frontend state changes; whether the store changed.
    pub fn poll_store(&mut self, dom: &DomainShared, xs: &mut dyn StoreOps) -> bool {
        let link = Link { dom };
        let mut changed = false;
        for v in &self.vifs {
            let mut vif = v.vif.lock().unwrap();
            let gen = vif.generation();
            changed |= vif.poll_store(xs, &link);
            if vif.generation() != gen {
                *v.ports.lock().unwrap() = vif.ports();
                v.notify();
            }
        }
        changed | self.reap(dom, xs)
    }

    /// Hot-plugs an interface (`network-attach`).
    pub fn attach(
        &mut self,
        xs: &mut dyn StoreOps,
        domid: DomId,
        n: &NicAttach,
    ) -> Result<(), NetError> {
        if self.vifs.iter().any(|v| v.devid == n.devid) {
            return Err(NetError::InUse { devid: n.devid });
        }
        let host = plug(domid, n, self.record_dir.clone())?;
        let v = Arc::new(VifDevice::new(xs, domid, n.clone(), host)?);
        if let Some((dom, news)) = &self.running {
            spawn_worker(&v, dom, news)?;
        }
        self.vifs.push(v);
        Ok(())
    }

    /// Starts a hot-unplug (`network-detach`) of the interface with devid
    /// or MAC `which`; it goes once the guest has let go.
    pub fn detach(
        &mut self,
        dom: &DomainShared,
        xs: &mut dyn StoreOps,
        which: &str,
    ) -> Result<(), NetError> {
        let v = self
            .vifs
            .iter()
            .find(|v| v.devid.to_string() == which || mac_string(&v.mac) == which.to_lowercase())
            .ok_or_else(|| NetError::NoSuchNic(which.to_string()))?;
        v.vif.lock().unwrap().request_remove(xs);
        self.reap(dom, xs);
        Ok(())
    }

    /// The interfaces (`network-list`).
    pub fn list(&self) -> Vec<NetInfo> {
        self.vifs.iter().map(|v| v.info()).collect()
    }

    /// Whether a vif has news for the store (a queue was stopped).
    pub fn wants_store(&self) -> bool {
        self.vifs
            .iter()
            .any(|v| v.vif.lock().unwrap().wants_store())
    }

    /// Removes the vifs whose unplug has completed from the store; their
    /// workers are told to stop, and [`NetDevices::take_dead`] hands them
    /// over to be joined and unplugged with no lock held.
    fn reap(&mut self, dom: &DomainShared, xs: &mut dyn StoreOps) -> bool {
        let link = Link { dom };
        let mut reaped = false;
        let mut i = 0;
        while i < self.vifs.len() {
            let mut vif = self.vifs[i].vif.lock().unwrap();
            if !vif.removed() {
                drop(vif);
                i += 1;
                continue;
            }
            vif.remove(xs, &link);
            drop(vif);
            let v = self.vifs.swap_remove(i);
            v.stop.store(true, Ordering::SeqCst);
            v.notify();
            self.dead.push(v);
            reaped = true;
        }
        reaped
    }

    /// Vifs removed from the store, whose workers must be joined and TAPs
    /// unplugged (by the caller, holding no hub lock).
    pub fn take_dead(&mut self) -> Vec<Arc<VifDevice>> {
        std::mem::take(&mut self.dead)
    }

    /// Every vif (to stop their workers with no lock held).
    pub fn all(&self) -> Vec<Arc<VifDevice>> {
        self.vifs.clone()
    }

    /// No new workers from now on (the domain is stopping).
    pub fn stopping(&mut self) {
        self.running = None;
    }
}

fn spawn_worker(
    v: &Arc<VifDevice>,
    dom: &Arc<DomainShared>,
    news: &StoreNews,
) -> Result<(), NetError> {
    let (dev, dom, news) = (v.clone(), dom.clone(), news.clone());
    v.stop.store(false, Ordering::SeqCst);
    let t = std::thread::Builder::new()
        .name(format!("rxen-net{}", v.devid))
        .spawn(move || Worker::new(&dev).run(&dev, &dom, &*news))
        .map_err(|source| NetError::Io {
            devid: v.devid,
            what: "cannot start its thread",
            source,
        })?;
    *v.thread.lock().unwrap() = Some(t);
    Ok(())
}

/// Stops a vif's worker and waits for it.
pub fn stop_worker(v: &VifDevice) {
    v.stop.store(true, Ordering::SeqCst);
    v.notify();
    if let Some(t) = v.thread.lock().unwrap().take() {
        // The worker itself may reap its vif (a failed ring and a closing
        // frontend seen in one round): it stops on its own then.
        if t.thread().id() != std::thread::current().id() {
            let _ = t.join();
        }
    }
}

/// Stops a removed vif's worker and takes its host side down.
pub fn bury(v: Arc<VifDevice>) {
    stop_worker(&v);
    match Arc::try_unwrap(v) {
        Ok(dev) => {
            if let Err(e) = dev.host.unplug() {
                tracing::warn!("{e}");
            }
        }
        Err(v) => tracing::warn!("vif {}: still referenced; its TAP goes with it", v.devid),
    }
}

/// A worker's own state.
struct Worker {
    generation: u64,
    connected: bool,
    /// Per TAP queue: a read buffer, a packet in it that waits for rx
    /// buffers, and whether reading waits for them.
    bufs: Vec<Vec<u8>>,
    waiting: Vec<Option<(VirtioNetHdr, usize)>>,
    /// TAP queues that failed to read (not polled any more).
    dead: Vec<bool>,
    rate: Option<RateLimiter>,
    /// A rate-limited tx ring is served again at this time.
    retry_at: Option<Instant>,
    /// A tx ring's budget ran out: serve again without waiting.
    again: bool,
}

fn to_virtio(h: &VnetHdr) -> VirtioNetHdr {
    VirtioNetHdr {
        flags: h.flags,
        gso_type: h.gso_type,
        hdr_len: h.hdr_len,
        gso_size: h.gso_size,
        csum_start: h.csum_start,
        csum_offset: h.csum_offset,
    }
}

fn to_vnet(h: &VirtioNetHdr) -> VnetHdr {
    VnetHdr {
        flags: h.flags,
        gso_type: h.gso_type,
        hdr_len: h.hdr_len,
        gso_size: h.gso_size,
        csum_start: h.csum_start,
        csum_offset: h.csum_offset,
    }
}

/// The tx sink: one TAP queue, behind the vif's rate limit.
struct TapSink<'a> {
    q: &'a TapQueue,
    rate: &'a mut Option<RateLimiter>,
    retry_at: &'a mut Option<Instant>,
}

impl TxSink for TapSink<'_> {
    fn may_send(&mut self, len: usize) -> bool {
        let Some(r) = self.rate.as_mut() else {
            return true;
        };
        match r.consume(len as u64, Instant::now()) {
            Ok(()) => true,
            Err(at) => {
                *self.retry_at = Some(at);
                false
            }
        }
    }

    fn send(&mut self, hdr: &VirtioNetHdr, frame: &[u8]) -> std::io::Result<()> {
        match self.q.send(&to_vnet(hdr), &[frame])? {
            true => Ok(()),
            false => Err(std::io::Error::from(std::io::ErrorKind::WouldBlock)),
        }
    }
}

impl Worker {
    fn new(dev: &VifDevice) -> Worker {
        let n = dev.host.tap().queues().len();
        Worker {
            generation: u64::MAX,
            connected: false,
            bufs: vec![vec![0u8; hostnet::MAX_FRAME]; n],
            waiting: vec![None; n],
            dead: vec![false; n],
            rate: dev
                .rate
                .map(|(b, us)| RateLimiter::from_rate(b, us, Instant::now())),
            retry_at: None,
            again: false,
        }
    }

    fn run(&mut self, dev: &VifDevice, dom: &DomainShared, news: &dyn Fn()) {
        let taps = dev.host.tap().queues();
        loop {
            if dev.stop.load(Ordering::SeqCst) {
                break;
            }
            let mut fds = vec![libc::pollfd {
                fd: dev.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if self.connected {
                for (t, q) in taps.iter().enumerate() {
                    if self.waiting[t].is_none() && !self.dead[t] {
                        fds.push(libc::pollfd {
                            fd: q.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        });
                    }
                }
            }
            // Rounded up: a wait under 1 ms must not become a busy spin.
            let again = std::mem::take(&mut self.again);
            let timeout = match self.retry_at {
                _ if again => 0,
                Some(at) => at
                    .saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000)
                    .min(1000) as libc::c_int,
                None => -1,
            };
            // SAFETY: `fds` is a valid array of pollfd for the call.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("vif {}: poll failed: {e}; worker stops", dev.devid);
                    break;
                }
                continue;
            }
            dev.drain_wake();
            if self.retry_at.is_some_and(|at| at <= Instant::now()) {
                self.retry_at = None;
            }
            if self.serve(dev, dom) {
                news();
            }
        }
    }

    /// One round: the connection's changes, every tx ring, then packets
    /// for the guest. Returns whether the store has news.
    fn serve(&mut self, dev: &VifDevice, dom: &DomainShared) -> bool {
        let taps = dev.host.tap().queues();
        let link = Link { dom };
        let mut vif = dev.vif.lock().unwrap();
        if vif.generation() != self.generation {
            self.generation = vif.generation();
            self.connected = vif.connected();
            self.waiting.iter_mut().for_each(|w| *w = None);
            let offload = match vif.features() {
                Some(f) if f.ip_csum => Offload {
                    csum: true,
                    tso4: f.gso_tcpv4 && f.sg,
                    tso6: f.gso_tcpv6 && f.sg,
                    ecn: false,
                },
                _ => Offload::NONE,
            };
            if let Err(e) = dev.host.tap().set_offload(offload) {
                tracing::warn!("vif {}: {e}", dev.devid);
            }
            for q in taps {
                set_carrier(q.as_raw_fd(), self.connected);
            }
            tracing::debug!(
                vif = dev.devid,
                connected = self.connected,
                ?offload,
                "link"
            );
        }
        if !self.connected {
            return false;
        }
        let mut failed = None;
        // Guest to host.
        if self.retry_at.is_none() {
            for (i, q) in vif.queues_mut().iter_mut().enumerate() {
                let mut sink = TapSink {
                    q: &taps[i % taps.len()],
                    rate: &mut self.rate,
                    retry_at: &mut self.retry_at,
                };
                match q.engine.service_tx(&link, &mut sink) {
                    Ok(out) => {
                        if out.notify {
                            dom.raise(q.port);
                        }
                        self.again |= out.more;
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        // Host to guest.
        let nq = vif.queues_mut().len();
        if failed.is_none() && nq > 0 {
            'taps: for (t, tap) in taps.iter().enumerate() {
                if self.dead[t] {
                    continue;
                }
                for _ in 0..RX_BATCH {
                    let (hdr, len) = match self.waiting[t].take() {
                        Some(w) => w,
                        None => match tap.recv(&mut self.bufs[t]) {
                            Ok(Some((h, len))) => (to_virtio(&h), len),
                            Ok(None) => break,
                            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                                tracing::debug!("vif {}: TAP read: {e}", dev.devid);
                                continue;
                            }
                            Err(e) => {
                                // The TAP went (deleted by hand?): stop
                                // polling it rather than spin on its error.
                                tracing::warn!(
                                    "vif {}: TAP queue {t} read failed: {e}; no more packets from it",
                                    dev.devid
                                );
                                self.dead[t] = true;
                                break;
                            }
                        },
                    };
                    let frame = &mut self.bufs[t][..len];
                    let qi = if nq == 1 {
                        0
                    } else {
                        flow_hash(frame) as usize % nq
                    };
                    let q = &mut vif.queues_mut()[qi];
                    match q.engine.deliver(&link, &hdr, frame) {
                        Ok(RxOutcome::Delivered) | Ok(RxOutcome::Dropped(_)) => {}
                        Ok(RxOutcome::NoRoom) => {
                            self.waiting[t] = Some((hdr, len));
                            break;
                        }
                        Err(e) => {
                            failed = Some(e.to_string());
                            break 'taps;
                        }
                    }
                }
            }
            for q in vif.queues_mut() {
                if q.engine.publish_rx() {
                    dom.raise(q.port);
                }
            }
        }
        dev.rx_waiting
            .store(self.waiting.iter().any(Option::is_some), Ordering::SeqCst);
        if let Some(why) = failed {
            vif.fail(why, &link);
            *dev.ports.lock().unwrap() = Vec::new();
            return true;
        }
        false
    }
}
