//! Unix-socket front end: host tools speak the wire protocol on a socket and
//! act as dom0 (`xenstore-read`, `xenstore-write`, `xenstore-ls`, ...).
//!
//! Debian's `libxenstore` (Xen 4.17) connects to `$XENSTORED_PATH` if set,
//! else `/var/run/xenstored/socket` (`$XENSTORED_RUNDIR/socket`), falling
//! back to `/proc/xen/xenbus`; it checks that the path is a socket, then
//! speaks the same protocol as on a ring.
//!
//! Plain threads, no async: per connection, a reader thread decodes and
//! handles requests and a writer thread sends replies and watch events. The
//! store sits behind one mutex; each writer waits on a condition variable of
//! its own, woken only when something was queued for its connection (with
//! many domains, waking every writer on every request would cost more than
//! the requests).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::conn::ConnId;
use crate::perms::DOM0;
use crate::server::Xenstore;
use crate::wire::Decoder;

/// Xen's default socket path.
pub const DEFAULT_SOCKET: &str = "/var/run/xenstored/socket";

/// A [`Xenstore`] shared between transports.
#[derive(Debug, Default)]
pub struct SharedStore {
    xs: Mutex<Xenstore>,
    /// The writers' wake-ups, by connection.
    writers: Mutex<HashMap<ConnId, Arc<Condvar>>>,
    /// Readers waiting for their connection's queued replies to be sent
    /// (see [`MAX_QUEUED_REPLIES`]).
    drained: Condvar,
}

/// Replies a connection may have queued before the daemon stops reading
/// its requests until they are sent: a client (a guest, through its
/// monitor's relay) that sends requests but does not read the replies
/// would otherwise grow the host's daemon without bound (a 30-byte READ
/// can answer 4 KiB).
pub const MAX_QUEUED_REPLIES: usize = 64;

impl SharedStore {
    /// Shares `xs`.
    pub fn new(xs: Xenstore) -> Arc<SharedStore> {
        Arc::new(SharedStore {
            xs: Mutex::new(xs),
            writers: Mutex::new(HashMap::new()),
            drained: Condvar::new(),
        })
    }

    /// Locks the store. Call [`SharedStore::notify`] after changing it.
    pub fn lock(&self) -> MutexGuard<'_, Xenstore> {
        // A panic while holding the lock leaves the store consistent enough
        // to keep serving (every operation validates before mutating).
        self.xs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the socket writers that have output pending.
    pub fn notify(&self) {
        let pending = self.lock().conns_with_output();
        let writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        for conn in pending {
            if let Some(cv) = writers.get(&conn) {
                cv.notify_one();
            }
        }
    }

    /// Wakes the writer of `conn` (e.g. its connection closed).
    fn wake(&self, conn: ConnId) {
        let writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cv) = writers.get(&conn) {
            cv.notify_one();
        }
    }

    fn writer(&self, conn: ConnId) -> Arc<Condvar> {
        let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        writers.entry(conn).or_default().clone()
    }
}

/// A running socket server; stops (and removes the socket) when dropped.
#[derive(Debug)]
pub struct UnixServer {
    path: PathBuf,
    /// The socket file's inode: the file is removed at the end only if it
    /// is still this server's (another daemon may have bound the path anew
    /// after it was deleted).
    ino: u64,
    /// A second handle on the listening socket: shutting it down wakes the
    /// accept loop whatever became of the path.
    listener: UnixListener,
    shared: Arc<SharedStore>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    clients: Clients,
}

/// Open client sockets, so shutdown can close them.
type Clients = Arc<Mutex<HashMap<u64, UnixStream>>>;

/// Serves a new, empty store on a socket at `path`.
pub fn serve(path: impl AsRef<Path>) -> io::Result<UnixServer> {
    serve_shared(path, SharedStore::new(Xenstore::default()))
}

