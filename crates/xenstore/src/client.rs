//! [`XsClient`]: a synchronous client of a xenstored's Unix socket (the
//! host's shared store), speaking the wire protocol of `io/xs_wire.h`.
//!
//! One request at a time: [`StoreOps::request`] sends it and reads until
//! its reply, queuing the WATCH_EVENTs that arrive in between. Events that
//! arrive while no request is running are read by [`XsClient::pump`]
//! (non-blocking), e.g. when the socket polls readable
//! ([`XsClient::as_raw_fd`]).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::conn::MAX_PENDING_EVENTS;
use crate::error::{XsError, XsResult};
use crate::ops::{take_token, FiredWatch, Request, StoreOps};
use crate::transaction::TxId;
use crate::wire::{split_strings, Decoder, Message, MsgType};

/// How long a request may wait for its reply before it fails with EIO.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to a xenstored socket. See the module documentation.
#[derive(Debug)]
pub struct XsClient {
    stream: UnixStream,
    decoder: Decoder,
    events: VecDeque<FiredWatch>,
    next_req: u32,
    /// The daemon closed the connection or the stream broke.
    closed: bool,
}

impl XsClient {
    /// Connects to the daemon listening on `path`.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<XsClient> {
        XsClient::from_stream(UnixStream::connect(path)?)
    }

    /// A client on an already connected stream.
    pub fn from_stream(stream: UnixStream) -> io::Result<XsClient> {
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        Ok(XsClient {
            stream,
            decoder: Decoder::new(),
            events: VecDeque::new(),
            next_req: 1,
            closed: false,
        })
    }

    /// The socket, to poll for readability (events arrived).
    pub fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Whether the daemon has gone (every request now fails with EIO).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether watch events are queued.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Hands back the stream (for a raw relay), blocking and without
    /// timeouts; fails if bytes of an unfinished message are buffered.
    pub fn into_stream(self) -> io::Result<UnixStream> {
        if self.decoder.buffered() > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unread xenstore bytes buffered",
            ));
        }
        self.stream.set_read_timeout(None)?;
        self.stream.set_write_timeout(None)?;
        Ok(self.stream)
    }

    /// Reads whatever has arrived without blocking and queues its watch
    /// events. Returns whether any came. Errors mean the connection broke.
    pub fn pump(&mut self) -> io::Result<bool> {
        let before = self.events.len();
        self.stream.set_nonblocking(true)?;
        let r = self.read_available();
        self.stream.set_nonblocking(false)?;
        r?;
        Ok(self.events.len() != before)
    }

    fn read_available(&mut self) -> io::Result<()> {
        // Whole messages may already be buffered (read with a reply).
        while let Some(m) = self.next_message()? {
            self.unexpected(m);
        }
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(n) => {
                    self.decoder.push(&buf[..n]);
                    while let Some(m) = self.next_message()? {
                        self.unexpected(m);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.closed = true;
                    return Err(e);
                }
            }
        }
    }

    /// The next whole message from the buffer; WATCH_EVENTs are queued and
    /// skipped.
    fn next_message(&mut self) -> io::Result<Option<Message>> {
        loop {
            let m = self.decoder.next_message().map_err(|e| {
                self.closed = true;
                io::Error::new(io::ErrorKind::InvalidData, e)
            })?;
            match m {
                Some(m) if m.ty == MsgType::WatchEvent as u32 => self.queue_event(&m),
                other => return Ok(other),
            }
        }
    }

    fn queue_event(&mut self, m: &Message) {
        let Some(parts) = split_strings(&m.payload) else {
            tracing::warn!("malformed WATCH_EVENT from xenstored");
            return;
        };
        let [path, token, ..] = parts[..] else {
            tracing::warn!("malformed WATCH_EVENT from xenstored");
            return;
        };
        if self.events.len() >= MAX_PENDING_EVENTS {
            tracing::warn!("xenstore client event queue full, dropping the oldest");
            self.events.pop_front();
        }
        self.events.push_back(FiredWatch {
            path: String::from_utf8_lossy(path).into_owned(),
            token: String::from_utf8_lossy(token).into_owned(),
        });
    }

    fn unexpected(&self, m: Message) {
        tracing::warn!(
            ty = m.ty,
            req_id = m.req_id,
            "xenstored sent a reply nobody waits for"
        );
    }

    fn exchange(&mut self, msg: &Message) -> io::Result<Message> {
        self.send(&msg.encode())?;
        self.reply_to(msg.req_id)
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.closed {
            return Err(io::ErrorKind::NotConnected.into());
        }
        self.stream
            .write_all(bytes)
            .inspect_err(|_| self.closed = true)
    }

    /// Reads until the reply to `req_id` (replies to earlier requests that
    /// nobody waits for are dropped; watch events are queued).
    fn reply_to(&mut self, req_id: u32) -> io::Result<Message> {
        // A batch whose earlier answer broke the stream fails at once, not
        // after a timeout per request.
        if self.closed {
            return Err(io::ErrorKind::NotConnected.into());
        }
        let mut buf = [0u8; 4096];
        loop {
            while let Some(m) = self.next_message()? {
                if m.req_id == req_id {
                    return Ok(m);
                }
                self.unexpected(m);
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // A timeout leaves the stream out of step: give up on it.
                    self.closed = true;
                    return Err(e);
                }
            }
        }
    }
}

