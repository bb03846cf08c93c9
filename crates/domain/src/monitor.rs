//! A detached domain's monitor: boots the domain, serves its control socket
//! ([`crate::control`]) and console socket ([`crate::console_server`]), and
//! applies the config's `on_poweroff` / `on_reboot` / `on_crash` actions
//! when the guest stops, until the domain is destroyed.
//!
//! The registry (which ids and names exist, the state directory) belongs to
//! the toolstack above; the monitor only reaches it through [`Hooks`].

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pv::domain::{DomainShared, ShutdownReason};
use xenstore::DomId;

use crate::console_server::{self, InputTarget, Viewers};
use crate::control::{Request, RequestMsg, ResponseMsg, RunState, Status, MAX_LINE};
use crate::hub::{ConsoleOutput, HubState};
use crate::terminal::{Control, Destroyed, RawMode};
use crate::{DomainSpec, MonitorError};

/// What to do when the guest stops (xl.cfg's `on_*` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnShutdown {
    /// The domain goes away.
    Destroy,
    /// It boots again with the same id and config.
    Restart,
    /// It stays listed (shut down or crashed) until destroyed.
    Preserve,
    /// It stays under a new name and a new domain with its config starts.
    RenameRestart,
}

impl OnShutdown {
    /// The xl.cfg spelling.
    pub fn name(self) -> &'static str {
        match self {
            OnShutdown::Destroy => "destroy",
            OnShutdown::Restart => "restart",
            OnShutdown::Preserve => "preserve",
            OnShutdown::RenameRestart => "rename-restart",
        }
    }
}

/// The config's `on_poweroff`, `on_reboot` and `on_crash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actions {
    pub on_poweroff: OnShutdown,
    pub on_reboot: OnShutdown,
    pub on_crash: OnShutdown,
}

impl Actions {
    /// The action for a stop for `reason`. Suspend and soft reset have no
    /// action of their own yet and destroy; a watchdog counts as a crash.
    pub fn for_reason(&self, reason: &ShutdownReason) -> OnShutdown {
        match reason {
            ShutdownReason::Poweroff => self.on_poweroff,
            ShutdownReason::Reboot => self.on_reboot,
            ShutdownReason::Crash(_) | ShutdownReason::Watchdog => self.on_crash,
            ShutdownReason::Suspend | ShutdownReason::SoftReset | ShutdownReason::Destroyed => {
                OnShutdown::Destroy
            }
        }
    }
}

/// Before booting a domain again, the monitor waits this long, as `xl`
/// does.
pub const RESTART_DELAY: Duration = Duration::from_secs(2);

/// A restart this soon after the previous restart is refused and the domain
/// destroyed, as xend (xl's predecessor; its MINIMUM_RESTART_TIME) did, so
/// that a domain that crashes or reboots at once does not loop forever.
pub const MIN_RESTART_INTERVAL: Duration = Duration::from_secs(20);

/// Everything a detached monitor needs.
#[derive(Debug, Clone)]
pub struct MonitorSpec {
    pub domain: DomainSpec,
    pub domid: DomId,
    pub actions: Actions,
    pub control_socket: PathBuf,
    pub console_socket: PathBuf,
    pub console_log: PathBuf,
    /// Leave the first boot paused before its first instruction
    /// (`create -p`).
    pub start_paused: bool,
    /// `create -F -c`: this process's terminal is a console too (output on
    /// stdout; stdin, raw when a terminal, fed to the guest; `^]` destroys
    /// the domain).
    pub terminal: bool,
    /// This domain is itself a restart (the new domain of a
    /// `rename-restart`): its first boot counts as a restart for
    /// [`MIN_RESTART_INTERVAL`], so a chain of rename-restarts stops too.
    pub restarted: bool,
}

/// The registry side of `rename-restart`, provided by the toolstack.
pub trait Hooks: Send + Sync {
    /// Renames this domain (currently `name`) to a free name in the
    /// registry and starts a new domain from the same config, as a restart
    /// ([`MonitorSpec::restarted`]); returns the name this domain now has.
    fn rename_restart(&self, name: &str) -> Result<String, String>;
}

