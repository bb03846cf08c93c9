//! The host's xenstored: one store shared by every domain and the
//! toolstack, as in Xen. It is `rxen xenstored`, a daemon of its own,
//! started on demand by the first domain ([`ensure_running`]) and living on
//! after any single domain ends.
//!
//! - Socket: as root with the default state directory, Xen's default
//!   [`xenstore::unix::DEFAULT_SOCKET`] (`/var/run/xenstored/socket`), so
//!   Debian's `xenstore-utils` work with no setup; with another state
//!   directory, `STATE/xenstored/socket`, so separate state directories
//!   (tests) have separate stores.
//! - Exactly one daemon per socket: it holds an exclusive `flock` on
//!   `SOCKET.rxen-lock` for its whole life; a second one started by a
//!   racing `create` finds the lock taken and exits at once.
//! - It detaches (own session and process group) and ends when its socket
//!   is removed (its state directory deleted) or, outside the default state
//!   directory, after [`IDLE_EXIT`] without any connection.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xenstore::unix::DEFAULT_SOCKET;

/// How long a daemon outside the default state directory stays up with no
/// connection at all (no domain, no client).
pub const IDLE_EXIT: Duration = Duration::from_secs(60);

/// How long [`ensure_running`] waits for a daemon it started to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The default state directory of root (see [`crate::state::state_dir`]).
const ROOT_STATE: &str = "/run/rxen";

/// Errors finding or starting the daemon.
#[derive(Debug, thiserror::Error)]
pub enum XenstoredError {
    #[error("cannot start xenstored ({}): {source}", socket.display())]
    Start { socket: PathBuf, source: io::Error },
    #[error("xenstored did not start listening on {} within {} s (its log: {})",
        socket.display(), START_TIMEOUT.as_secs(), log.display())]
    NotListening { socket: PathBuf, log: PathBuf },
}

/// The socket of the store that belongs to state directory `state`.
pub fn socket_path(state: &Path) -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && state == Path::new(ROOT_STATE) {
        PathBuf::from(DEFAULT_SOCKET)
    } else {
        state.join("xenstored").join("socket")
    }
}

/// The daemon's log file for state directory `state`.
pub fn log_path(state: &Path) -> PathBuf {
    state.join("xenstored.log")
}

fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".rxen-lock");
    PathBuf::from(name)
}

/// Whether something listens on `socket`.
pub fn is_running(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

/// Returns the socket of state directory `state`'s store, starting the
/// daemon (this binary, `rxen xenstored`) if nothing listens there yet.
pub fn ensure_running(state: &Path) -> Result<PathBuf, XenstoredError> {
    let socket = socket_path(state);
    if is_running(&socket) {
        return Ok(socket);
    }
    let log = log_path(state);
    let start = |source| XenstoredError::Start {
        socket: socket.clone(),
        source,
    };
    std::fs::create_dir_all(state).map_err(start)?;
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log)
        .map_err(start)?;
    let exe = std::env::current_exe().map_err(start)?;
    let mut cmd = Command::new(exe);
    cmd.arg("xenstored")
        .arg("--socket")
        .arg(&socket)
        .arg("--detach");
    if socket != Path::new(DEFAULT_SOCKET) {
        cmd.arg("--exit-when-idle");
    }
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().map_err(start)?)
        .stderr(out);
    // SAFETY: setsid is async-signal-safe; it runs in the child between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    // `--detach` forks and its first process exits at once: wait for it,
    // so no zombie is left behind; the daemon is the grandchild.
    let status = cmd.status().map_err(start)?;
    if !status.success() {
        tracing::warn!(%status, "xenstored starter exited with an error");
    }
    let t = Instant::now();
    while t.elapsed() < START_TIMEOUT {
        if is_running(&socket) {
            tracing::info!(socket = %socket.display(), "xenstored started");
            return Ok(socket);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(XenstoredError::NotListening { socket, log })
}

/// How [`run_daemon`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonEnd {
    /// Another daemon holds the socket's lock.
    AlreadyRunning,
    /// Its socket was removed or replaced.
    SocketGone,
    /// No connection for [`IDLE_EXIT`].
    Idle,
}

