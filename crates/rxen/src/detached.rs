//! Detached domains: `create` without `-F` starts a monitor process (this
//! binary re-executed as the hidden `monitor` subcommand) in its own
//! session, with its stdio in the domain log, and waits until the monitor
//! says the guest runs or why it could not start it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use domain::control::ResponseMsg;
use domain::monitor::{Actions, Hooks, MonitorSpec, OnShutdown};
use domain::DomainSpec;
use toolstack::config::{DomainConfig, ShutdownAction};
use toolstack::registry::{open_append, Entry, Registry};

/// How long a monitor may take to build a domain before `create` gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Makes relative kernel and ramdisk paths absolute (as xl, relative to
/// where `create` runs), so the monitor and its restarts find them.
pub fn absolutize(cfg: &mut DomainConfig) -> Result<()> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    if cfg.kernel.is_relative() {
        cfg.kernel = cwd.join(&cfg.kernel);
    }
    if let Some(r) = &mut cfg.ramdisk {
        if r.is_relative() {
            *r = cwd.join(&*r);
        }
    }
    Ok(())
}

/// Registers `cfg`, starts its monitor and waits until the guest runs.
/// `restarted`: the domain is a rename-restart's new domain (its first boot
/// counts for the restart rate limit).
pub fn create(reg: &Registry, cfg: &DomainConfig, paused: bool, restarted: bool) -> Result<Entry> {
    let res = reg.reserve(cfg)?;
    let (r, w) = pipe().context("cannot make the monitor's ready pipe")?;
    let log = open_append(&res.paths.domain_log)
        .with_context(|| format!("cannot open {}", res.paths.domain_log.display()))?;
    let lock_fd = res.domain_lock.as_raw_fd();
    let ready_fd = w.as_raw_fd();
    let exe = std::env::current_exe().context("cannot find the rxen binary to run a monitor")?;
    let mut cmd = Command::new(exe);
    cmd.arg("monitor")
        .arg("--state")
        .arg(reg.dir())
        .arg("--id")
        .arg(res.entry.id.to_string())
        .arg("--lock-fd")
        .arg(lock_fd.to_string())
        .arg("--ready-fd")
        .arg(ready_fd.to_string());
    if paused {
        cmd.arg("--paused");
    }
    if restarted {
        cmd.arg("--restarted");
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().context("cannot duplicate the log")?)
        .stderr(log);
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe calls (setsid, fcntl) on descriptors it owns.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            for fd in [lock_fd, ready_fd] {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the monitor process")?;
    drop(w);
    let entry = res.commit(child.id())?;
    match wait_ready(r) {
        Ok(()) => Ok(entry),
        Err(e) => {
            // Let it finish removing its entry, so a retry finds the name free.
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = reg.entries();
            let (_, dlog) = reg.kept_logs(&cfg.name);
            Err(e.context(format!(
                "cannot start domain '{}' (monitor log: {})",
                cfg.name,
                dlog.display()
            )))
        }
    }
}

fn pipe() -> std::io::Result<(File, File)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned only here.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

fn wait_ready(r: File) -> Result<()> {
    let mut pfd = libc::pollfd {
        fd: r.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, READY_TIMEOUT.as_millis() as i32) };
    if n == 0 {
        bail!(
            "the monitor did not report within {} s",
            READY_TIMEOUT.as_secs()
        );
    }
    let mut line = String::new();
    BufReader::new(r)
        .read_line(&mut line)
        .context("cannot read the monitor's report")?;
    if line.is_empty() {
        bail!("the monitor exited before the domain started");
    }
    ResponseMsg::parse(line.trim_end())
        .map(|_| ())
        .map_err(|e| match e {
            domain::control::ProtocolError::Remote(m) => anyhow!(m),
            other => anyhow!(other),
        })
}

fn action(a: ShutdownAction) -> OnShutdown {
    match a {
        ShutdownAction::Destroy => OnShutdown::Destroy,
        ShutdownAction::Restart => OnShutdown::Restart,
        ShutdownAction::Preserve => OnShutdown::Preserve,
        ShutdownAction::RenameRestart => OnShutdown::RenameRestart,
    }
}

/// The config's `on_*` actions, for a detached and a foreground monitor alike.
fn actions(cfg: &DomainConfig) -> Actions {
    Actions {
        on_poweroff: action(cfg.on_poweroff),
        on_reboot: action(cfg.on_reboot),
        on_crash: action(cfg.on_crash),
    }
}