/// A reply's payload, or the error it carries.
fn reply_result(reply: Message) -> XsResult<Vec<u8>> {
    if reply.ty == MsgType::Error as u32 {
        return Err(reply.error().unwrap_or(XsError::Inval));
    }
    Ok(reply.payload)
}

/// How many request bytes [`XsClient`] sends ahead of reading replies: far
/// below a Unix socket's buffer, so neither side can block the other.
const PIPELINE_BYTES: usize = 16 * 1024;

impl StoreOps for XsClient {
    fn request(&mut self, ty: MsgType, tx: TxId, payload: &[u8]) -> XsResult<Vec<u8>> {
        let req_id = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        let msg = Message::new(ty, req_id, tx, payload);
        let reply = self.exchange(&msg).map_err(|e| {
            tracing::warn!("xenstore request {ty:?} failed: {e}");
            XsError::Io
        })?;
        reply_result(reply)
    }

    /// Sends the requests in chunks of [`PIPELINE_BYTES`], each chunk
    /// before reading its replies: one round trip per chunk instead of one
    /// per request (the daemon answers a connection's requests in order).
    fn request_many(&mut self, requests: &[Request]) -> Vec<XsResult<Vec<u8>>> {
        let mut results = Vec::with_capacity(requests.len());
        let mut rest = requests;
        while !rest.is_empty() {
            let mut bytes = Vec::new();
            let mut ids = Vec::new();
            while let Some(((ty, tx, payload), more)) = rest.split_first() {
                if !ids.is_empty() && bytes.len() + payload.len() > PIPELINE_BYTES {
                    break;
                }
                let id = self.next_req;
                self.next_req = self.next_req.wrapping_add(1);
                Message::new(*ty, id, *tx, payload.as_slice()).encode_into(&mut bytes);
                ids.push(id);
                rest = more;
            }
            let sent = self.send(&bytes);
            for id in ids {
                let reply = match &sent {
                    Ok(()) => self.reply_to(id),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
                results.push(
                    reply
                        .map_err(|e| {
                            tracing::warn!("xenstore request failed: {e}");
                            XsError::Io
                        })
                        .and_then(reply_result),
                );
            }
        }
        results
    }

    fn take_watch_events(&mut self, token: &str) -> Vec<FiredWatch> {
        if !self.closed {
            let _ = self.pump();
        }
        take_token(&mut self.events, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perms::{Perm, Perms, DOM0};

    fn server(tag: &str) -> (crate::unix::UnixServer, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("xs-client-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("socket");
        (crate::unix::serve(&path).unwrap(), dir)
    }

    #[test]
    fn requests_and_errors_over_the_socket() {
        let (srv, dir) = server("req");
        let mut c = XsClient::connect(srv.path()).unwrap();
        c.write("/a/b", b"value").unwrap();
        assert_eq!(c.read("/a/b").unwrap(), b"value");
        assert_eq!(c.directory("/a").unwrap(), ["b"]);
        assert_eq!(c.read("/nope"), Err(XsError::NoEnt));
        let perms = Perms::new(3, Perm::None).with(DOM0, Perm::Read);
        c.set_perms("/a/b", &perms).unwrap();
        assert_eq!(c.get_perms("/a/b").unwrap(), perms);
        c.rm("/a").unwrap();
        assert_eq!(c.read("/a/b"), Err(XsError::NoEnt));
        drop(srv);
        assert_eq!(c.read("/x"), Err(XsError::Io));
        assert!(c.is_closed());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_batch_goes_out_in_chunks_and_each_request_gets_its_own_answer() {
        let (srv, dir) = server("batch");
        let mut c = XsClient::connect(srv.path()).unwrap();
        let mut w = XsClient::connect(srv.path()).unwrap();
        w.watch("/b", "tok").unwrap();
        // ~40 KiB of requests: several pipelined chunks.
        let value = vec![b'v'; 200];
        let mut batch = crate::Batch::new();
        for i in 0..200 {
            batch.write(&format!("/b/{i}"), &value);
        }
        batch.send(&mut c).unwrap();
        assert_eq!(c.directory("/b").unwrap().len(), 200);
        assert_eq!(c.read("/b/199").unwrap(), value);

        // Answers stay in order around a failing request, and the
        // connection stays in step after it.
        let mut reqs: Vec<crate::Request> = Vec::new();
        for path in ["/c/1", "/c//bad", "/c/2"] {
            let mut p = path.as_bytes().to_vec();
            p.push(0);
            p.extend_from_slice(b"x");
            reqs.push((MsgType::Write, crate::NO_TX, p));
        }
        let answers = c.request_many(&reqs);
        assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
        assert_eq!(answers[1], Err(XsError::Inval));
        let mut bad = crate::Batch::new();
        bad.write("/d", b"1").write("/d//bad", b"2");
        assert_eq!(bad.send(&mut c), Err(XsError::Inval));
        assert_eq!(c.read("/c/2").unwrap(), b"x");
        assert_eq!(c.read("/d").unwrap(), b"1");

        // The other client saw every change as usual.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut seen = 0;
        while seen < 201 && std::time::Instant::now() < deadline {
            seen += w.take_watch_events("tok").len();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(seen, 201, "the watch's first event and one per write");
        drop(srv);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn events_between_replies_are_queued_by_token() {
        let (srv, dir) = server("ev");
        let mut a = XsClient::connect(srv.path()).unwrap();
        let mut b = XsClient::connect(srv.path()).unwrap();
        a.watch("/w", "tok").unwrap();
        a.watch("/other", "tok2").unwrap();
        b.write("/w/x", b"1").unwrap();
        // Arrives with or after the next reply.
        a.read("/w/x").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < 2 && std::time::Instant::now() < deadline {
            got.extend(a.take_watch_events("tok").into_iter().map(|e| e.path));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got, ["/w", "/w/x"]);
        assert_eq!(
            a.take_watch_events("tok2")
                .into_iter()
                .map(|e| e.path)
                .collect::<Vec<_>>(),
            ["/other"]
        );
        drop(srv);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_conflicting_transaction_answers_eagain() {
        let (srv, dir) = server("tx");
        let mut a = XsClient::connect(srv.path()).unwrap();
        let mut b = XsClient::connect(srv.path()).unwrap();
        a.write("/n", b"0").unwrap();
        let t = a.transaction_start().unwrap();
        assert_eq!(a.read_tx(t, "/n").unwrap(), b"0");
        a.write_tx(t, "/n", b"1").unwrap();
        b.write("/n", b"2").unwrap();
        assert_eq!(a.transaction_end(t, true), Err(XsError::Again));
        assert_eq!(a.read("/n").unwrap(), b"2");
        drop(srv);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
