//! The monitor of one domain: builds it with the PV machine, wires its
//! device backends (console, xenstore ring) and runs it.
//!
//! Two modes: [`run_foreground`] runs the domain in the calling process
//! until it stops, with its console optionally attached to the terminal
//! (`rxen create -F [-c]`); [`monitor::run_detached`] is the monitor of a
//! detached domain (`rxen create`), serving a control socket and a console
//! socket and applying the `on_*` actions.
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
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
}

/// How to run in the foreground.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreground {
    /// Console on this process's terminal: its output on stdout, stdin fed
    /// to it (in raw mode when stdin is a terminal; `^]` destroys the
    /// domain). Without it the console goes only to `console_log`.
    pub attach_console: bool,
    /// Where to keep everything the guest prints (truncated first).
    pub console_log: Option<PathBuf>,
    /// The domain's id (in xenstore paths).
    pub domid: DomId,
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

/// Builds the domain and runs it on the calling thread until it stops.
/// Errors are reported before the guest runs its first instruction.
pub fn run_foreground(spec: &DomainSpec, opts: &Foreground) -> Result<Ended, MonitorError> {
    let log = match &opts.console_log {
        Some(path) => Some(open_log(path)?),
        None => None,
    };
    let terminal: Option<Box<dyn std::io::Write + Send>> = opts
        .attach_console
        .then(|| Box::new(std::io::stdout()) as Box<dyn std::io::Write + Send>);

    // Block the signals before any domain thread exists, so every thread
    // inherits the mask and only the watcher receives them.
    let signals = terminal::BlockedSignals::block();
    let (prepared, hub) = build_with(spec, opts.domid, ConsoleOutput::new(terminal, log), true)?;

    let control = Arc::new(terminal::Control::default());
    let raw = if opts.attach_console {
        terminal::RawMode::enter(libc::STDIN_FILENO).map_err(MonitorError::Terminal)?
    } else {
        None
    };
    let mut threads = Vec::new();
    if opts.attach_console {
        let (h, d, c) = (hub.clone(), prepared.dom.clone(), control.clone());
        threads.push(
            std::thread::Builder::new()
                .name("rxen-console-in".into())
                .spawn(move || terminal::feed_console(libc::STDIN_FILENO, h, d, c))
                .expect("spawn console input thread"),
        );
    }
    {
        let (h, d) = (hub.clone(), prepared.dom.clone());
        threads.push(
            std::thread::Builder::new()
                .name("rxen-blk".into())
                .spawn(move || h.run_block(&d))
                .expect("spawn block thread"),
        );
    }
    {
        let (d, c) = (prepared.dom.clone(), control.clone());
        threads.push(
            std::thread::Builder::new()
                .name("rxen-signals".into())
                .spawn(move || terminal::watch_signals(d, c))
                .expect("spawn signal thread"),
        );
    }

    tracing::info!(
        name = spec.name,
        domid = opts.domid,
        memory_mib = spec.memory_mib,
        kernel = %spec.kernel.display(),
        cmdline = spec.cmdline,
        "domain starting"
    );
    hub.start_net(&prepared.dom)?;
    let started = Instant::now();
    let (reason, stats) = prepared.run();
    let elapsed = started.elapsed();
    hub.stop_block();
    hub.stop_net();
    hub.release_xenstore();

    control.stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    drop(raw);
    drop(signals);
    let destroyed = control.destroyed.lock().unwrap().clone();
    tracing::info!(
        reason = reason.name(),
        detail = ?reason,
        destroyed = destroyed.as_ref().map(|d| d.to_string()),
        ?elapsed,
        ?stats,
        "domain ended"
    );
    Ok(Ended {
        reason,
        destroyed,
        elapsed,
        stats,
    })
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
    build_with(spec, domid, output, false)
}

/// Connects to the host's xenstored (started if need be): a dom0
/// connection, and one that speaks for the guest. With `search`, the first
/// id from `domid` up that no other domain uses is taken (foreground
/// domains, which the registry does not number).
fn connect_store(domid: DomId, search: bool) -> Result<(hub::StoreLink, DomId), MonitorError> {
    let socket = xenstored::ensure_running(&state::state_dir())?;
    let connect = || {
        XsClient::connect(&socket).map_err(|source| MonitorError::StoreConnect {
            path: socket.clone(),
            source,
        })
    };
    let client = connect()?;
    let mut guest = connect()?;
    let mut id = domid;
    loop {
        let arg = format!("{}\0{id}\0", xenstore::server::CONTROL_GUEST);
        match guest.request(MsgType::Control, NO_TX, arg.as_bytes()) {
            Ok(_) => break,
            Err(XsError::Exist) if search && id < MAX_FOREGROUND_DOMID => id += 1,
            Err(XsError::Exist) => return Err(MonitorError::DomidInUse(id)),
            Err(e) => return Err(MonitorError::Xenstore(e)),
        }
    }
    let guest = guest
        .into_stream()
        .map_err(|source| MonitorError::StoreConnect {
            path: socket.clone(),
            source,
        })?;
    Ok((hub::StoreLink { client, guest }, id))
}

/// Highest id a foreground domain may take (Xen's last ordinary id).
const MAX_FOREGROUND_DOMID: DomId = 0x7fef;

fn build_with(
    spec: &DomainSpec,
    domid: DomId,
    output: ConsoleOutput,
    search: bool,
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
    let nics = net::plug_nics(domid, &spec.nics)?;
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
    let (mut link, domid) = connect_store(domid, search)?;
    let xs = &mut link.client;
    if search {
        tracing::info!(domid, "foreground domain id");
    }
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
