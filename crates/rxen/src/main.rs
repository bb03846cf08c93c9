//! `rxen`: manage Xen PV domains on Linux KVM, the way `xl` does on Xen.

#[macro_use]
mod exit;
mod block;
mod commands;
mod console;
mod detached;
mod image;
mod network;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use domain::state::state_dir;
use exit::Status;
#[cfg(test)]
use exit::EXIT_STATUS_HELP;
use toolstack::client::{Request, ShutdownKind};
use toolstack::registry::Registry;

#[derive(Parser)]
#[command(
    name = "rxen",
    version,
    about = "Run Xen PV guests (unmodified distribution kernels) on Linux KVM, managed like xl",
    after_help = "Examples:\n  rxen demo                     boot Debian's kernel with a busybox shell\n  \
                  rxen create guest.cfg         start a domain from an xl.cfg file (detached)\n  \
                  rxen list                     the running domains\n  \
                  rxen console guest            its console (^] detaches)\n  \
                  rxen create -F -c guest.cfg   run a domain in the foreground, console attached\n  \
                  rxen image clone base.qcow2 try.qcow2   a thin copy-on-write clone of a disk\n\n\
                  Domains live in the state directory: $RXEN_STATE_DIR, else /run/rxen for root,\n\
                  else $XDG_RUNTIME_DIR/rxen."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a domain from an xl.cfg(5) config file.
    #[command(
        after_help = CREATE_HELP,
        override_usage = "rxen create [-F] [-c] [-p] [-q] [-f] CFG [KEY=VALUE...]"
    )]
    Create(CreateArgs),
    /// List domains: Name ID Mem VCPUs State Time(s), as xl prints them.
    #[command(after_help = LIST_HELP)]
    List {
        /// Print each domain's full configuration and status as JSON.
        #[arg(short = 'l', long = "long")]
        long: bool,
        /// Domains (names or ids) to list; all when none.
        #[arg(value_name = "DOM")]
        doms: Vec<String>,
    },
    /// Stop a domain at once (no guest shutdown) and free it.
    #[command(after_help = "Example:\n  $ rxen destroy web\n  $ rxen destroy 3")]
    Destroy {
        #[arg(value_name = "DOM")]
        dom: String,
    },
    /// Ask a domain's guest to shut down cleanly (xenstore control/shutdown).
    #[command(after_help = SHUTDOWN_HELP)]
    Shutdown {
        /// Wait until the domain has shut down.
        #[arg(short = 'w', long = "wait")]
        wait: bool,
        /// Shut down every domain.
        #[arg(short = 'a', long = "all", conflicts_with = "dom")]
        all: bool,
        #[arg(value_name = "DOM", required_unless_present = "all")]
        dom: Option<String>,
    },
    /// Ask a domain's guest to reboot cleanly (xenstore control/shutdown).
    #[command(
        after_help = "Example:\n  $ rxen reboot -w web\n  (with on_reboot=\"restart\", the default, the domain boots again with the same id)"
    )]
    Reboot {
        /// Wait until the domain has rebooted (or is gone).
        #[arg(short = 'w', long = "wait")]
        wait: bool,
        #[arg(value_name = "DOM")]
        dom: String,
    },
    /// Stop running a domain's vCPU; its memory and clock stay.
    #[command(
        after_help = "Example:\n  $ rxen pause web\n  $ rxen list web     # State --p---\n  $ rxen unpause web"
    )]
    Pause {
        #[arg(value_name = "DOM")]
        dom: String,
    },
    /// Let a paused domain run again.
    #[command(after_help = "Example:\n  $ rxen unpause web")]
    Unpause {
        #[arg(value_name = "DOM")]
        dom: String,
    },
    /// Give a domain a new name.
    #[command(after_help = "Example:\n  $ rxen rename web web-old")]
    Rename {
        #[arg(value_name = "DOM")]
        dom: String,
        #[arg(value_name = "NEW_NAME")]
        new: String,
    },
    /// Print the id of the domain with this name.
    #[command(after_help = "Example:\n  $ rxen domid web\n  3")]
    Domid {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Print the name of the domain with this id.
    #[command(after_help = "Example:\n  $ rxen domname 3\n  web")]
    Domname {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// How long each domain has been running (since its last boot).
    #[command(
        after_help = "Example:\n  $ rxen uptime\n  Name                                ID Uptime\n  Domain-0                             0 2 days, 3:04:05\n  web                                  3 0:12:30"
    )]
    Uptime {
        #[arg(value_name = "DOM")]
        doms: Vec<String>,
    },
    /// Facts about the host and rxen.
    #[command(
        after_help = "Example:\n  $ rxen info\n  host                   : myhost\n  nr_cpus                : 2\n  ..."
    )]
    Info,
    /// Attach to a domain's console (hvc0); the escape character detaches.
    #[command(after_help = CONSOLE_HELP)]
    Console {
        /// Escape character that detaches: ^X or one character.
        #[arg(short = 'e', value_name = "ESC", default_value = "^]")]
        escape: String,
        #[arg(value_name = "DOM")]
        dom: String,
    },
    /// Hot-plug a disk into a running domain (xl's disk spec).
    #[command(name = "block-attach", after_help = block::ATTACH_HELP)]
    BlockAttach {
        #[arg(value_name = "DOM")]
        dom: String,
        /// The disk spec, in one or several arguments.
        #[arg(value_name = "DISKSPEC", required = true)]
        spec: Vec<String>,
    },
    /// Unplug a disk from a running domain.
    #[command(name = "block-detach", after_help = block::DETACH_HELP)]
    BlockDetach {
        #[arg(value_name = "DOM")]
        dom: String,
        /// The disk's vdev (xvdb) or device number.
        #[arg(value_name = "VDEV")]
        vdev: String,
    },
    /// List a running domain's disks.
    #[command(name = "block-list", after_help = block::LIST_HELP)]
    BlockList {
        #[arg(value_name = "DOM")]
        dom: String,
    },
    /// Hot-plug a network interface into a running domain (xl's VIFSPEC).
    #[command(name = "network-attach", after_help = network::ATTACH_HELP)]
    NetworkAttach {
        #[arg(value_name = "DOM")]
        dom: String,
        /// key=value settings of the vif (none: every default).
        #[arg(value_name = "VIFSPEC")]
        spec: Vec<String>,
    },
    /// Unplug a network interface from a running domain.
    #[command(name = "network-detach", after_help = network::DETACH_HELP)]
    NetworkDetach {
        #[arg(value_name = "DOM")]
        dom: String,
        /// The vif's device id or MAC.
        #[arg(value_name = "DEVID|MAC")]
        dev: String,
    },
    /// List the network interfaces of running domains.
    #[command(name = "network-list", after_help = network::LIST_HELP)]
    NetworkList {
        #[arg(value_name = "DOM", required = true)]
        doms: Vec<String>,
    },
    /// Internal: the monitor process of one detached domain.
    #[command(hide = true)]
    Monitor {
        #[arg(long)]
        state: PathBuf,
        #[arg(long)]
        id: u16,
        #[arg(long)]
        lock_fd: i32,
        #[arg(long)]
        ready_fd: i32,
        #[arg(long)]
        paused: bool,
        /// The domain is a rename-restart's new domain.
        #[arg(long)]
        restarted: bool,
    },
    /// The host's xenstored (started on demand by `create`; internal).
    #[command(hide = true, after_help = XENSTORED_HELP)]
    Xenstored {
        /// The socket to serve.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        /// Fork into the background (the command returns at once).
        #[arg(long)]
        detach: bool,
        /// End after a minute without any connection.
        #[arg(long)]
        exit_when_idle: bool,
    },
    /// Download (once) and boot the default guest with its console attached.
    #[command(after_help = DEMO_HELP)]
    Demo(DemoArgs),
    /// Disk images: create, clone (thin copy-on-write), show a backing chain.
    #[command(
        subcommand,
        after_help = "Example:\n  $ rxen image create -f qcow2 root.qcow2 10G\n  \
                      $ rxen image clone root.qcow2 try.qcow2\n  \
                      $ rxen image chain try.qcow2"
    )]
    Image(image::ImageCommand),
}