/// What the monitor needs from a config; `dir` is the domain's registry
/// directory.
pub fn domain_spec(
    cfg: &DomainConfig,
    disks: Vec<domain::blk::DiskAttach>,
    nics: Vec<domain::net::NicAttach>,
    dir: &Path,
) -> DomainSpec {
    DomainSpec {
        name: cfg.name.clone(),
        uuid: cfg.uuid.map(|u| u.0),
        memory_mib: cfg.memory,
        maxmem_mib: cfg.maxmem,
        vcpus: cfg.vcpus,
        kernel: cfg.kernel.clone(),
        ramdisk: cfg.ramdisk.clone(),
        cmdline: cfg.cmdline.clone().unwrap_or_default(),
        disks,
        nics,
        state: Some(dir.to_path_buf()),
    }
}

/// `rename-restart` through the registry.
struct RegistryHooks {
    reg: Registry,
    id: u16,
    config: Mutex<DomainConfig>,
}

impl Hooks for RegistryHooks {
    fn rename_restart(&self, name: &str) -> Result<String, String> {
        let new = self.reg.free_name(name).map_err(|e| e.to_string())?;
        self.reg
            .rename(self.id, &new, || Ok(()))
            .map_err(|e| e.to_string())?;
        let mut cfg = self.config.lock().unwrap().clone();
        cfg.name = name.to_string();
        create(&self.reg, &cfg, false, true).map_err(|e| format!("{e:#}"))?;
        Ok(new)
    }
}

/// A monitor outlives the command that started it: it keeps no descriptor
/// it inherited from that command's caller except `keep` (stdio aside). A
/// caller's pipe held open by a monitor would never reach end of file for
/// its reader (a test harness or a script reading `rxen create`'s output).
fn close_inherited_fds(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep.iter().filter(|&&f| f > 2).map(|&f| f as u32).collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for k in keep.into_iter().chain([u32::MAX]) {
        if k > from {
            // SAFETY: close_range on descriptors this process owns; no
            // thread exists yet and nothing above stdio but `keep` is in use.
            unsafe { libc::syscall(libc::SYS_close_range, from, k - 1, 0u32) };
        }
        from = k.saturating_add(1);
    }
}

/// A monitor reads tens of MiB once (the kernel's segments, the
/// initramfs) and then runs for days. glibc raises its mmap threshold to
/// the size of the largest block freed (up to 32 MiB), so after the kernel
/// segments later multi-MiB buffers landed on the heap and stayed there
/// (~2 MiB more resident per monitor). A fixed threshold keeps every block
/// of 128 KiB or more in its own mapping, returned when freed.
fn keep_big_buffers_off_the_heap() {
    // SAFETY: mallopt only changes allocator tunables; called before any
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 10);
    }
}

