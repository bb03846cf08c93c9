//! Block devices of a domain: opening the images, creating the vbds in the
//! store, and the hypervisor side blkback needs (grant-checked page access,
//! ring mapping, event channel binding) on top of the PV machine.
//!
//! Images are opened (and locked) before the domain is built, so a missing,
//! corrupt or in-use image stops `create` before the guest runs. Requests
//! are served by a [`BlockWorker`] thread, so the guest runs on while the
//! host does its I/O (without a worker, on the notifying vCPU thread).

use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::{Condvar, Mutex};

use backends::blkback::GrantedPages;
use backends::vbd::{FrontendLink, Vbd, VbdConfig};
use backends::RawPage;
use disk::{Disk, DiskError, Format, OpenOptions};
use pv::domain::DomainShared;
use pv::events::Port;
use pv::grant::Access;
use xen_abi::GrantRef;
use xenstore::{DomId, StoreOps, XsError, DOM0};

/// One disk to give the guest (the toolstack's `disk=` entry, validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskAttach {
    /// The image or block device.
    pub path: PathBuf,
    pub format: Format,
    /// As the user wrote it (`xvda`).
    pub vdev: String,
    /// xenbus device number (`virtual-device`).
    pub devid: u32,
    pub read_only: bool,
    pub cdrom: bool,
    /// O_DIRECT (`direct-io-safe`).
    pub direct: bool,
    /// Offer discard (`discard`, the default).
    pub discard: bool,
}

/// Why the disks could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("disk {vdev}: {source}")]
    Open { vdev: String, source: DiskError },
    #[error("disk {vdev}: cannot write its xenstore entries: {source}")]
    Store { vdev: String, source: XsError },
    #[error("disk {vdev}: the domain already has a disk with device number {devid}")]
    InUse { vdev: String, devid: u32 },
    #[error("the domain has no disk {0}")]
    NoSuchDisk(String),
}

/// One disk as `block-list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockInfo {
    pub vdev: String,
    pub devid: u32,
    pub path: String,
    pub format: String,
    pub read_only: bool,
    /// The backend's xenbus state (4: connected).
    pub state: u32,
    /// The event channel while connected.
    pub port: Option<u32>,
}

/// Disks opened before the domain is built.
pub struct OpenDisks(Vec<(DiskAttach, Box<dyn Disk>)>);

/// Opens every image (locked: exclusive read-write, shared read-only).
pub fn open_disks(disks: &[DiskAttach]) -> Result<OpenDisks, BlockError> {
    let mut out = Vec::new();
    for d in disks {
        let opts = OpenOptions {
            read_only: d.read_only || d.cdrom,
            direct: d.direct,
        };
        let disk = disk::open(&d.path, d.format, opts).map_err(|source| BlockError::Open {
            vdev: d.vdev.clone(),
            source,
        })?;
        tracing::info!(
            vdev = d.vdev,
            path = %d.path.display(),
            format = %d.format,
            read_only = opts.read_only,
            bytes = disk.size(),
            "disk opened"
        );
        out.push((d.clone(), disk));
    }
    Ok(OpenDisks(out))
}

/// The domain's vbds, served by the hub.
#[derive(Default)]
pub struct BlockDevices {
    vbds: Vec<Vbd<RawPage>>,
}

impl BlockDevices {
    /// Writes each disk's backend and frontend nodes for domain `domid`.
    pub fn create(
        xs: &mut dyn StoreOps,
        domid: DomId,
        disks: OpenDisks,
    ) -> Result<Self, BlockError> {
        let mut vbds = Vec::new();
        for (d, disk) in disks.0 {
            let cfg = VbdConfig {
                domid,
                devid: d.devid,
                vdev: d.vdev.clone(),
                read_only: d.read_only || d.cdrom,
                cdrom: d.cdrom,
                params: d.path.display().to_string(),
                format: d.format.to_string(),
                discard: d.discard,
            };
            let vbd = Vbd::create(xs, cfg, disk).map_err(|source| BlockError::Store {
                vdev: d.vdev.clone(),
                source,
            })?;
            vbds.push(vbd);
        }
        Ok(BlockDevices { vbds })
    }