#[derive(clap::Args)]
struct CreateArgs {
    /// Stay in the foreground until the domain is gone (on_* apply as for a
    /// detached domain; it is listed and reachable like any domain
    /// meanwhile; ^] or a signal ends it).
    #[arg(short = 'F')]
    foreground: bool,
    /// Attach the console after creating (detached: ^] detaches; with -F:
    /// ^] ends the domain).
    #[arg(short = 'c')]
    console: bool,
    /// Leave the domain paused (`rxen unpause` starts it).
    #[arg(short = 'p')]
    paused: bool,
    /// Quiet: print only errors.
    #[arg(short = 'q')]
    quiet: bool,
    /// The config file (as with xl, it may also be the first argument).
    #[arg(short = 'f', value_name = "CFG")]
    file: Option<PathBuf>,
    /// `CFG` then `KEY=VALUE` settings that override the file's
    /// (e.g. `memory=512`, `'extra="quiet"'`).
    #[arg(value_name = "CFG [KEY=VALUE]")]
    args: Vec<String>,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Boot Debian's linux-image-cloud-amd64 kernel instead of linux-image-amd64.
    #[arg(long)]
    cloud: bool,
}

const CREATE_HELP: &str = concat!(
    "Example:\n",
    "  $ cat guest.cfg\n",
    "  name = \"guest\"\n",
    "  type = \"pv\"\n",
    "  kernel = \"/boot/vmlinuz-6.1.0-41-amd64\"\n",
    "  ramdisk = \"initrd.img\"\n",
    "  memory = 256\n",
    "  extra = \"console=hvc0\"\n",
    "  $ rxen create guest.cfg memory=512     # detached; returns once it runs\n",
    "  $ rxen create -c guest.cfg            # ... and attach its console\n",
    "  $ rxen create -F -c guest.cfg         # in the foreground until it is gone\n",
    "\n",
    "A detached domain gets the lowest free id and its own monitor process;\n",
    "on_poweroff, on_reboot and on_crash (destroy, restart, preserve,\n",
    "rename-restart) say what happens when the guest stops. Its files are in\n",
    "STATE/ID/ (console.log, domain.log; kept in STATE/logs/ once it is gone;\n",
    "STATE: $RXEN_STATE_DIR, /run/rxen for root, else $XDG_RUNTIME_DIR/rxen;\n",
    "log level: $RXEN_LOG, default info).\n",
    "\n",
    "With -F this process is the domain's monitor until the domain is gone:\n",
    "the on_* actions apply as without it (restart boots it again here;\n",
    "preserve keeps it listed as shut down or crashed until `rxen destroy`,\n",
    "^] or a signal). Meanwhile it is registered like any domain (`rxen\n",
    "list`, `rxen console`, `rxen destroy` from another terminal). The exit\n",
    "status says how its last boot ended.\n",
    "\n",
    "Exit status:\n",
    exit_status_help!()
);

