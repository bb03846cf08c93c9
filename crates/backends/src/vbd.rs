//! A virtual block device on xenbus: the xenstore nodes of the backend and
//! frontend directories, and the backend's half of the xenbus handshake
//! with xen-blkfront.
//!
//! Handshake (`xen/io/blkif.h`, Linux's `xen-blkfront.c`):
//! 1. We write both directories, the backend's features and `state` =
//!    InitWait (the toolstack's and blkback's probe steps at once).
//! 2. The frontend writes `ring-ref`, `event-channel`, `protocol`, and
//!    `state` = Initialised.
//! 3. We map the ring, bind the event channel, write `sectors`, `info`,
//!    `sector-size` and `state` = Connected.
//! 4. Frontend `Closing`/`Closed`: we disconnect and follow it; a frontend
//!    back at `Initialising` (module reload, kexec) gets InitWait again.
//!
//! The frontend's state arrives through a xenstore watch (token
//! `vbd-<domid>-<devid>`) on the caller's dom0 connection ([`StoreOps`]: the
//! host's shared store, or an in-process one in tests). Everything the frontend writes is untrusted: a
//! missing or bad node gets a message in the backend's `error` node and the
//! device stays disconnected.

use disk::Disk;
use xen_abi::io::xenbus::XenbusState;
use xen_abi::GrantRef;
use xenstore::ring::SharedPage;
use xenstore::{DomId, StoreOps, XsResult};

use crate::blkback::{Blkback, GrantedPages, MAX_INDIRECT_SEGMENTS};
use crate::xenbus::{self, DevicePaths};

/// What the toolstack says about one disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VbdConfig {
    /// The guest.
    pub domid: DomId,
    /// xenbus device id (the `virtual-device` number, 51712 for xvda).
    pub devid: u32,
    /// The name the user gave (`xvda`), for `dev`.
    pub vdev: String,
    /// Read-only access (`access=ro`).
    pub read_only: bool,
    /// A CD-ROM (`devtype=cdrom`): read-only, `device-type` cdrom.
    pub cdrom: bool,
    /// The image, for the `params` node.
    pub params: String,
    /// The image format, for the `format` node.
    pub format: String,
    /// Offer discard to the guest (`discard`, the default; `no-discard`).
    pub discard: bool,
}

/// The hypervisor side the backend needs: ring mapping and event channels.
pub trait FrontendLink {
    /// A mapped ring page.
    type Page: SharedPage;
    /// Maps (and pins) the ring page the frontend granted under `gref`.
    fn map_ring(&self, gref: GrantRef) -> Result<Self::Page, String>;
    /// Ends the mapping of a ring page.
    fn unmap_ring(&self, gref: GrantRef);
    /// Binds the frontend's unbound port (allocated for dom0) to us.
    fn bind_event(&self, port: u32) -> Result<(), String>;
    /// Closes our end of the port.
    fn unbind_event(&self, port: u32);
}

/// Native protocol name (`XEN_IO_PROTO_ABI_X86_64`).
const PROTOCOL_NATIVE: &str = "x86_64-abi";

struct Connection<P> {
    engine: Blkback<P>,
    gref: GrantRef,
    port: u32,
}

/// One vbd: its xenstore paths, the disk, and the connection when there is one.
pub struct Vbd<P> {
    cfg: VbdConfig,
    backend: String,
    frontend: String,
    state: XenbusState,
    /// Token of our watch on the frontend's `state`.
    token: String,
    disk: Option<Box<dyn Disk>>,
    conn: Option<Connection<P>>,
    broken: bool,
    /// Hot-unplug asked for: close, then go away.
    removing: bool,
    /// The frontend has let go: the caller may [`Vbd::remove`] it.
    removed: bool,
    /// Why the ring was dropped, to be told in the store (Closing + error).
    failed: Option<String>,
}

