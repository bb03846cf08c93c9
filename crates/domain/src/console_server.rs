//! The console of a detached domain, served to any number of viewers over a
//! Unix socket (`STATE/ID/console.sock`); `rxen console` is one viewer.
//!
//! Handshake: the viewer sends one JSON line `{"version": 1, "replay":
//! N}`, asking for up to `N` bytes of recent output (0: none); the monitor
//! answers with a control-protocol response line (`{"version":1,"ok":null}`).
//! After that the socket carries raw console bytes: guest output to the
//! viewer, the viewer's keystrokes to the guest. A viewer detaches by
//! closing the socket (the escape key is the viewer's business); the domain
//! keeps running. A viewer that cannot keep up is dropped rather than
//! stalling the guest.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pv::domain::DomainShared;
use serde::{Deserialize, Serialize};

use crate::control::{ResponseMsg, MAX_LINE, VERSION};
use crate::hub::HubState;

/// Recent output kept for viewers that ask for a replay.
pub const HISTORY: usize = 128 * 1024;

/// Output chunks queued for one viewer before it counts as stuck.
const QUEUE: usize = 4096;

/// A viewer's handshake line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    /// Bytes of recent output wanted first.
    #[serde(default)]
    pub replay: usize,
}

#[derive(Default)]
struct Inner {
    history: VecDeque<u8>,
    viewers: Vec<SyncSender<Vec<u8>>>,
}

/// Fans console output out to the connected viewers, keeping recent
/// history.
#[derive(Default)]
pub struct Viewers {
    inner: Mutex<Inner>,
}