const LIST_HELP: &str = "Example:
  $ rxen list
  Name                                        ID   Mem VCPUs      State   Time(s)
  Domain-0                                     0 24041     2     r-----    1234.5
  web                                          1   256     1     -b----       9.8
  $ rxen list -l web      # the config and status as JSON

Domain-0 is the host (rxen runs on Linux, which plays dom0): its memory, CPUs
and busy CPU time. State: r running, b blocked (idle), p paused, s shut down
(kept by on_poweroff=\"preserve\"), c crashed (kept by on_crash=\"preserve\"),
d dying. Time(s): CPU time of the domain's vCPU over all its boots.";

const SHUTDOWN_HELP: &str = "Example:
  $ rxen shutdown -w web   # ask the guest to power off and wait until it has
  $ rxen shutdown -a       # every domain

The guest is asked through its xenstore control/shutdown node, as on Xen; a
guest without a PV shutdown handler ignores it (use `rxen destroy`).";

const CONSOLE_HELP: &str = "Example:
  $ rxen console web
  (the guest's hvc0 console; type ^] to detach, the domain keeps running)
  $ rxen console -e ^a web  # detach with ^a instead

Several consoles may be attached to one domain at once; everything the guest
prints is also kept in STATE/ID/console.log.";

const DEMO_HELP: &str = concat!(
    "Example:\n",
    "  $ rxen demo\n",
    "  (downloads Debian's kernel and busybox-static once, caches them in\n",
    "  $RXEN_CACHE or ~/.cache/rxen, then boots them: the kernel log streams\n",
    "  to the terminal and a busybox shell runs on hvc0; `poweroff` in the\n",
    "  guest or ^] ends it)\n",
    "\n",
    "The guest gets 256 MiB and the command line `console=hvc0`.\n",
    "\n",
    "Exit status:\n",
    exit_status_help!()
);

const XENSTORED_HELP: &str = "\
The first `rxen create` starts it; `rxen info` shows its socket. It serves
the xenstore protocol to Debian's xenstore-utils as well as to domains.

Example:
  $ rxen xenstored --socket /tmp/xs/socket &
  $ XENSTORED_PATH=/tmp/xs/socket xenstore-write /test hello
  $ XENSTORED_PATH=/tmp/xs/socket xenstore-ls /";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Create(args) => create(args),
        Command::Demo(args) => demo(args),
        Command::Image(cmd) => image::run(cmd).map(|()| Status::Poweroff),
        Command::Xenstored {
            socket,
            detach,
            exit_when_idle,
        } => detached::xenstored(&socket, detach, exit_when_idle).map(|()| Status::Poweroff),
        Command::Monitor {
            state,
            id,
            lock_fd,
            ready_fd,
            paused,
            restarted,
        } => detached::monitor(&state, id, lock_fd, ready_fd, paused, restarted)
            .map(|_| Status::Poweroff),
        other => manage(other).map(|_| Status::Poweroff),
    };
    match result {
        Ok(status) => status.code(),
        Err(e) => {
            eprintln!("rxen: error: {}", report(&e));
            Status::Error.code()
        }
    }
}