impl<P: SharedPage> Vbd<P> {
    /// Writes the device's nodes into the store and starts watching the
    /// frontend. The disk stays open (and locked) as long as the vbd lives.
    pub fn create(xs: &mut dyn StoreOps, cfg: VbdConfig, disk: Box<dyn Disk>) -> XsResult<Vbd<P>> {
        let (dom, dev) = (cfg.domid, cfg.devid);
        let paths = DevicePaths::new("vbd", dom, dev);
        let read_only = cfg.read_only || cfg.cdrom || disk.read_only();
        let device_type = if cfg.cdrom { "cdrom" } else { "disk" };
        let frontend_nodes: Vec<(&str, String)> = vec![
            ("backend", paths.backend.clone()),
            ("backend-id", "0".into()),
            ("virtual-device", dev.to_string()),
            ("device-type", device_type.into()),
            ("state", XenbusState::Initialising.to_string()),
        ];
        let mode = if read_only { "r" } else { "w" };
        let mut backend_nodes: Vec<(&str, String)> = vec![
            ("frontend", paths.frontend.clone()),
            ("frontend-id", dom.to_string()),
            ("params", cfg.params.clone()),
            ("type", "rxen".into()),
            ("format", cfg.format.clone()),
            ("mode", mode.into()),
            ("online", "1".into()),
            ("removable", "0".into()),
            ("bootable", "1".into()),
            ("dev", cfg.vdev.clone()),
            ("device-type", device_type.into()),
            ("feature-flush-cache", "1".into()),
            ("feature-barrier", "1".into()),
            (
                "feature-max-indirect-segments",
                MAX_INDIRECT_SEGMENTS.to_string(),
            ),
            ("feature-persistent", "0".into()),
        ];
        if !read_only && cfg.discard {
            for (k, v) in [
                ("feature-discard", "1"),
                ("discard-granularity", "4096"),
                ("discard-alignment", "0"),
                ("discard-secure", "0"),
            ] {
                backend_nodes.push((k, v.into()));
            }
        }
        backend_nodes.push(("state", XenbusState::InitWait.to_string()));
        xenbus::publish(xs, "vbd", dom, &paths, &frontend_nodes, &backend_nodes)?;
        let DevicePaths { backend, frontend } = paths;

        let token = format!("vbd-{dom}-{dev}");
        xs.watch(&format!("{frontend}/state"), &token)?;
        Ok(Vbd {
            cfg,
            backend,
            frontend,
            state: XenbusState::InitWait,
            token,
            disk: Some(disk),
            conn: None,
            broken: false,
            removing: false,
            removed: false,
            failed: None,
        })
    }

    /// The backend directory.
    pub fn backend_path(&self) -> &str {
        &self.backend
    }

    /// The frontend directory.
    pub fn frontend_path(&self) -> &str {
        &self.frontend
    }

    /// The backend's xenbus state.
    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// The bound event channel while connected.
    pub fn port(&self) -> Option<u32> {
        self.conn.as_ref().map(|c| c.port)
    }

    /// The engine's counters while connected.
    pub fn stats(&self) -> Option<crate::blkback::BlkStats> {
        self.conn.as_ref().map(|c| c.engine.stats())
    }

    /// Handles the frontend's state changes reported by our watch. Returns
    /// whether anything happened (the caller then flushes xenstore output
    /// to the guest).
    pub fn poll_store(
        &mut self,
        xs: &mut dyn StoreOps,
        link: &impl FrontendLink<Page = P>,
    ) -> bool {
        if let Some(why) = self.failed.take() {
            // The frontend learns that the device is gone, and why.
            let _ = xs.write(&format!("{}/error", self.backend), why.as_bytes());
            self.switch(xs, XenbusState::Closing);
            return true;
        }
        if xs.take_watch_events(&self.token).is_empty() {
            return false;
        }
        let fe_state = self.frontend_state(xs);
        tracing::debug!(vbd = %self.backend, ?fe_state, be_state = ?self.state, "frontend state");
        match fe_state {
            _ if self.removed => {}
            XenbusState::Initialising | XenbusState::Closed | XenbusState::Unknown
                if self.removing =>
            {
                self.disconnect(link);
                self.switch(xs, XenbusState::Closed);
                self.removed = true;
            }
            XenbusState::Initialising => {
                if self.state == XenbusState::Closed {
                    self.broken = false;
                    self.switch(xs, XenbusState::InitWait);
                }
            }
            XenbusState::Initialised | XenbusState::Connected => {
                if self.conn.is_none()
                    && !self.broken
                    && !self.removing
                    && self.state == XenbusState::InitWait
                {
                    match self.connect(xs, link) {
                        Ok(()) => self.switch(xs, XenbusState::Connected),
                        Err(e) => {
                            tracing::warn!("{}: cannot connect: {e}", self.backend);
                            let _ = xs.write(&format!("{}/error", self.backend), e.as_bytes());
                            self.broken = true;
                            self.switch(xs, XenbusState::Closing);
                        }
                    }
                }
            }
            XenbusState::Closing => {
                self.disconnect(link);
                self.switch(xs, XenbusState::Closing);
            }
            XenbusState::Closed | XenbusState::Unknown => {
                self.disconnect(link);
                if self.state != XenbusState::InitWait {
                    self.switch(xs, XenbusState::Closed);
                }
            }
            XenbusState::InitWait | XenbusState::Reconfiguring | XenbusState::Reconfigured => {}
        }
        true
    }

