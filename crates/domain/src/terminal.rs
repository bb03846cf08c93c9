//! The user's terminal: raw mode while a console is attached, the stdin
//! reader feeding the console, and signals that end the domain.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pv::domain::DomainShared;

use crate::hub::HubState;

/// `^]`, the console escape of `xl console`.
pub const ESCAPE: u8 = 0x1d;

/// A terminal in raw mode; restores the saved settings when dropped.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Puts `fd` in raw mode if it is a terminal (`None` if it is not), as
    /// `xl console` does: bytes pass unprocessed both ways (no echo, no line
    /// editing, no signals from ^C/^Z, no CR/NL translation); the guest's
    /// own tty does that work.
    pub fn enter(fd: RawFd) -> std::io::Result<Option<RawMode>> {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(fd) } != 1 {
            return Ok(None);
        }
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid termios to write into.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut raw = saved;
        raw.c_iflag &= !(libc::IGNBRK
            | libc::BRKINT
            | libc::PARMRK
            | libc::ISTRIP
            | libc::INLCR
            | libc::IGNCR
            | libc::ICRNL
            | libc::IXON);
        raw.c_oflag &= !libc::OPOST;
        raw.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN);
        raw.c_cflag &= !(libc::CSIZE | libc::PARENB);
        raw.c_cflag |= libc::CS8;
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: `raw` is a valid termios derived from the current one.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Some(RawMode { fd, saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read from the same descriptor.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// Why the user ended the domain from the host side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destroyed {
    /// `^]` on the console.
    Escape,
    /// A signal (SIGINT, SIGTERM, SIGHUP) to rxen.
    Signal(&'static str),
}

impl std::fmt::Display for Destroyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destroyed::Escape => f.write_str("the console escape ^]"),
            Destroyed::Signal(s) => write!(f, "{s}"),
        }
    }
}

/// Shared between the monitor's helper threads.
#[derive(Default)]
pub struct Control {
    pub stop: AtomicBool,
    pub destroyed: Mutex<Option<Destroyed>>,
}

impl Control {
    /// Records why and stops the domain (the first cause wins).
    pub fn destroy(&self, dom: &DomainShared, why: Destroyed) {
        let mut d = self.destroyed.lock().unwrap();
        if d.is_none() {
            tracing::info!("destroying the domain: {why}");
            dom.request_shutdown(pv::domain::ShutdownReason::Destroyed);
            *d = Some(why);
        }
    }
}

const POLL: Duration = Duration::from_millis(200);

/// Reads `fd` (stdin) and feeds the bytes to the guest's console until the
/// domain stops, input ends, or the user types `^]` (which destroys the
/// domain). Also retries input that did not fit in the ring.
pub fn feed_console(fd: RawFd, hub: Arc<HubState>, dom: Arc<DomainShared>, control: Arc<Control>) {
    let mut buf = [0u8; 1024];
    let mut eof = false;
    while !control.stop.load(Ordering::SeqCst) && !dom.stopping.load(Ordering::SeqCst) {
        if eof {
            hub.flush_console_input(&dom);
            std::thread::sleep(POLL);
            continue;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, POLL.as_millis() as i32) };
        if r <= 0 {
            hub.flush_console_input(&dom);
            continue;
        }
        // SAFETY: reads into `buf`, at most its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) {
                continue;
            }
            tracing::warn!("console input stopped: cannot read stdin: {e}");
            eof = true;
            continue;
        }
        if n == 0 {
            tracing::info!("console input ended (end of stdin); the domain keeps running");
            eof = true;
            continue;
        }
        let bytes = &buf[..n as usize];
        match bytes.iter().position(|&b| b == ESCAPE) {
            Some(i) => {
                hub.console_input(&dom, &bytes[..i]);
                control.destroy(&dom, Destroyed::Escape);
                return;
            }
            None => hub.console_input(&dom, bytes),
        }
    }
}

/// Reads `fd` (the terminal, between boots: nothing is fed to a guest) until
/// `^]` is typed, returning true, or until `stop()` holds or input ends,
/// returning false. `stop` is checked every [`POLL`].
pub fn wait_for_escape(fd: RawFd, stop: impl Fn() -> bool) -> bool {
    let mut buf = [0u8; 256];
    while !stop() {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, POLL.as_millis() as i32) } <= 0 {
            continue;
        }
        // SAFETY: reads into `buf`, at most its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            return false;
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) {
                continue;
            }
            return false;
        }
        if buf[..n as usize].contains(&ESCAPE) {
            return true;
        }
    }
    false
}

/// The signals that end a foreground domain.
pub(crate) fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// SIGINT, SIGTERM and SIGHUP blocked on the calling thread (and the threads
/// it spawns) until dropped, so a signal thread (the monitor's) receives them instead of
/// the process dying with the terminal in raw mode.
pub struct BlockedSignals {
    old: libc::sigset_t,
}

impl BlockedSignals {
    pub fn block() -> BlockedSignals {
        let set = signal_set();
        // SAFETY: plain data, filled by pthread_sigmask.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid sets; only this thread's mask changes.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
        BlockedSignals { old }
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // Swallow signals that arrived after the domain ended (a second ^C),
        // so unblocking does not kill the process on its way out.
        let set = signal_set();
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid set and timeout; no siginfo wanted.
        while unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) } > 0 {}
        // SAFETY: restores the mask saved by `block` on the same thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    fn pipe() -> (std::fs::File, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two new descriptors into `fds`.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        use std::os::fd::FromRawFd;
        // SAFETY: both descriptors were just created and are owned here.
        unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        }
    }

    #[test]
    fn escape_is_seen_among_other_input() {
        let (r, mut w) = pipe();
        w.write_all(b"ls\r").unwrap();
        w.write_all(b"x\x1dy").unwrap();
        assert!(wait_for_escape(r.as_raw_fd(), || false));
    }

    #[test]
    fn waiting_for_escape_ends_on_stop_or_end_of_input() {
        let (r, w) = pipe();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let t = s.spawn(|| wait_for_escape(r.as_raw_fd(), || stop.load(Ordering::SeqCst)));
            std::thread::sleep(Duration::from_millis(50));
            stop.store(true, Ordering::SeqCst);
            assert!(!t.join().unwrap());
        });
        drop(w);
        assert!(!wait_for_escape(r.as_raw_fd(), || false));
    }
}