/// Serves `shared` on a socket at `path` (created mode 0600, parent
/// directories as needed). A stale socket file is replaced; a live one is
/// `AddrInUse`.
pub fn serve_shared(path: impl AsRef<Path>, shared: Arc<SharedStore>) -> io::Result<UnixServer> {
    let path = path.as_ref().to_path_buf();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if UnixStream::connect(&path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("a xenstored already listens on {}", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let ino = std::fs::metadata(&path)?.ino();
    let waker = listener.try_clone()?;
    let stop = Arc::new(AtomicBool::new(false));
    let clients = Clients::default();
    let accept = {
        let (shared, stop, clients) = (shared.clone(), stop.clone(), clients.clone());
        std::thread::Builder::new()
            .name("xenstore-accept".into())
            .spawn(move || accept_loop(listener, shared, stop, clients))?
    };
    tracing::info!(path = %path.display(), "xenstore socket listening");
    Ok(UnixServer {
        path,
        ino,
        listener: waker,
        shared,
        stop,
        accept: Some(accept),
        clients,
    })
}

impl UnixServer {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store being served.
    pub fn store(&self) -> Arc<SharedStore> {
        self.shared.clone()
    }
}

impl Drop for UnixServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop: shutdown() on a listening socket makes a
        // blocked accept() fail. (Connecting to the path instead hung when
        // the path had been deleted and bound anew by another daemon: the
        // connection went there and this loop slept on.)
        // SAFETY: shutdown on a socket descriptor this server owns.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for (_, c) in self
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn accept_loop(
    listener: UnixListener,
    shared: Arc<SharedStore>,
    stop: Arc<AtomicBool>,
    clients: Clients,
) {
    for (key, stream) in (0u64..).zip(listener.incoming()) {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "xenstore accept failed");
                continue;
            }
        };
        if let Ok(c) = stream.try_clone() {
            clients
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, c);
        }
        let (shared, clients) = (shared.clone(), clients.clone());
        let spawned = std::thread::Builder::new()
            .name("xenstore-client".into())
            .spawn(move || {
                serve_client(stream, shared);
                clients
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a client thread");
        }
    }
}

fn serve_client(stream: UnixStream, shared: Arc<SharedStore>) {
    let conn = shared.lock().connect(DOM0);
    let writer_gone = Arc::new(AtomicBool::new(false));
    let writer = stream.try_clone().and_then(|w| {
        let (shared, gone) = (shared.clone(), writer_gone.clone());
        std::thread::Builder::new()
            .name("xenstore-client-out".into())
            .spawn(move || write_loop(w, conn, shared, gone))
    });
    let writer = match writer {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a writer thread");
            shared.lock().disconnect(conn);
            return;
        }
    };
    read_loop(&stream, conn, &shared, &writer_gone);
    shared.lock().disconnect(conn);
    // Closing may have fired watches (a guest connection releases its
    // domain), and this connection's writer must see it is closed.
    shared.notify();
    shared.wake(conn);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    shared
        .writers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&conn);
}

fn read_loop(
    mut stream: &UnixStream,
    conn: ConnId,
    shared: &SharedStore,
    writer_gone: &AtomicBool,
) {
    let mut decoder = Decoder::new();
    let mut buf = [0u8; 4096];
    loop {
        {
            let mut xs = shared.lock();
            while xs.queued_replies(conn) >= MAX_QUEUED_REPLIES
                && !writer_gone.load(Ordering::SeqCst)
            {
                xs = shared.drained.wait(xs).unwrap_or_else(|e| e.into_inner());
            }
        }
        if writer_gone.load(Ordering::SeqCst) {
            return;
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        decoder.push(&buf[..n]);
        loop {
            match decoder.next_message() {
                Ok(Some(msg)) => {
                    shared.lock().submit(conn, &msg);
                    shared.notify();
                }
                Ok(None) => break,
                Err(e) => {
                    // Like xenstored: the stream cannot be resynchronised.
                    tracing::warn!(error = %e, "dropping xenstore socket client");
                    return;
                }
            }
        }
    }
}

fn write_loop(
    mut stream: UnixStream,
    conn: ConnId,
    shared: Arc<SharedStore>,
    gone: Arc<AtomicBool>,
) {
    /// Tells the reader, which may be waiting for this writer to drain its
    /// replies, that the writer is gone (also if it panicked).
    struct Gone<'a>(&'a SharedStore, &'a AtomicBool);
    impl Drop for Gone<'_> {
        fn drop(&mut self) {
            let _g = self.0.lock();
            self.1.store(true, Ordering::SeqCst);
            self.0.drained.notify_all();
        }
    }
    let _gone = Gone(&shared, &gone);
    send_loop(&mut stream, conn, &shared);
}