/// The hidden `monitor` subcommand: runs domain `id` of the registry in
/// `state` until it is destroyed, then removes its entry.
pub fn monitor(
    state: &Path,
    id: u16,
    lock_fd: RawFd,
    ready_fd: RawFd,
    paused: bool,
    restarted: bool,
) -> Result<()> {
    // SAFETY: the creating command passed these descriptors to this process
    // for it alone; they are not used anywhere else.
    let lock = unsafe { File::from_raw_fd(lock_fd) };
    // SAFETY: as above.
    let ready = unsafe { File::from_raw_fd(ready_fd) };
    // Not to be inherited by anything this monitor starts (a rename-restart
    // creates a monitor): the lock must die with this process.
    for fd in [lock_fd, ready_fd] {
        // SAFETY: fcntl on descriptors this process owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    close_inherited_fds(&[lock_fd, ready_fd]);
    keep_big_buffers_off_the_heap();
    let reg = Registry::open(state)?;
    let entry = reg.entry(id)?;
    let paths = reg.paths(id);
    init_stderr_logging();
    tracing::info!(
        id,
        name = entry.name,
        pid = std::process::id(),
        "monitor started"
    );
    let cfg = entry.config.clone();
    let disks = crate::disks_of(&cfg, &format!("domain '{}'", cfg.name))?;
    let nics = crate::nics_of(&cfg, &format!("domain '{}'", cfg.name))?;
    let spec = MonitorSpec {
        domain: domain_spec(&cfg, disks, nics, &paths.dir),
        domid: id,
        actions: actions(&cfg),
        control_socket: paths.control_socket.clone(),
        console_socket: paths.console_socket.clone(),
        console_log: paths.console_log.clone(),
        start_paused: paused,
        terminal: false,
        restarted,
    };
    let hooks = Arc::new(RegistryHooks {
        reg: reg.clone(),
        id,
        config: Mutex::new(cfg),
    });
    let ready = Mutex::new(Some(ready));
    let result = domain::monitor::run_detached(
        &spec,
        hooks,
        Box::new(move |r| {
            if let Some(f) = ready.lock().unwrap().take() {
                domain::monitor::write_ready(f, &r);
            }
        }),
    );
    match &result {
        Ok(end) => {
            tracing::info!(name = end.name, boots = end.boots, last = ?end.last, "domain destroyed")
        }
        Err(e) => tracing::error!("domain could not start: {e}"),
    }
    let _ = reg.remove(id);
    drop(lock);
    result.map(|_| ()).map_err(Into::into)
}

/// How a `create -F` domain ended, and where its logs were kept.
pub struct ForegroundEnd {
    pub ended: domain::Ended,
    pub console_log: PathBuf,
    pub domain_log: PathBuf,
}

/// `create -F`: the domain is registered like a detached one (it shows in
/// `rxen list`; `rxen console`, `destroy`, `pause`, ... reach it from other
/// terminals) and its monitor is the same, with its `on_*` actions, but runs
/// in this process (as `xl create -F` follows its domain): a restart boots
/// it again here, a preserved domain stays listed until destroyed (or ^],
/// or a signal to this process), and once it is gone it leaves the registry,
/// its logs kept in STATE/logs/. `console` also attaches it to this
/// terminal. A rename-restart's new domain is a detached one.
pub fn foreground(
    reg: &Registry,
    cfg: &DomainConfig,
    disks: Vec<domain::blk::DiskAttach>,
    nics: Vec<domain::net::NicAttach>,
    console: bool,
) -> Result<ForegroundEnd> {
    let res = reg.reserve(cfg)?;
    let paths = res.paths.clone();
    crate::init_logging(&paths.domain_log)?;
    tracing::info!(
        id = res.entry.id,
        name = cfg.name,
        pid = std::process::id(),
        "foreground domain registered"
    );
    let lock = res
        .domain_lock
        .try_clone()
        .context("cannot keep the domain lock")?;
    let entry = res.commit(std::process::id())?;
    let spec = MonitorSpec {
        domain: domain_spec(cfg, disks, nics, &paths.dir),
        domid: entry.id,
        actions: actions(cfg),
        control_socket: paths.control_socket.clone(),
        console_socket: paths.console_socket.clone(),
        console_log: paths.console_log.clone(),
        start_paused: false,
        terminal: console,
        restarted: false,
    };
    let hooks = Arc::new(RegistryHooks {
        reg: reg.clone(),
        id: entry.id,
        config: Mutex::new(cfg.clone()),
    });
    let result = domain::monitor::run_detached(&spec, hooks, Box::new(|_| {}));
    let name = match &result {
        Ok(end) => end.name.clone(),
        Err(_) => cfg.name.clone(),
    };
    let result = result.map(|end| domain::Ended {
        reason: end.last.unwrap_or(pv::domain::ShutdownReason::Destroyed),
        destroyed: end.destroyed,
        elapsed: end.elapsed,
        stats: end.stats,
    });
    if let Ok(e) = &result {
        tracing::info!(
            reason = e.reason.name(),
            detail = ?e.reason,
            destroyed = e.destroyed.as_ref().map(|d| d.to_string()),
            elapsed = ?e.elapsed,
            stats = ?e.stats,
            "domain ended"
        );
    }
    let _ = reg.remove(entry.id);
    drop(lock);
    let (console_log, domain_log) = reg.kept_logs(&name);
    let ended = result.with_context(|| {
        format!(
            "cannot start domain '{}' (domain log: {})",
            cfg.name,
            domain_log.display()
        )
    })?;
    Ok(ForegroundEnd {
        ended,
        console_log,
        domain_log,
    })
}

/// The hidden `xenstored` subcommand: the host's store daemon (see
/// `domain::xenstored`).
pub fn xenstored(socket: &Path, detach: bool, exit_when_idle: bool) -> Result<()> {
    if detach {
        domain::xenstored::detach().context("cannot fork xenstored")?;
    }
    init_stderr_logging();
    let end = domain::xenstored::run_daemon(socket, exit_when_idle)
        .with_context(|| format!("xenstored on {}", socket.display()))?;
    tracing::info!(?end, "xenstored ended");
    Ok(())
}

fn init_stderr_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RXEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Waits until domain `id`'s monitor is gone (its lock free), up to
/// `limit`; returns whether it went.
pub fn wait_gone(reg: &Registry, id: u16, limit: Duration) -> bool {
    let t = Instant::now();
    loop {
        if !reg.is_alive(id) {
            let _ = reg.entries();
            return true;
        }
        if t.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