/// How a monitor ended.
#[derive(Debug, Clone)]
pub struct MonitorEnd {
    /// How the last boot ended.
    pub last: Option<ShutdownReason>,
    /// The domain's name at the end (it may have been renamed).
    pub name: String,
    pub boots: u32,
    /// Set when this host's side ended it: `^]` on the terminal or a signal.
    pub destroyed: Option<Destroyed>,
    /// The last boot: from its first instruction to its end, and its counters.
    pub elapsed: Duration,
    pub stats: pv::vcpu::Stats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Running,
    Shutdown,
    Crashed,
}

struct St {
    name: String,
    phase: Phase,
    dom: Option<Arc<DomainShared>>,
    hub: Option<Arc<HubState>>,
    /// Kernel thread id of the running vCPU thread (0: none).
    vcpu_tid: i32,
    /// CPU time of the vCPU threads of earlier boots.
    cpu_done_ns: u64,
    started_unix: f64,
    boots: u32,
    last_end: Option<ShutdownReason>,
    destroy: bool,
    destroyed_by: Option<Destroyed>,
}

struct Shared {
    st: Mutex<St>,
    cv: Condvar,
    domid: DomId,
    uuid: [u8; 16],
    memory_mib: u64,
    vcpus: u32,
}

impl Shared {
    fn status(&self) -> Status {
        let st = self.st.lock().unwrap();
        let state = if st.destroy {
            RunState::Dying
        } else {
            match st.phase {
                Phase::Starting => RunState::Starting,
                Phase::Shutdown => RunState::Shutdown,
                Phase::Crashed => RunState::Crashed,
                Phase::Running => match &st.dom {
                    Some(d) if d.is_paused() => RunState::Paused,
                    _ if thread_state(st.vcpu_tid) == Some('R') => RunState::Running,
                    _ => RunState::Blocked,
                },
            }
        };
        let crash_detail = match &st.last_end {
            Some(ShutdownReason::Crash(why)) => Some(why.clone()),
            _ => None,
        };
        Status {
            name: st.name.clone(),
            domid: self.domid,
            state,
            memory_mib: self.memory_mib,
            vcpus: self.vcpus,
            cpu_time_ns: st.cpu_done_ns + thread_cpu_ns(st.vcpu_tid).unwrap_or(0),
            started_unix: st.started_unix,
            boots: st.boots,
            last_end: st.last_end.as_ref().map(|r| r.name().to_string()),
            crash_detail,
            monitor_pid: std::process::id(),
            uuid: Some(crate::store_layout::format_uuid(&self.uuid)),
        }
    }

    /// The running boot's domain and hub, or why there is none.
    fn running(&self) -> Result<(Arc<DomainShared>, Arc<HubState>), String> {
        let st = self.st.lock().unwrap();
        match (&st.dom, &st.hub, st.destroy) {
            (Some(d), Some(h), false) => Ok((d.clone(), h.clone())),
            _ => Err(format!(
                "domain '{}' is not running (state {:?})",
                st.name, st.phase
            )),
        }
    }

    fn destroy(&self, why: Option<Destroyed>) {
        let mut st = self.st.lock().unwrap();
        st.destroy = true;
        if st.destroyed_by.is_none() {
            st.destroyed_by = why;
        }
        if let Some(d) = &st.dom {
            d.request_shutdown(ShutdownReason::Destroyed);
        }
        self.cv.notify_all();
    }

    fn rename(&self, name: &str) -> Result<(), String> {
        if name.is_empty() || name.len() > 64 || name.contains('/') {
            return Err(format!("invalid domain name {name:?}"));
        }
        let mut st = self.st.lock().unwrap();
        st.name = name.to_string();
        if let Some((d, h)) = st.dom.as_ref().zip(st.hub.as_ref()) {
            let uuid = crate::store_layout::format_uuid(&self.uuid);
            for path in [
                format!("/local/domain/{}/name", self.domid),
                format!("/vm/{uuid}/name"),
            ] {
                h.xenstore_write(d, &path, name.as_bytes())
                    .map_err(|e| format!("cannot update xenstore {path}: {e}"))?;
            }
        }
        Ok(())
    }