    /// Starts a hot-unplug (`xl block-detach`): the backend goes offline
    /// and to Closing; once the frontend has closed (or if it never
    /// connected), [`Vbd::removed`] turns true.
    pub fn request_remove(&mut self, xs: &mut dyn StoreOps) {
        if self.removing {
            return;
        }
        self.removing = true;
        let _ = xs.write(&format!("{}/online", self.backend), b"0");
        let fe_state = self.frontend_state(xs);
        if self.conn.is_none()
            && matches!(
                fe_state,
                XenbusState::Initialising | XenbusState::Closed | XenbusState::Unknown
            )
        {
            self.switch(xs, XenbusState::Closed);
            self.removed = true;
        } else {
            // Requests keep being served until the frontend closes: a
            // guest still using the disk (mounted) refuses to close, and
            // its I/O must not hang meanwhile.
            self.switch(xs, XenbusState::Closing);
        }
    }

    /// Whether the device has news for the store that no frontend change
    /// will prompt (a corrupt ring was dropped): call [`Vbd::poll_store`].
    pub fn wants_store(&self) -> bool {
        self.failed.is_some()
    }

    /// Whether a hot-unplug has completed.
    pub fn removed(&self) -> bool {
        self.removed
    }

    /// Ends the device: removes both directories from the store, stops
    /// watching, and flushes and closes the image (releasing its lock).
    pub fn remove(mut self, xs: &mut dyn StoreOps, link: &impl FrontendLink<Page = P>) {
        self.disconnect(link);
        for p in [&self.frontend, &self.backend] {
            if let Err(e) = xs.rm(p) {
                tracing::warn!("{p}: cannot remove: {e}");
            }
        }
        if let Err(e) = xs.unwatch(&format!("{}/state", self.frontend), &self.token) {
            tracing::warn!("{}: cannot unwatch: {e}", self.backend);
        }
        if let Some(mut d) = self.disk.take() {
            if let Err(e) = d.flush() {
                tracing::warn!("{}: flush on removal failed: {e}", self.backend);
            }
        }
        tracing::info!("{}: removed", self.backend);
    }

    /// The config the device was made from.
    pub fn config(&self) -> &VbdConfig {
        &self.cfg
    }