fn create(args: CreateArgs) -> Result<Status> {
    let (file, overrides) = match args.file {
        Some(f) => (f, args.args),
        None => {
            let mut it = args.args.into_iter();
            let Some(first) = it.next() else {
                bail!("no config file given\n(usage: rxen create [-F] [-c] [-q] CFG [KEY=VALUE...]; see `rxen create --help`)");
            };
            (PathBuf::from(first), it.collect())
        }
    };
    if !args.quiet {
        eprintln!("Parsing config from {}", file.display());
    }
    // Config errors already say `file:line:column: what`.
    let (cfg, warnings) = toolstack::config::load_config(&file, &overrides)?;
    for w in &warnings {
        eprintln!("{w}");
    }
    if cfg.vcpus > 1 {
        eprintln!(
            "{}: warning: rxen runs one vCPU per domain so far; vcpus = {} boots with 1",
            file.display(),
            cfg.vcpus
        );
    }
    let mut cfg = cfg;
    // A vif without `mac=` gets a random one in Xen's OUI, kept in the
    // config so it survives reboots (as xl does).
    for v in &mut cfg.vifs {
        v.mac
            .get_or_insert_with(|| toolstack::config::MacAddr(domain::net::random_mac()));
    }
    let disks = disks_of(&cfg, &file.display().to_string())?;
    let nics = nics_of(&cfg, &file.display().to_string())?;
    detached::absolutize(&mut cfg)?;
    let reg = registry()?;
    if args.foreground {
        if args.paused {
            bail!("-p (paused) needs a detached domain: drop -F");
        }
        return run(&reg, &cfg, disks, nics, args.console, args.quiet);
    }
    let entry = detached::create(&reg, &cfg, args.paused, false)?;
    if !args.quiet {
        eprintln!(
            "Started domain {} (id={}){}",
            entry.name,
            entry.id,
            if args.paused { ", paused" } else { "" }
        );
    }
    if args.console {
        console::attach(
            &reg.paths(entry.id).console_socket,
            domain::terminal::ESCAPE,
            true,
        )?;
    }
    Ok(Status::Poweroff)
}

fn registry() -> Result<Registry> {
    Ok(Registry::open(&state_dir())?)
}

