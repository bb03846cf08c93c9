//! The monitor of one domain: builds it with the PV machine, wires its
//! device backends (console, xenstore ring) and runs it.
//!
//! [`monitor::run_detached`] is a domain's monitor, serving a control
//! socket and a console socket and applying the `on_*` actions: in a
//! process of its own (`rxen create`) or in the calling one, its console
//! optionally on the terminal too (`rxen create -F [-c]`).
//!
//! - [`hub`]: the [`pv::domain::DeviceHub`] (console ring, xenstore ring,
//!   `console_io` output).
//! - [`blk`]: the domain's disks (images, vbds, blkback's hypervisor side).
//! - [`store_layout`]: the xenstore tree written before boot.
//! - [`xenstored`]: the host's shared xenstored (socket, start on demand,
//!   the daemon); [`xs_relay`]: the guest's xenstore ring relayed to it.
//! - [`terminal`]: raw mode, the stdin reader, the `^]` escape, signals.
//! - [`state`]: where a domain's files live.
//! - [`monitor`]: the detached monitor's lifecycle; [`control`]: its
//!   request protocol; [`console_server`]: console viewers.

pub mod blk;
pub mod console_server;
pub mod control;
pub mod hub;
pub mod monitor;
pub mod net;
pub mod state;
pub mod store_layout;
pub mod terminal;
pub mod xenstored;
pub mod xs_relay;

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pv::domain::ShutdownReason;
use pv::launch::{BootSpec, LaunchError};
use xenstore::{DomId, MsgType, StoreOps, XsClient, XsError, NO_TX};

pub use hub::{ConsoleOutput, HubState};
pub use terminal::Destroyed;

/// What to boot: the parts of a domain config the monitor uses, already
/// validated (the toolstack's `DomainConfig` maps onto it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    pub name: String,
    /// `None`: a random one is made.
    pub uuid: Option<[u8; 16]>,
    pub memory_mib: u64,
    /// At least `memory_mib`.
    pub maxmem_mib: u64,
    /// vCPUs asked for; the PV machine runs one for now.
    pub vcpus: u32,
    pub kernel: PathBuf,
    pub ramdisk: Option<PathBuf>,
    pub cmdline: String,
    /// Disks (`disk=[...]`).
    pub disks: Vec<blk::DiskAttach>,
    /// Network interfaces (`vif=[...]`).
    pub nics: Vec<net::NicAttach>,
    /// The domain's state directory, where what must outlive a monitor
    /// killed with `kill -9` is kept (vif scripts' `offline` calls, see
    /// [`net::plug_nics`]); `None`: nothing is kept.
    pub state: Option<PathBuf>,
}

/// How a domain ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The guest's shutdown reason, or `Destroyed`.
    pub reason: ShutdownReason,
    /// Set when the user ended it (`^]`, a signal) rather than the guest.
    pub destroyed: Option<Destroyed>,
    /// From the first guest instruction to the end.
    pub elapsed: Duration,
    pub stats: pv::vcpu::Stats,
}