    pub fn is_empty(&self) -> bool {
        self.vbds.is_empty()
    }

    /// Hot-plugs a disk (`block-attach`): opens the image and writes the
    /// device's nodes; the guest's xenbus sees them through its watch.
    pub fn attach(
        &mut self,
        xs: &mut dyn StoreOps,
        domid: DomId,
        d: &DiskAttach,
    ) -> Result<(), BlockError> {
        if self.vbds.iter().any(|v| v.config().devid == d.devid) {
            return Err(BlockError::InUse {
                vdev: d.vdev.clone(),
                devid: d.devid,
            });
        }
        let opened = open_disks(std::slice::from_ref(d))?;
        let new = BlockDevices::create(xs, domid, opened)?;
        self.vbds.extend(new.vbds);
        Ok(())
    }

    /// Starts hot-unplugging the disk named `vdev` (or numbered so) (`block-detach`); it goes
    /// away once the guest has closed it (see [`BlockDevices::poll_store`]).
    pub fn detach(
        &mut self,
        dom: &DomainShared,
        xs: &mut dyn StoreOps,
        vdev: &str,
    ) -> Result<(), BlockError> {
        let v = self
            .vbds
            .iter_mut()
            .find(|v| v.config().vdev == vdev || v.config().devid.to_string() == vdev)
            .ok_or_else(|| BlockError::NoSuchDisk(vdev.to_string()))?;
        v.request_remove(xs);
        self.reap(dom, xs);
        Ok(())
    }

    /// Whether a device has news for the store (see [`Vbd::wants_store`]).
    pub fn wants_store(&self) -> bool {
        self.vbds.iter().any(|v| v.wants_store())
    }

    /// The disks (`block-list`).
    pub fn list(&self) -> Vec<BlockInfo> {
        self.vbds
            .iter()
            .map(|v| {
                let c = v.config();
                BlockInfo {
                    vdev: c.vdev.clone(),
                    devid: c.devid,
                    path: c.params.clone(),
                    format: c.format.clone(),
                    read_only: c.read_only,
                    state: v.state() as u32,
                    port: v.port(),
                }
            })
            .collect()
    }

    /// Removes the devices whose unplug has completed.
    fn reap(&mut self, dom: &DomainShared, xs: &mut dyn StoreOps) -> bool {
        let link = Link { dom };
        let mut reaped = false;
        let mut i = 0;
        while i < self.vbds.len() {
            if self.vbds[i].removed() {
                self.vbds.swap_remove(i).remove(xs, &link);
                reaped = true;
            } else {
                i += 1;
            }
        }
        reaped
    }

    /// Reacts to frontend state changes (after the guest used xenstore).
    /// Returns whether the store changed, so the guest's xenstore
    /// connection should be polled again to deliver the watch events.
    pub fn poll_store(&mut self, dom: &DomainShared, xs: &mut dyn StoreOps) -> bool {
        let link = Link { dom };
        let mut changed = false;
        for v in &mut self.vbds {
            changed |= v.poll_store(xs, &link);
        }
        changed | self.reap(dom, xs)
    }

    /// The guest notified `port`: if it is a vbd's, serve that ring and
    /// return `Some(whether to notify back)`.
    pub fn notified(&mut self, dom: &DomainShared, port: u32) -> Option<bool> {
        let link = Link { dom };
        let v = self.vbds.iter_mut().find(|v| v.port() == Some(port))?;
        Some(v.notified(&link, &link))
    }

    /// Makes every disk's writes durable (domain stopping).
    pub fn flush_all(&mut self) {
        for v in &mut self.vbds {
            v.flush();
        }
    }
}

/// blkback's (and netback's) view of the PV machine.
pub(crate) struct Link<'a> {
    pub(crate) dom: &'a DomainShared,
}