/// The commands that manage existing domains.
fn manage(cmd: Command) -> Result<()> {
    let reg = registry()?;
    match cmd {
        Command::List { long, doms } => commands::list(&reg, long, &doms),
        Command::Destroy { dom } => commands::destroy(&reg, &dom),
        Command::Shutdown { wait, all, dom } => {
            let doms = match (all, dom) {
                (true, _) => reg.entries()?,
                (false, Some(d)) => vec![commands::find(&reg, &d)?],
                (false, None) => bail!("give a domain or -a"),
            };
            commands::shutdown(&reg, &doms, ShutdownKind::Poweroff, wait)
        }
        Command::Reboot { wait, dom } => {
            let e = commands::find(&reg, &dom)?;
            commands::shutdown(&reg, &[e], ShutdownKind::Reboot, wait)
        }
        Command::Pause { dom } => commands::simple(&reg, &dom, Request::Pause),
        Command::Unpause { dom } => commands::simple(&reg, &dom, Request::Unpause),
        Command::Rename { dom, new } => commands::rename(&reg, &dom, &new),
        Command::BlockAttach { dom, spec } => block::attach(&reg, &dom, &spec),
        Command::BlockDetach { dom, vdev } => block::detach(&reg, &dom, &vdev),
        Command::BlockList { dom } => block::list(&reg, &dom),
        Command::NetworkAttach { dom, spec } => network::attach(&reg, &dom, &spec),
        Command::NetworkDetach { dom, dev } => network::detach(&reg, &dom, &dev),
        Command::NetworkList { doms } => network::list(&reg, &doms),
        Command::Domid { name } => commands::domid(&reg, &name),
        Command::Domname { id } => commands::domname(&reg, &id),
        Command::Uptime { doms } => commands::uptime(&reg, &doms),
        Command::Info => commands::info(&reg),
        Command::Console { escape, dom } => {
            let esc = console::parse_escape(&escape)?;
            let e = commands::find(&reg, &dom)?;
            match console::attach(&reg.paths(e.id).console_socket, esc, false)? {
                console::Detach::DomainGone => {
                    eprintln!("\r\nrxen: domain '{}' is gone", e.name)
                }
                console::Detach::Escape | console::Detach::InputEnded => {}
            }
            Ok(())
        }
        Command::Create(_)
        | Command::Demo(_)
        | Command::Image(_)
        | Command::Monitor { .. }
        | Command::Xenstored { .. } => {
            unreachable!("handled in main")
        }
    }
}

/// The disks of `cfg` for the block backend (`what` names the config in
/// messages); warns about entries that are skipped.
pub(crate) fn disks_of(
    cfg: &toolstack::config::DomainConfig,
    what: &str,
) -> Result<Vec<domain::blk::DiskAttach>> {
    let mut disks = Vec::new();
    for d in &cfg.disks {
        match disk_attach(d).with_context(|| format!("{what}: disk {}", d.vdev.name))? {
            Some(a) => disks.push(a),
            None => eprintln!(
                "{what}: warning: disk {}: an empty CD-ROM drive is not offered yet; skipped",
                d.vdev.name
            ),
        }
    }
    Ok(disks)
}

/// The network interfaces of `cfg` (`what` names the config in messages).
pub(crate) fn nics_of(
    cfg: &toolstack::config::DomainConfig,
    what: &str,
) -> Result<Vec<domain::net::NicAttach>> {
    cfg.vifs.iter().map(|v| nic_attach(v, what)).collect()
}

/// What the network backend serves for one `vif=` entry (a random MAC in
/// Xen's OUI if it names none).
pub(crate) fn nic_attach(
    v: &toolstack::config::vif::VifSpec,
    what: &str,
) -> Result<domain::net::NicAttach> {
    if let Some(b) = &v.backend {
        if b != "0" && b != "Domain-0" {
            anyhow::bail!(
                "{what}: vif {}: backend domain {b:?}: only domain 0 serves network interfaces",
                v.devid
            );
        }
    }
    Ok(domain::net::NicAttach {
        devid: v.devid,
        mac: v.mac.map(|m| m.0).unwrap_or_else(domain::net::random_mac),
        bridge: v.bridge.clone(),
        vifname: v.vifname.clone(),
        mtu: v.mtu,
        ip: v.ip.clone(),
        script: v.script.clone(),
        gatewaydev: v.gatewaydev.clone(),
        rate: v.rate.map(|r| (r.bytes_per_sec, r.interval_usecs)),
    })
}