fn send_loop(stream: &mut UnixStream, conn: ConnId, shared: &SharedStore) {
    let cv = shared.writer(conn);
    loop {
        let out = {
            let mut xs = shared.lock();
            loop {
                if !xs.is_connected(conn) {
                    return;
                }
                if xs.has_output(conn) {
                    let out = xs.take_output(conn);
                    shared.drained.notify_all();
                    break out;
                }
                xs = cv.wait(xs).unwrap_or_else(|e| e.into_inner());
            }
        };
        let mut bytes = Vec::new();
        for m in &out {
            m.encode_into(&mut bytes);
        }
        if stream.write_all(&bytes).is_err() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that sends requests and never reads the replies (a guest
    /// ignoring its ring, through its relay) is stopped from sending more
    /// after a bounded number, and the daemon serves others meanwhile and
    /// still stops cleanly.
    #[test]
    fn a_client_that_never_reads_its_replies_is_held_back() {
        use crate::wire::{Message, MsgType};
        use crate::StoreOps;
        let dir = std::env::temp_dir().join(format!("xs-unix-noread-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("socket");
        let srv = serve(&path).expect("serve");
        let mut other = crate::XsClient::connect(&path).unwrap();
        other.write("/big", &[b'x'; 4000]).unwrap();

        let mut hog = UnixStream::connect(&path).unwrap();
        hog.set_nonblocking(true).unwrap();
        let read = Message::new(MsgType::Read, 1, 0, &b"/big\0"[..]).encode();
        let mut sent = 0usize;
        let mut pending: &[u8] = &read;
        // Held back: the socket stays full for half a second (a daemon
        // that keeps reading empties it within milliseconds).
        let mut full_since: Option<std::time::Instant> = None;
        let held_back = loop {
            match hog.write(pending) {
                Ok(n) => {
                    full_since = None;
                    pending = &pending[n..];
                    if pending.is_empty() {
                        sent += 1;
                        pending = &read;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let t = *full_since.get_or_insert_with(std::time::Instant::now);
                    if t.elapsed() > std::time::Duration::from_millis(500) {
                        break true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("write: {e}"),
            }
            // Unbounded, the daemon would take these (400 MiB of replies).
            if sent == 100_000 {
                break false;
            }
        };
        assert!(
            held_back,
            "the daemon read {sent} requests whose replies nobody took"
        );
        // Another client is served meanwhile.
        assert_eq!(other.read("/big").unwrap().len(), 4000);
        drop(hog);
        other.write("/after", b"1").unwrap();
        assert_eq!(other.read("/after").unwrap(), b"1");
        drop(srv);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A server whose socket path was deleted and bound anew by another
    /// server stops at once when dropped, and leaves the other's socket
    /// alone (the daemon that hung here outlived its state directory).
    #[test]
    fn a_server_whose_path_was_taken_over_stops_and_leaves_the_new_socket() {
        let dir = std::env::temp_dir().join(format!("xs-unix-takeover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("socket");
        let old = serve(&path).expect("serve");
        std::fs::remove_dir_all(&dir).unwrap();
        let new = serve(&path).expect("serve again on the same path");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(old);
            let _ = tx.send(());
        });
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("dropping the old server hung");
        assert!(path.exists(), "the old server removed the new one's socket");
        UnixStream::connect(&path).expect("the new server still accepts");
        drop(new);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