/// Why a domain could not be started.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Kernel(#[from] pv_image::ImageError),
    #[error("cannot read ramdisk {}: {source}", path.display())]
    Ramdisk {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot build domain '{name}' from kernel {}: {source}", kernel.display())]
    Launch {
        name: String,
        kernel: PathBuf,
        source: LaunchError,
    },
    #[error("cannot open console log {}: {source}", path.display())]
    ConsoleLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the domain's xenstore entries: {0}")]
    Xenstore(XsError),
    #[error(transparent)]
    Xenstored(#[from] xenstored::XenstoredError),
    #[error("cannot connect to xenstored at {}: {source}", path.display())]
    StoreConnect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("domain id {0} is already in use in xenstore (another domain runs with it)")]
    DomidInUse(DomId),
    #[error(transparent)]
    Attach(#[from] hub::AttachError),
    #[error(transparent)]
    Block(#[from] blk::BlockError),
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error("cannot put the terminal in raw mode: {0}")]
    Terminal(std::io::Error),
    #[error("cannot listen on {}: {source}", path.display())]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start a monitor thread: {0}")]
    Thread(std::io::Error),
}

/// Connects to the host's xenstored (started if need be): a dom0
/// connection, and one that speaks for the guest as domain `domid`.
fn connect_store(domid: DomId) -> Result<hub::StoreLink, MonitorError> {
    let socket = xenstored::ensure_running(&state::state_dir())?;
    let connect = || {
        XsClient::connect(&socket).map_err(|source| MonitorError::StoreConnect {
            path: socket.clone(),
            source,
        })
    };
    let client = connect()?;
    let mut guest = connect()?;
    let arg = format!("{}\0{domid}\0", xenstore::server::CONTROL_GUEST);
    match guest.request(MsgType::Control, NO_TX, arg.as_bytes()) {
        Ok(_) => {}
        Err(XsError::Exist) => return Err(MonitorError::DomidInUse(domid)),
        Err(e) => return Err(MonitorError::Xenstore(e)),
    }
    let guest = guest
        .into_stream()
        .map_err(|source| MonitorError::StoreConnect {
            path: socket.clone(),
            source,
        })?;
    Ok(hub::StoreLink { client, guest })
}

/// Loads the kernel and ramdisk, opens the disks, builds the domain with
/// its devices and writes its xenstore tree; the domain is ready to run
/// (the caller runs [`HubState::run_block`] beside it). Console bytes go to
/// `output`.
pub fn build(
    spec: &DomainSpec,
    domid: DomId,
    output: ConsoleOutput,
) -> Result<(pv::launch::Prepared, Arc<HubState>), MonitorError> {
    let kernel =
        pv_image::load_kernel_cached(&spec.kernel, &pv_image::KernelCache::in_user_cache())?;
    let initrd = match &spec.ramdisk {
        Some(path) => Some(std::fs::read(path).map_err(|source| MonitorError::Ramdisk {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    // Disk images are opened (and locked) and TAPs plugged into their
    // bridges before anything is built.
    let disks = blk::open_disks(&spec.disks)?;
    let nics = net::plug_nics(domid, &spec.nics, spec.state.clone())?;
    let hub = HubState::new(output);
    let prepared = pv::launch::prepare(
        &BootSpec {
            kernel: &kernel,
            initrd: initrd.as_deref(),
            cmdline: &spec.cmdline,
            memory_mib: spec.memory_mib,
        },
        hub.hub(),
    )
    .map_err(|source| MonitorError::Launch {
        name: spec.name.clone(),
        kernel: spec.kernel.clone(),
        source,
    })?;
    drop(kernel);
    drop(initrd);

    let boot = &prepared.boot;
    let mut link = connect_store(domid)?;
    let xs = &mut link.client;
    let uuid = spec.uuid.unwrap_or_else(store_layout::generate_uuid);
    store_layout::write_domain(
        xs,
        &store_layout::DomainEntry {
            domid,
            name: spec.name.clone(),
            uuid: store_layout::format_uuid(&uuid),
            memory_mib: spec.memory_mib,
            maxmem_mib: spec.maxmem_mib.max(spec.memory_mib),
            vcpus: 1,
            console_pfn: boot.console_pfn,
            console_evtchn: boot.console_evtchn,
            xenstore_pfn: boot.xenstore_pfn,
            xenstore_evtchn: boot.xenstore_evtchn,
        },
    )
    .map_err(MonitorError::Xenstore)?;
    prepared.dom.grants.set_own_domid(domid);
    hub.attach_block(blk::BlockDevices::create(xs, domid, disks)?);
    hub.attach_net(net::NetDevices::create(xs, domid, nics)?);
    hub.attach(&prepared.dom, boot, link, domid)?;

    Ok((prepared, hub))
}

fn open_log(path: &std::path::Path) -> Result<File, MonitorError> {
    let err = |source| MonitorError::ConsoleLog {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    File::create(path).map_err(err)
}