    fn handle(&self, req: Request) -> Result<serde_json::Value, String> {
        match req {
            Request::Status => Ok(serde_json::to_value(self.status()).expect("status serializes")),
            Request::Shutdown { kind } => {
                let (d, h) = self.running()?;
                let path = format!("/local/domain/{}/control/shutdown", self.domid);
                h.xenstore_write(&d, &path, kind.node_value().as_bytes())
                    .map_err(|e| format!("cannot write {path}: {e}"))?;
                tracing::info!("asked the guest to {}", kind.node_value());
                Ok(serde_json::Value::Null)
            }
            Request::Destroy => {
                tracing::info!("destroy requested");
                self.destroy(None);
                Ok(serde_json::Value::Null)
            }
            Request::Pause => {
                self.running()?.0.pause();
                tracing::info!("paused");
                Ok(serde_json::Value::Null)
            }
            Request::Unpause => {
                self.running()?.0.unpause();
                tracing::info!("unpaused");
                Ok(serde_json::Value::Null)
            }
            Request::Rename { name } => {
                self.rename(&name)?;
                tracing::info!(name, "renamed");
                Ok(serde_json::Value::Null)
            }
            Request::BlockAttach { disk } => {
                let (d, h) = self.running()?;
                let a = disk.to_attach()?;
                h.block_attach(&d, self.domid, &a)
                    .map_err(|e| e.to_string())?;
                tracing::info!(vdev = a.vdev, path = %a.path.display(), "disk attached");
                Ok(serde_json::Value::Null)
            }
            Request::BlockDetach { vdev } => {
                let (d, h) = self.running()?;
                h.block_detach(&d, &vdev).map_err(|e| e.to_string())?;
                tracing::info!(vdev, "disk detach requested");
                Ok(serde_json::Value::Null)
            }
            Request::BlockList => {
                let (_, h) = self.running()?;
                Ok(serde_json::to_value(h.block_list()).expect("block list serializes"))
            }
            Request::NetworkAttach { vif } => {
                let (d, h) = self.running()?;
                h.network_attach(&d, self.domid, &vif)
                    .map_err(|e| e.to_string())?;
                tracing::info!(devid = vif.devid, "network interface attached");
                Ok(serde_json::Value::Null)
            }
            Request::NetworkDetach { dev } => {
                let (d, h) = self.running()?;
                h.network_detach(&d, &dev).map_err(|e| e.to_string())?;
                tracing::info!(dev, "network interface detach requested");
                Ok(serde_json::Value::Null)
            }
            Request::NetworkList => {
                let (_, h) = self.running()?;
                Ok(serde_json::to_value(h.network_list()).expect("network list serializes"))
            }
        }
    }
}