impl Viewers {
    /// Sends `bytes` to every viewer and into the history.
    pub fn publish(&self, bytes: &[u8]) {
        let mut g = self.inner.lock().unwrap();
        g.history.extend(bytes);
        let over = g.history.len().saturating_sub(HISTORY);
        g.history.drain(..over);
        g.viewers.retain(|tx| match tx.try_send(bytes.to_vec()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                tracing::warn!("a console viewer is not reading; dropping it");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }

    /// A new viewer: up to `replay` bytes of history, then live output.
    pub fn subscribe(&self, replay: usize) -> (Vec<u8>, Receiver<Vec<u8>>) {
        let (tx, rx) = sync_channel(QUEUE);
        let mut g = self.inner.lock().unwrap();
        let skip = g.history.len().saturating_sub(replay);
        let past = g.history.iter().skip(skip).copied().collect();
        g.viewers.push(tx);
        (past, rx)
    }

    pub fn count(&self) -> usize {
        self.inner.lock().unwrap().viewers.len()
    }

    /// A writer for [`crate::ConsoleOutput`]'s terminal slot.
    pub fn sink(self: &Arc<Self>) -> Box<dyn Write + Send> {
        Box::new(Sink(self.clone()))
    }
}

struct Sink(Arc<Viewers>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.publish(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where viewers' keystrokes go: the current boot's console (it changes
/// when the domain restarts; `None` while it is not running).
pub type InputTarget = Mutex<Option<(Arc<HubState>, Arc<DomainShared>)>>;

/// Accepts viewers on `listener` until the process ends.
pub fn serve(listener: UnixListener, viewers: Arc<Viewers>, input: Arc<InputTarget>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let (v, i) = (viewers.clone(), input.clone());
                let spawned = std::thread::Builder::new()
                    .name("rxen-console-viewer".into())
                    .spawn(move || {
                        if let Err(e) = viewer(stream, v, i) {
                            tracing::debug!("console viewer ended: {e}");
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!("cannot start a console viewer thread: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("console socket accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn viewer(
    stream: UnixStream,
    viewers: Arc<Viewers>,
    input: Arc<InputTarget>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.by_ref().take(MAX_LINE as u64).read_line(&mut line)?;
    let mut out = stream.try_clone()?;
    let hello = match serde_json::from_str::<Hello>(line.trim_end()) {
        Ok(h) if h.version == VERSION => h,
        Ok(h) => {
            let msg = format!(
                "console protocol version {} is not spoken here (this side speaks {VERSION})",
                h.version
            );
            out.write_all(ResponseMsg::error(msg).to_line().as_bytes())?;
            return Ok(());
        }
        Err(e) => {
            out.write_all(
                ResponseMsg::error(format!("malformed hello: {e}"))
                    .to_line()
                    .as_bytes(),
            )?;
            return Ok(());
        }
    };
    let (past, rx) = viewers.subscribe(hello.replay);
    out.write_all(
        ResponseMsg::ok(serde_json::Value::Null)
            .to_line()
            .as_bytes(),
    )?;
    out.write_all(&past)?;

    // Output: a writer thread per viewer, so a slow one only hurts itself.
    let writer = std::thread::Builder::new()
        .name("rxen-console-out".into())
        .spawn(move || {
            for chunk in rx {
                if out.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = out.shutdown(std::net::Shutdown::Both);
        })?;

    // Input: this thread. The timeout doubles as the retry tick for input
    // that did not fit in the ring.
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = [0u8; 1024];
    let mut pending = reader.buffer().to_vec();
    reader.consume(pending.len());
    let mut stream = reader.into_inner();
    loop {
        if !pending.is_empty() {
            if let Some((hub, dom)) = input.lock().unwrap().as_ref() {
                hub.console_input(dom, &pending);
            }
            pending.clear();
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                if let Some((hub, dom)) = input.lock().unwrap().as_ref() {
                    hub.flush_console_input(dom);
                }
                if writer.is_finished() {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_get_live_output_and_the_replay_they_ask_for() {
        let v = Arc::new(Viewers::default());
        v.publish(b"early boot\n");
        let (past, rx) = v.subscribe(6);
        assert_eq!(past, b" boot\n");
        let (none, rx2) = v.subscribe(0);
        assert!(none.is_empty());
        let mut sink = v.sink();
        sink.write_all(b"login: ").unwrap();
        assert_eq!(rx.recv().unwrap(), b"login: ");
        assert_eq!(rx2.recv().unwrap(), b"login: ");
        assert_eq!(v.count(), 2);
        drop(rx);
        v.publish(b"x");
        assert_eq!(v.count(), 1, "a gone viewer is forgotten");
    }

    /// A viewer connected over a real socket pair.
    fn connect(viewers: &Arc<Viewers>, hello: &str) -> BufReader<UnixStream> {
        let (client, server) = UnixStream::pair().unwrap();
        let (v, i) = (viewers.clone(), Arc::new(Mutex::new(None)));
        std::thread::spawn(move || viewer(server, v, i));
        (&client).write_all(hello.as_bytes()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        BufReader::new(client)
    }

    #[test]
    fn the_handshake_checks_the_version_then_streams_raw_bytes() {
        let v = Arc::new(Viewers::default());
        v.publish(b"boot log\n");
        let mut r = connect(&v, "{\"version\":1,\"replay\":4}\n");
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "{\"version\":1,\"ok\":null}\n");
        let mut replay = [0u8; 4];
        r.read_exact(&mut replay).unwrap();
        assert_eq!(&replay, b"log\n");
        // Live output follows once the viewer is registered.
        let t = std::time::Instant::now();
        while v.count() < 1 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        v.publish(b"live");
        let mut live = [0u8; 4];
        r.read_exact(&mut live).unwrap();
        assert_eq!(&live, b"live");

        let mut r = connect(&v, "{\"version\":9}\n");
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(
            line.contains("\"error\"") && line.contains("version 9"),
            "{line}"
        );
        let mut r = connect(&v, "hello\n");
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.contains("malformed hello"), "{line}");
    }

    #[test]
    fn history_is_bounded() {
        let v = Viewers::default();
        v.publish(&vec![b'a'; HISTORY]);
        v.publish(b"tail");
        let (past, _rx) = v.subscribe(usize::MAX);
        assert_eq!(past.len(), HISTORY);
        assert!(past.ends_with(b"tail"));
    }

    #[test]
    fn a_stuck_viewer_is_dropped() {
        let v = Viewers::default();
        let (_, _rx) = v.subscribe(0);
        for _ in 0..=QUEUE {
            v.publish(b"x");
        }
        assert_eq!(v.count(), 0);
    }
}