impl GrantedPages for Link<'_> {
    fn read_granted(&self, gref: GrantRef, offset: usize, buf: &mut [u8]) -> Result<(), String> {
        self.dom
            .grants
            .copy_from(&self.dom.machine.ram, DOM0, gref, offset, buf)
            .map_err(|e| e.to_string())
    }

    fn write_granted(&self, gref: GrantRef, offset: usize, data: &[u8]) -> Result<(), String> {
        self.dom
            .grants
            .copy_to(&self.dom.machine.ram, DOM0, gref, offset, data)
            .map_err(|e| e.to_string())
    }
}

impl FrontendLink for Link<'_> {
    type Page = RawPage;

    fn map_ring(&self, gref: GrantRef) -> Result<RawPage, String> {
        let ram = &self.dom.machine.ram;
        let gpa = self
            .dom
            .grants
            .map(ram, DOM0, gref, Access::Write)
            .map_err(|e| e.to_string())?
            .keep();
        let ptr = NonNull::new((ram.host_base() + gpa) as *mut u8).ok_or("null page")?;
        // SAFETY: `gpa` is a page of guest RAM (the grant table checked the
        // frame), which stays mapped as long as the domain lives; the page is
        // used only by the hub, which the domain owns. The guest changes it
        // concurrently; RawPage makes only atomic and volatile accesses.
        Ok(unsafe { RawPage::new(ptr) })
    }

    fn unmap_ring(&self, gref: GrantRef) {
        self.dom
            .grants
            .release(&self.dom.machine.ram, gref, Access::Write);
    }

    fn bind_event(&self, port: u32) -> Result<(), String> {
        let mut ev = self.dom.events.lock().unwrap();
        match ev.get(port) {
            Some(Port::Unbound { remote }) if remote == DOM0 => {
                ev.set(port, Port::Backend);
                Ok(())
            }
            other => Err(format!(
                "port {port} is not an unbound port for domain 0 ({other:?})"
            )),
        }
    }

    fn unbind_event(&self, port: u32) {
        let mut ev = self.dom.events.lock().unwrap();
        if ev.get(port) == Some(Port::Backend) {
            ev.set(port, Port::Unbound { remote: DOM0 });
        }
    }
}

/// The thread that serves block rings: the vCPU only records which ports
/// the guest notified and wakes it.
#[derive(Default)]
pub struct BlockWorker {
    state: Mutex<WorkerState>,
    cv: Condvar,
}

#[derive(Default)]
struct WorkerState {
    running: bool,
    stop: bool,
    pending: Vec<u32>,
}

impl BlockWorker {
    /// Queues `port` for the worker; false if no worker runs (serve it
    /// on the caller's thread then).
    pub fn kick(&self, port: u32) -> bool {
        let mut st = self.state.lock().unwrap();
        if !st.running {
            return false;
        }
        if !st.pending.contains(&port) {
            st.pending.push(port);
        }
        self.cv.notify_one();
        true
    }

    /// Serves notified ports of `devices` until [`BlockWorker::stop`].
    /// `store_news` runs (with no lock held) when a device has something
    /// to tell the store, e.g. that it dropped a corrupt ring.
    pub fn run(&self, devices: &Mutex<BlockDevices>, dom: &DomainShared, store_news: &dyn Fn()) {
        self.state.lock().unwrap().running = true;
        loop {
            let ports = {
                let mut st = self.state.lock().unwrap();
                while st.pending.is_empty() && !st.stop {
                    st = self.cv.wait(st).unwrap();
                }
                if st.stop {
                    st.running = false;
                    break;
                }
                std::mem::take(&mut st.pending)
            };
            for port in ports {
                let served = devices.lock().unwrap().notified(dom, port);
                match served {
                    Some(true) => dom.raise(port),
                    Some(false) => {}
                    None => tracing::debug!(port, "notification on a port with no backend"),
                }
            }
            if devices.lock().unwrap().wants_store() {
                store_news();
            }
        }
        // Requests that came in while stopping are served by the caller's
        // thread from now on (kick returns false).
    }

    /// Ends [`BlockWorker::run`].
    pub fn stop(&self) {
        self.state.lock().unwrap().stop = true;
        self.cv.notify_all();
    }
}
