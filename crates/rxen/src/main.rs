//! `rxen`: manage Xen PV domains on Linux KVM, the way `xl` does on Xen.

#[macro_use]
mod exit;
mod image;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use domain::state::{state_dir, DomainFiles};
use domain::{DomainSpec, Foreground};
use exit::Status;
#[cfg(test)]
use exit::EXIT_STATUS_HELP;

/// The id a foreground domain gets (ids are allocated by the toolstack's
/// registry once detached domains exist).
const FOREGROUND_DOMID: u16 = 1;

#[derive(Parser)]
#[command(
    name = "rxen",
    version,
    about = "Run Xen PV guests (unmodified distribution kernels) on Linux KVM, managed like xl",
    after_help = "Examples:\n  rxen demo                     boot Debian's kernel with a busybox shell\n  \
                  rxen create -F -c guest.cfg   boot a domain from an xl.cfg file, console attached\n  \
                  rxen image clone base.qcow2 try.qcow2   a thin copy-on-write clone of a disk"
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
        override_usage = "rxen create [-F] [-c] [-q] [-f] CFG [KEY=VALUE...]"
    )]
    Create(CreateArgs),
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
    /// Stay in the foreground until the domain ends (the only mode so far).
    #[arg(short = 'F')]
    foreground: bool,
    /// Attach the console: guest output on stdout, keyboard input to the
    /// guest (^] ends the domain).
    #[arg(short = 'c')]
    console: bool,
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
    "  $ rxen create -F -c guest.cfg memory=512\n",
    "\n",
    "Detached domains (create without -F) come with the toolstack; until then\n",
    "create runs the domain in the foreground either way. The on_poweroff,\n",
    "on_reboot and on_crash actions are not applied yet: the domain runs once\n",
    "and the exit status says how it ended. The console is also logged to\n",
    "STATE/NAME/console.log and rxen's own log to STATE/NAME/domain.log\n",
    "(STATE: $RXEN_STATE_DIR, /run/rxen for root, else $XDG_RUNTIME_DIR/rxen;\n",
    "log level: $RXEN_LOG, default info).\n",
    "\n",
    "Exit status:\n",
    exit_status_help!()
);

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Create(args) => create(args),
        Command::Demo(args) => demo(args),
        Command::Image(cmd) => image::run(cmd).map(|()| Status::Poweroff),
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
    if !args.foreground && !args.quiet {
        eprintln!(
            "rxen: note: detached domains come with the toolstack and are not available yet; \
             running '{}' in the foreground (as with -F)",
            cfg.name
        );
    }
    if cfg.vcpus > 1 {
        eprintln!(
            "{}: warning: rxen runs one vCPU per domain so far; vcpus = {} boots with 1",
            file.display(),
            cfg.vcpus
        );
    }
    if !cfg.vifs.is_empty() {
        eprintln!(
            "{}: warning: network interfaces are not supported yet; \
             the domain boots without them",
            file.display()
        );
    }
    let mut disks = Vec::new();
    for d in &cfg.disks {
        match disk_attach(d).with_context(|| format!("{}: disk {}", file.display(), d.vdev.name))? {
            Some(a) => disks.push(a),
            None => eprintln!(
                "{}: warning: disk {}: an empty CD-ROM drive is not offered yet; skipped",
                file.display(),
                d.vdev.name
            ),
        }
    }
    let spec = DomainSpec {
        name: cfg.name.clone(),
        uuid: cfg.uuid.map(|u| u.0),
        memory_mib: cfg.memory,
        maxmem_mib: cfg.maxmem,
        vcpus: cfg.vcpus,
        kernel: cfg.kernel.clone(),
        ramdisk: cfg.ramdisk.clone(),
        cmdline: cfg.cmdline.clone().unwrap_or_default(),
        disks,
    };
    run(&spec, args.console, args.quiet)
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
    let spec = DomainSpec {
        name: "demo".into(),
        uuid: None,
        memory_mib: 256,
        maxmem_mib: 256,
        vcpus: 1,
        kernel: kernel.vmlinuz,
        ramdisk: Some(initramfs),
        cmdline: "console=hvc0".into(),
        disks: Vec::new(),
    };
    eprintln!(
        "rxen: booting Linux {} as domain 'demo' (256 MiB, console=hvc0); ^] ends it",
        kernel.version
    );
    run(&spec, true, false)
}

/// Runs `spec` in the foreground and says how it ended.
fn run(spec: &DomainSpec, console: bool, quiet: bool) -> Result<Status> {
    let files = DomainFiles::new(&state_dir(), &spec.name);
    init_logging(&files.domain_log)?;
    let ended = domain::run_foreground(
        spec,
        &Foreground {
            attach_console: console,
            console_log: Some(files.console_log.clone()),
            domid: FOREGROUND_DOMID,
        },
    )
    .with_context(|| format!("cannot start domain '{}'", spec.name))?;
    let status = Status::of(&ended);
    let secs = ended.elapsed.as_secs_f64();
    let what = match (&ended.destroyed, &ended.reason) {
        (Some(why), _) => format!("destroyed by {why}"),
        (None, pv::domain::ShutdownReason::Crash(detail)) => format!("crashed: {detail}"),
        (None, r) => format!("shut down: {}", r.name()),
    };
    if !quiet || status != Status::Poweroff {
        if console {
            eprintln!();
        }
        eprintln!(
            "rxen: domain '{}' {what} after {secs:.2} s (exit status {})",
            spec.name, status as u8
        );
        if status == Status::Crash {
            eprintln!(
                "rxen: console log: {}\nrxen: domain log:  {}",
                files.console_log.display(),
                files.domain_log.display()
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
fn init_logging(path: &Path) -> Result<()> {
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