/// What the block backend serves for one `disk=` entry; `None` for an
/// empty CD-ROM drive. Parts of xl's disk syntax rxen does not do yet are
/// refused with a reason rather than ignored.
fn disk_attach(d: &toolstack::config::disk::DiskSpec) -> Result<Option<domain::blk::DiskAttach>> {
    use toolstack::config::disk::{DevType, DiskFormat, Specification};
    let format = match d.format {
        DiskFormat::Raw => disk::Format::Raw,
        DiskFormat::Qcow2 => disk::Format::Qcow2,
        DiskFormat::Empty => return Ok(None),
        other => anyhow::bail!("format {other:?} is not supported (raw and qcow2 are)"),
    };
    if d.script.is_some() {
        anyhow::bail!("hotplug scripts (script=) are not supported");
    }
    if let Some(b) = &d.backend {
        if b != "0" && b != "Domain-0" {
            anyhow::bail!("backend domain {b:?}: only domain 0 serves disks");
        }
    }
    if d.specification == Some(Specification::Virtio) {
        anyhow::bail!("specification=virtio: PV guests get xen-blkfront disks");
    }
    let Some(path) = d.host_path() else {
        return Ok(None);
    };
    Ok(Some(domain::blk::DiskAttach {
        path,
        format,
        vdev: d.vdev.name.clone(),
        devid: d.vdev.devid,
        read_only: !d.is_writable(),
        cdrom: d.devtype == DevType::Cdrom,
        direct: d.direct_io_safe,
        discard: d.discard.unwrap_or(true),
    }))
}

fn demo(args: DemoArgs) -> Result<Status> {
    let flavour = if args.cloud {
        guestprep::Flavour::CloudAmd64
    } else {
        guestprep::Flavour::Amd64
    };
    eprintln!(
        "rxen: preparing the demo guest: Debian's {} kernel and a busybox initramfs \
         (downloaded once, cached in {})",
        flavour.metapackage(),
        guestprep::cache_dir().display()
    );
    let t = Instant::now();
    let kernel = guestprep::debian_kernel(flavour)
        .with_context(|| format!("cannot prepare the demo kernel ({})", flavour.metapackage()))?;
    eprintln!(
        "rxen: kernel     {} ({})",
        kernel.vmlinuz.display(),
        kernel.version
    );
    let initramfs = guestprep::busybox_initramfs(&guestprep::default_initramfs())
        .context("cannot prepare the demo initramfs (busybox-static)")?;
    eprintln!(
        "rxen: initramfs  {} (ready in {:.1?})",
        initramfs.display(),
        t.elapsed()
    );
    // As if from this config file (JSON strings are valid xl.cfg strings).
    let text = format!(
        "name = \"demo\"\nkernel = {}\nramdisk = {}\nmemory = 256\nextra = \"console=hvc0\"\n",
        serde_json::to_string(&kernel.vmlinuz)?,
        serde_json::to_string(&initramfs)?
    );
    let (cfg, _) = toolstack::config::parse_config::<&str>(&text, "<demo>", &[])?;
    eprintln!(
        "rxen: booting Linux {} as domain 'demo' (256 MiB, console=hvc0); ^] ends it",
        kernel.version
    );
    run(&registry()?, &cfg, Vec::new(), Vec::new(), true, false)
}