    fn frontend_state(&self, xs: &mut dyn StoreOps) -> XenbusState {
        xs.read(&format!("{}/state", self.frontend))
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse::<XenbusState>().ok())
            .unwrap_or(XenbusState::Unknown)
    }

    fn switch(&mut self, xs: &mut dyn StoreOps, s: XenbusState) {
        if self.state == s {
            return;
        }
        self.state = s;
        if let Err(e) = xs.write(&format!("{}/state", self.backend), s.to_string().as_bytes()) {
            tracing::warn!("{}: cannot write state: {e}", self.backend);
        }
    }

    fn read_u32(&self, xs: &mut dyn StoreOps, key: &str) -> Result<Option<u32>, String> {
        match xs.read(&format!("{}/{key}", self.frontend)) {
            Err(_) => Ok(None),
            Ok(v) => {
                let s = String::from_utf8_lossy(&v);
                s.trim()
                    .parse::<u32>()
                    .map(Some)
                    .map_err(|_| format!("frontend {key} {s:?} is not a number"))
            }
        }
    }

    fn connect(
        &mut self,
        xs: &mut dyn StoreOps,
        link: &impl FrontendLink<Page = P>,
    ) -> Result<(), String> {
        // One ring page, one queue: we offer neither max-ring-page-order nor
        // multi-queue-max-queues, so a conforming frontend uses neither.
        if self.read_u32(xs, "ring-page-order")?.unwrap_or(0) != 0 {
            return Err("multi-page rings are not supported".into());
        }
        if self.read_u32(xs, "multi-queue-num-queues")?.unwrap_or(1) != 1 {
            return Err("multi-queue is not supported".into());
        }
        let gref = self
            .read_u32(xs, "ring-ref")?
            .ok_or("frontend wrote no ring-ref")?;
        let port = self
            .read_u32(xs, "event-channel")?
            .ok_or("frontend wrote no event-channel")?;
        if let Ok(p) = xs.read(&format!("{}/protocol", self.frontend)) {
            let p = String::from_utf8_lossy(&p);
            let p = p.trim_end_matches('\0');
            if p != PROTOCOL_NATIVE {
                return Err(format!("unsupported ring protocol {p:?}"));
            }
        }
        let disk = self.disk.take().ok_or("no disk")?;
        let page = match link.map_ring(gref) {
            Ok(p) => p,
            Err(e) => {
                self.disk = Some(disk);
                return Err(format!("ring-ref {gref}: {e}"));
            }
        };
        if let Err(e) = link.bind_event(port) {
            link.unmap_ring(gref);
            self.disk = Some(disk);
            return Err(format!("event-channel {port}: {e}"));
        }
        let sectors = disk.size() / 512;
        let read_only = self.cfg.read_only || self.cfg.cdrom || disk.read_only();
        let mut info = 0;
        if read_only {
            info |= xen_abi::io::blkif::VDISK_READONLY;
        }
        if self.cfg.cdrom {
            info |= xen_abi::io::blkif::VDISK_CDROM | xen_abi::io::blkif::VDISK_REMOVABLE;
        }
        let be = |k: &str| format!("{}/{k}", self.backend);
        for (k, v) in [
            ("sectors", sectors.to_string()),
            ("info", info.to_string()),
            ("sector-size", "512".to_string()),
            ("physical-sector-size", "512".to_string()),
        ] {
            xs.write(&be(k), v.as_bytes())
                .map_err(|e| format!("writing {k}: {e}"))?;
        }
        let name = format!(
            "vbd {}/{} ({})",
            self.cfg.domid, self.cfg.vdev, self.cfg.params
        );
        tracing::info!(
            "{name}: connected, ring-ref {gref}, event-channel {port}, {sectors} sectors"
        );
        self.conn = Some(Connection {
            engine: Blkback::new(page, disk, read_only, name),
            gref,
            port,
        });
        Ok(())
    }

    fn disconnect(&mut self, link: &impl FrontendLink<Page = P>) {
        if let Some(c) = self.conn.take() {
            link.unbind_event(c.port);
            link.unmap_ring(c.gref);
            let stats = c.engine.stats();
            self.disk = Some(c.engine.into_disk());
            tracing::info!("{}: disconnected; {stats:?}", self.backend);
        }
    }

    /// The frontend notified our event channel: serve the ring. Returns
    /// whether to notify it back. A corrupt ring disconnects the device.
    pub fn notified(
        &mut self,
        grants: &dyn GrantedPages,
        link: &impl FrontendLink<Page = P>,
    ) -> bool {
        let Some(c) = self.conn.as_mut() else {
            return false;
        };
        match c.engine.service(grants) {
            Ok(notify) => notify,
            Err(e) => {
                tracing::warn!("{}: {e}; device disconnected", self.backend);
                self.broken = true;
                self.failed = Some(e.to_string());
                self.disconnect(link);
                false
            }
        }
    }

    /// Flushes the disk (domain shutdown); the device stays as it is.
    pub fn flush(&mut self) {
        if let Some(st) = self.stats() {
            tracing::info!("{}: {st:?}", self.backend);
        }
        let r = match (&mut self.conn, &mut self.disk) {
            (Some(c), _) => c.engine.flush_disk(),
            (None, Some(d)) => d.flush().map_err(|e| e.to_string()),
            (None, None) => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!("{}: flush failed: {e}", self.backend);
        }
    }
}