/// Runs the daemon on `socket` until its socket goes away (or it idles out,
/// with `exit_when_idle`). Returns at once if another daemon holds the lock.
pub fn run_daemon(socket: &Path, exit_when_idle: bool) -> io::Result<DaemonEnd> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(lock_path(socket))?;
    if !try_lock(&lock)? {
        tracing::info!(socket = %socket.display(), "another xenstored holds the lock");
        return Ok(DaemonEnd::AlreadyRunning);
    }
    let server = xenstore::unix::serve(socket)?;
    let Ok(ino) = std::fs::metadata(socket).map(|m| m.ino()) else {
        // Removed already (its directory went).
        return Ok(DaemonEnd::SocketGone);
    };
    tracing::info!(socket = %socket.display(), pid = std::process::id(), "xenstored running");
    let store = server.store();
    let mut idle_since: Option<Instant> = None;
    let end = loop {
        std::thread::sleep(Duration::from_millis(500));
        match std::fs::metadata(socket) {
            Ok(m) if m.ino() == ino => {}
            _ => break DaemonEnd::SocketGone,
        }
        let conns = store.lock().connection_count();
        if conns > 0 || !exit_when_idle {
            idle_since = None;
            continue;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= IDLE_EXIT {
            break DaemonEnd::Idle;
        }
    };
    tracing::info!(?end, "xenstored stopping");
    drop(server);
    drop(lock);
    Ok(end)
}

fn try_lock(f: &File) -> io::Result<bool> {
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Forks: the parent exits with status 0 at once and the child carries on
/// (as the daemon). Call it before any thread exists. The daemon also lets
/// every signal through again: a monitor that starts it has SIGTERM and
/// friends blocked, and the mask is inherited across fork and exec (the
/// daemon would ignore `kill`).
pub fn detach() -> io::Result<()> {
    // SAFETY: sigemptyset initialises the set; sigprocmask only changes
    // this thread's (the only thread's) mask.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
    // SAFETY: fork in a process that has no other threads yet (the caller's
    // contract); the child only continues this single-threaded program.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // A daemon outlives whoever started it: keep none of the
            // descriptors it inherited beyond stdio (one held a test
            // harness's pipe open, so its reader never saw the end).
            // SAFETY: close_range on descriptors this process owns; nothing
            // above stdio is in use yet in this single-threaded child.
            unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
            Ok(())
        }
        _ => std::process::exit(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_live_in_the_state_directory_unless_it_is_roots_default() {
        let s = socket_path(Path::new("/tmp/x/state"));
        assert_eq!(s, Path::new("/tmp/x/state/xenstored/socket"));
        assert_eq!(
            lock_path(&s),
            Path::new("/tmp/x/state/xenstored/socket.rxen-lock")
        );
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(
                socket_path(Path::new(ROOT_STATE)),
                Path::new(DEFAULT_SOCKET)
            );
        }
    }

    #[test]
    fn one_daemon_per_socket_and_it_ends_with_its_directory() {
        let dir = std::env::temp_dir().join(format!("rxen-xsd-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let socket = dir.join("socket");
        let s = socket.clone();
        let first = std::thread::spawn(move || run_daemon(&s, false).unwrap());
        let t = Instant::now();
        while !is_running(&socket) {
            assert!(t.elapsed() < Duration::from_secs(10), "no daemon");
            std::thread::sleep(Duration::from_millis(10));
        }
        // flock locks belong to open files: a second open in this process
        // conflicts as a second process would.
        assert_eq!(
            run_daemon(&socket, false).unwrap(),
            DaemonEnd::AlreadyRunning
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(first.join().unwrap(), DaemonEnd::SocketGone);
    }
}