/// Told once whether the first boot started.
pub type ReadyFn = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Runs a detached domain until it is destroyed (by `destroy`, or by its
/// `on_*` action). `ready` is called once: with `Ok` when the guest's first
/// boot started, or with the error that kept it from starting.
pub fn run_detached(
    m: &MonitorSpec,
    hooks: Arc<dyn Hooks>,
    ready: ReadyFn,
) -> Result<MonitorEnd, MonitorError> {
    let mut ready = Some(ready);
    let fail = |ready: &mut Option<ReadyFn>, e: MonitorError| {
        if let Some(r) = ready.take() {
            r(Err(e.to_string()));
        }
        e
    };
    let bind = |path: &PathBuf| {
        let _ = std::fs::remove_file(path);
        UnixListener::bind(path).map_err(|source| MonitorError::Socket {
            path: path.clone(),
            source,
        })
    };
    let control = bind(&m.control_socket).map_err(|e| fail(&mut ready, e))?;
    let console = bind(&m.console_socket).map_err(|e| fail(&mut ready, e))?;
    let log = crate::open_log(&m.console_log).map_err(|e| fail(&mut ready, e))?;

    let mut spec = m.domain.clone();
    // Restarts keep the uuid.
    let uuid = *spec
        .uuid
        .get_or_insert_with(crate::store_layout::generate_uuid);
    let shared = Arc::new(Shared {
        st: Mutex::new(St {
            name: spec.name.clone(),
            phase: Phase::Starting,
            dom: None,
            hub: None,
            vcpu_tid: 0,
            cpu_done_ns: 0,
            started_unix: 0.0,
            boots: 0,
            last_end: None,
            destroy: false,
            destroyed_by: None,
        }),
        cv: Condvar::new(),
        domid: m.domid,
        uuid,
        memory_mib: spec.memory_mib,
        vcpus: 1,
    });
    let viewers = Arc::new(Viewers::default());
    let input: Arc<InputTarget> = Arc::new(Mutex::new(None));
    // SIGTERM, SIGINT and SIGHUP destroy the domain cleanly (entry removed,
    // logs kept). Blocked before any thread exists so that all inherit it.
    let _signals = crate::terminal::BlockedSignals::block();
    {
        let s = shared.clone();
        std::thread::Builder::new()
            .name("rxen-signals".into())
            .spawn(move || watch_signals(&s))
            .map_err(|e| fail(&mut ready, MonitorError::Thread(e)))?;
    }
    {
        let (v, i) = (viewers.clone(), input.clone());
        std::thread::Builder::new()
            .name("rxen-console-srv".into())
            .spawn(move || console_server::serve(console, v, i))
            .map_err(|e| fail(&mut ready, MonitorError::Thread(e)))?;
        let s = shared.clone();
        std::thread::Builder::new()
            .name("rxen-control".into())
            .spawn(move || serve_control(control, s))
            .map_err(|e| fail(&mut ready, MonitorError::Thread(e)))?;
    }

    let raw = if m.terminal {
        RawMode::enter(libc::STDIN_FILENO)
            .map_err(|e| fail(&mut ready, MonitorError::Terminal(e)))?
    } else {
        None
    };
    let mut elapsed = Duration::ZERO;
    let mut last_stats = pv::vcpu::Stats::default();
    let mut last_restart: Option<Instant> = m.restarted.then(Instant::now);
    loop {
        spec.name = shared.st.lock().unwrap().name.clone();
        let sink: Box<dyn Write + Send> = if m.terminal {
            Box::new(Tee(viewers.sink(), Some(Box::new(std::io::stdout()))))
        } else {
            viewers.sink()
        };
        let output = ConsoleOutput::new(Some(sink), log.try_clone().ok());
        let (prepared, hub) = match crate::build(&spec, m.domid, output) {
            Ok(b) => b,
            Err(e) if ready.is_some() => return Err(fail(&mut ready, e)),
            Err(e) => {
                tracing::error!("cannot boot the domain again: {e}");
                let mut st = shared.st.lock().unwrap();
                st.last_end = Some(ShutdownReason::Crash(format!("restart failed: {e}")));
                break;
            }
        };
        let dom = prepared.dom.clone();
        {
            let mut st = shared.st.lock().unwrap();
            if st.destroy {
                break;
            }
            st.dom = Some(dom.clone());
            st.hub = Some(hub.clone());
            st.phase = Phase::Running;
            st.boots += 1;
            st.started_unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
        }
        *input.lock().unwrap() = Some((hub.clone(), dom.clone()));
        if m.start_paused && ready.is_some() {
            dom.pause();
        }
        tracing::info!(
            name = spec.name,
            domid = m.domid,
            memory_mib = spec.memory_mib,
            kernel = %spec.kernel.display(),
            cmdline = spec.cmdline,
            "domain starting"
        );
        let blk = {
            let (h, d) = (hub.clone(), dom.clone());
            std::thread::Builder::new()
                .name("rxen-blk".into())
                .spawn(move || h.run_block(&d))
        };
        let blk = match blk {
            Ok(b) => b,
            Err(e) => return Err(fail(&mut ready, MonitorError::Thread(e))),
        };
        if let Err(e) = hub.start_net(&dom) {
            dom.request_shutdown(ShutdownReason::Destroyed);
            return Err(fail(&mut ready, e.into()));
        }
        let control = Arc::new(Control::default());
        let feed = if m.terminal {
            let (h, d, c) = (hub.clone(), dom.clone(), control.clone());
            let t = std::thread::Builder::new()
                .name("rxen-console-in".into())
                .spawn(move || crate::terminal::feed_console(libc::STDIN_FILENO, h, d, c));
            match t {
                Ok(t) => Some(t),
                Err(e) => {
                    dom.request_shutdown(ShutdownReason::Destroyed);
                    return Err(fail(&mut ready, MonitorError::Thread(e)));
                }
            }
        } else {
            None
        };
        let started = Instant::now();
        let s = shared.clone();
        let vcpu = std::thread::Builder::new()
            .name("rxen-vcpu0".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                s.st.lock().unwrap().vcpu_tid = unsafe { libc::gettid() };
                let (reason, stats) = prepared.run();
                (reason, stats, thread_cpu_ns(0).unwrap_or(0))
            });
        let vcpu = match vcpu {
            Ok(v) => v,
            Err(e) => {
                dom.request_shutdown(ShutdownReason::Destroyed);
                return Err(fail(&mut ready, MonitorError::Thread(e)));
            }
        };
        if let Some(r) = ready.take() {
            r(Ok(()));
        }
        let (reason, stats, cpu_ns) = match vcpu.join() {
            Ok(r) => r,
            Err(_) => (
                ShutdownReason::Crash("the vCPU thread panicked".into()),
                Default::default(),
                0,
            ),
        };
        elapsed = started.elapsed();
        last_stats = stats;
        hub.stop_block();
        hub.stop_net();
        let _ = blk.join();
        control
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(f) = feed {
            let _ = f.join();
        }
        hub.release_xenstore();
        *input.lock().unwrap() = None;
        drop(dom);
        drop(hub);
        let destroyed;
        {
            let mut st = shared.st.lock().unwrap();
            st.cpu_done_ns += cpu_ns;
            st.vcpu_tid = 0;
            st.dom = None;
            st.hub = None;
            st.last_end = Some(reason.clone());
            if st.destroyed_by.is_none() {
                st.destroyed_by = control.destroyed.lock().unwrap().clone();
            }
            destroyed = st.destroy;
        }
        tracing::info!(reason = reason.name(), detail = ?reason, ?stats, "domain stopped");
        let action = if destroyed {
            OnShutdown::Destroy
        } else {
            m.actions.for_reason(&reason)
        };
        let note = |text: &str| {
            let line = format!("\r\n[rxen: domain {} {text}]\r\n", reason.name());
            viewers.publish(line.as_bytes());
            let _ = (&log).write_all(line.as_bytes());
            if m.terminal {
                let mut out = std::io::stdout();
                let _ = out.write_all(line.as_bytes()).and_then(|_| out.flush());
            }
        };
        if let Some(since) = restart_refused(action, last_restart) {
            tracing::error!(
                since_last_restart = ?since,
                "not restarting (on_{} = {}): the domain is restarting too fast (less \
                 than {} s since the last restart); destroying it",
                action_key(&reason),
                action.name(),
                MIN_RESTART_INTERVAL.as_secs()
            );
            note(&format!(
                "- restarting too fast ({:.1} s since the last restart): destroyed",
                since.as_secs_f64()
            ));
            break;
        }
        match action {
            OnShutdown::Destroy => break,
            OnShutdown::Restart => {
                let key = action_key(&reason);
                tracing::info!("restarting (on_{key} = restart) in {RESTART_DELAY:?}");
                note("- restarting");
                let mut st = shared.st.lock().unwrap();
                st.phase = Phase::Starting;
                let wait = Instant::now();
                while !st.destroy && wait.elapsed() < RESTART_DELAY {
                    let left = RESTART_DELAY.saturating_sub(wait.elapsed());
                    st = shared.cv.wait_timeout(st, left).unwrap().0;
                }
                if st.destroy {
                    break;
                }
                last_restart = Some(Instant::now());
                continue;
            }
            OnShutdown::Preserve | OnShutdown::RenameRestart => {
                if action == OnShutdown::RenameRestart {
                    let name = shared.st.lock().unwrap().name.clone();
                    match hooks.rename_restart(&name) {
                        Ok(new) => {
                            tracing::info!(new, "renamed; a new domain was started as {name}");
                            shared.st.lock().unwrap().name = new;
                        }
                        Err(e) => tracing::error!("rename-restart failed: {e}"),
                    }
                }
                note("- preserved until destroyed");
                // `create -F -c`: ^] on the terminal still ends it.
                let escape = if m.terminal {
                    let s = shared.clone();
                    std::thread::Builder::new()
                        .name("rxen-escape".into())
                        .spawn(move || {
                            let stop = || s.st.lock().unwrap().destroy;
                            if crate::terminal::wait_for_escape(libc::STDIN_FILENO, stop) {
                                tracing::info!("^] on the terminal: destroying the domain");
                                s.destroy(Some(Destroyed::Escape));
                            }
                        })
                        .map_err(|e| tracing::warn!("^] will not end the domain: {e}"))
                        .ok()
                } else {
                    None
                };
                let mut st = shared.st.lock().unwrap();
                st.phase = if matches!(reason, ShutdownReason::Crash(_) | ShutdownReason::Watchdog)
                {
                    Phase::Crashed
                } else {
                    Phase::Shutdown
                };
                while !st.destroy {
                    st = shared.cv.wait(st).unwrap();
                }
                drop(st);
                if let Some(t) = escape {
                    let _ = t.join();
                }
                break;
            }
        }
    }
    drop(raw);
    let st = shared.st.lock().unwrap();
    Ok(MonitorEnd {
        last: st.last_end.clone(),
        name: st.name.clone(),
        boots: st.boots,
        destroyed: st.destroyed_by.clone(),
        elapsed,
        stats: last_stats,
    })
}