/// Runs `cfg` in the foreground (registered, see [`detached::foreground`])
/// and says how it ended.
fn run(
    reg: &Registry,
    cfg: &toolstack::config::DomainConfig,
    disks: Vec<domain::blk::DiskAttach>,
    nics: Vec<domain::net::NicAttach>,
    console: bool,
    quiet: bool,
) -> Result<Status> {
    let detached::ForegroundEnd {
        ended,
        console_log,
        domain_log,
    } = detached::foreground(reg, cfg, disks, nics, console)?;
    let status = Status::of(&ended);
    let secs = ended.elapsed.as_secs_f64();
    let what = match (&ended.destroyed, &ended.reason) {
        (Some(why), _) => format!("destroyed by {why}"),
        (None, pv::domain::ShutdownReason::Crash(detail)) => format!("crashed: {detail}"),
        (None, pv::domain::ShutdownReason::Destroyed) => "destroyed".to_string(),
        (None, r) => format!("shut down: {}", r.name()),
    };
    if !quiet || status != Status::Poweroff {
        if console {
            eprintln!();
        }
        eprintln!(
            "rxen: domain '{}' {what} after {secs:.2} s (exit status {})",
            cfg.name, status as u8
        );
        if status == Status::Crash {
            eprintln!(
                "rxen: console log: {}\nrxen: domain log:  {}",
                console_log.display(),
                domain_log.display()
            );
        }
    }
    Ok(status)
}

/// The error and its causes, `: `-separated, skipping a cause whose text
/// the message already holds (many errors print their source themselves).
fn report(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

/// Sends `tracing` output to `path` (level from `$RXEN_LOG`, default info).
pub(crate) fn init_logging(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the domain's state directory {} (set RXEN_STATE_DIR to use another)",
                dir.display()
            )
        })?;
    }
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot create the domain log {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("RXEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn create_takes_xl_style_arguments() {
        let cli = Cli::try_parse_from(["rxen", "create", "-Fc", "g.cfg", "memory=512"]).unwrap();
        let Command::Create(a) = cli.command else {
            panic!("not create")
        };
        assert!(a.foreground && a.console && !a.quiet);
        assert_eq!(a.args, ["g.cfg", "memory=512"]);
        let cli = Cli::try_parse_from(["rxen", "create", "-q", "-f", "g.cfg", "vcpus=1"]).unwrap();
        let Command::Create(a) = cli.command else {
            panic!("not create")
        };
        assert_eq!(a.file.as_deref(), Some(Path::new("g.cfg")));
        assert_eq!(a.args, ["vcpus=1"]);
    }

    #[test]
    fn errors_print_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(io).context("cannot read /x: No such file");
        let e = e.context("cannot start domain 'g'");
        assert_eq!(
            report(&e),
            "cannot start domain 'g': cannot read /x: No such file"
        );
    }

    #[test]
    fn every_command_has_an_example() {
        let mut cmd = Cli::command();
        for sub in cmd.get_subcommands_mut() {
            if sub.is_hide_set() {
                continue;
            }
            let name = sub.get_name().to_string();
            let help = sub.render_help().to_string();
            assert!(help.contains("Example"), "{name}: {help}");
        }
    }

    #[test]
    fn management_commands_take_xl_arguments() {
        let cli = Cli::try_parse_from(["rxen", "shutdown", "-w", "-a"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Shutdown {
                wait: true,
                all: true,
                dom: None
            }
        ));
        assert!(Cli::try_parse_from(["rxen", "shutdown"]).is_err());
        let cli = Cli::try_parse_from(["rxen", "list", "-l", "web", "3"]).unwrap();
        assert!(matches!(cli.command, Command::List { long: true, ref doms } if doms.len() == 2));
        let cli = Cli::try_parse_from(["rxen", "console", "-e", "^a", "web"]).unwrap();
        assert!(matches!(cli.command, Command::Console { ref escape, .. } if escape == "^a"));
        let cli = Cli::try_parse_from(["rxen", "create", "-p", "g.cfg"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Create(CreateArgs { paused: true, .. })
        ));
    }

    #[test]
    fn help_shows_examples_and_exit_statuses() {
        for sub in ["create", "demo"] {
            let mut cmd = Cli::command();
            let help = cmd
                .find_subcommand_mut(sub)
                .unwrap()
                .render_help()
                .to_string();
            assert!(help.contains("Example:"), "{sub}: {help}");
            assert!(help.contains("Exit status:"), "{sub}: {help}");
            assert!(help.contains(EXIT_STATUS_HELP.lines().next().unwrap()));
        }
    }
}