/// Console output to the viewers and this process's terminal (`-F -c`);
/// a terminal that fails (closed stdout) is dropped, the viewers stay.
struct Tee(Box<dyn Write + Send>, Option<Box<dyn Write + Send>>);

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.write_all(buf);
        if let Some(t) = &mut self.1 {
            if let Err(e) = t.write_all(buf).and_then(|_| t.flush()) {
                tracing::warn!("console output to the terminal stopped: {e}");
                self.1 = None;
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether `action` is a restart this soon after the last one (`None`:
/// none yet) that [`MIN_RESTART_INTERVAL`] refuses; if so, how soon.
/// `rename-restart` counts as well as `restart`: a guest that crashes at
/// once would otherwise make domain after domain.
fn restart_refused(action: OnShutdown, last_restart: Option<Instant>) -> Option<Duration> {
    if !matches!(action, OnShutdown::Restart | OnShutdown::RenameRestart) {
        return None;
    }
    last_restart
        .map(|t| t.elapsed())
        .filter(|since| *since < MIN_RESTART_INTERVAL)
}

fn action_key(reason: &ShutdownReason) -> &'static str {
    match reason {
        ShutdownReason::Poweroff => "poweroff",
        ShutdownReason::Reboot => "reboot",
        _ => "crash",
    }
}

/// Destroys the domain on the first SIGTERM, SIGINT or SIGHUP.
fn watch_signals(shared: &Shared) {
    let set = crate::terminal::signal_set();
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: valid set; sigwait stores the signal number in `sig`.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        let name = match sig {
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            _ => "SIGHUP",
        };
        tracing::info!(signal = name, "signal received: destroying the domain");
        shared.destroy(Some(Destroyed::Signal(name)));
    }
}

fn serve_control(listener: UnixListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let s = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("rxen-control-conn".into())
                    .spawn(move || control_conn(stream, &s));
                if let Err(e) = spawned {
                    tracing::warn!("cannot start a control connection thread: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("control socket accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// An idle control connection is closed after this long, so a client that
/// connects and says nothing does not keep a thread forever.
const CONTROL_IDLE: Duration = Duration::from_secs(300);

fn control_conn(stream: UnixStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(CONTROL_IDLE));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let resp = match RequestMsg::parse(line.trim_end()) {
            Ok(req) => match shared.handle(req) {
                Ok(v) => ResponseMsg::ok(v),
                Err(e) => ResponseMsg::error(e),
            },
            Err(e) => ResponseMsg::error(e.to_string()),
        };
        if out.write_all(resp.to_line().as_bytes()).is_err() {
            return;
        }
    }
}

/// CPU time of thread `tid` of this process (0: the calling thread), ns.
fn thread_cpu_ns(tid: i32) -> Option<u64> {
    if tid == 0 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes one timespec.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
            return None;
        }
        return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
    }
    // schedstat: time on CPU (ns), time waiting, timeslices.
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The scheduler state letter (`R`, `S`, ...) of thread `tid`.
fn thread_state(tid: i32) -> Option<char> {
    if tid == 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // "tid (comm) S ...": the comm may hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// Writes `line` to a ready pipe (used by the toolstack's monitor entry).
pub fn write_ready(mut pipe: File, result: &Result<(), String>) {
    let msg = match result {
        Ok(()) => ResponseMsg::ok(serde_json::Value::Null),
        Err(e) => ResponseMsg::error(e.clone()),
    };
    let _ = pipe.write_all(msg.to_line().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_follow_the_reason() {
        let a = Actions {
            on_poweroff: OnShutdown::Destroy,
            on_reboot: OnShutdown::Restart,
            on_crash: OnShutdown::Preserve,
        };
        assert_eq!(a.for_reason(&ShutdownReason::Poweroff), OnShutdown::Destroy);
        assert_eq!(a.for_reason(&ShutdownReason::Reboot), OnShutdown::Restart);
        assert_eq!(
            a.for_reason(&ShutdownReason::Crash("x".into())),
            OnShutdown::Preserve
        );
        assert_eq!(
            a.for_reason(&ShutdownReason::Watchdog),
            OnShutdown::Preserve
        );
        assert_eq!(
            a.for_reason(&ShutdownReason::Destroyed),
            OnShutdown::Destroy
        );
    }

    #[test]
    fn restarts_too_soon_are_refused_for_restart_and_rename_restart() {
        let long_ago = Instant::now().checked_sub(MIN_RESTART_INTERVAL + Duration::from_secs(1));
        for action in [OnShutdown::Restart, OnShutdown::RenameRestart] {
            // The first restart of a domain is allowed.
            assert_eq!(restart_refused(action, None), None, "{action:?}");
            // One right after the last is refused.
            assert!(
                restart_refused(action, Some(Instant::now())).is_some(),
                "{action:?}"
            );
            if long_ago.is_some() {
                assert_eq!(restart_refused(action, long_ago), None, "{action:?}");
            }
        }
        for action in [OnShutdown::Destroy, OnShutdown::Preserve] {
            assert_eq!(restart_refused(action, Some(Instant::now())), None);
        }
    }

    #[test]
    fn thread_accounting_reads_proc() {
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() };
        let t0 = thread_cpu_ns(me).unwrap();
        // Busy for 50 ms of this thread's CPU time: schedstat advances only
        // at scheduler ticks, which a few milliseconds of work may not span.
        let c0 = thread_cpu_ns(0).unwrap();
        let mut x = 0u64;
        while thread_cpu_ns(0).unwrap() < c0 + 50_000_000 {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        assert!(thread_cpu_ns(me).unwrap() > t0);
        assert_eq!(thread_state(me), Some('R'));
        assert!(thread_cpu_ns(0).unwrap() > 0);
    }
}
