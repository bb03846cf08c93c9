//! [`StoreOps`]: one client's access to a xenstore, the same whether the
//! store lives in this process ([`crate::Xenstore`], acting as some domain)
//! or in the host's xenstored behind its Unix socket ([`crate::XsClient`]).
//!
//! Backends and the toolstack are written against this trait, so unit tests
//! run them on an in-process store and the monitor runs them on the host's
//! shared one. Every operation is a request of the wire protocol
//! ([`StoreOps::request`]), so both implementations answer exactly alike,
//! permission checks, transactions and quotas included.
//!
//! Watches: a client registers `(path, token)` pairs; fired events are
//! queued per client and [`StoreOps::take_watch_events`] hands out the ones
//! of one token, so several users of one client (several backends on the
//! monitor's dom0 connection) each pick up only their own.

use crate::error::{XsError, XsResult};
use crate::perms::Perms;
use crate::transaction::TxId;
use crate::wire::{join_strings, split_strings, MsgType};

/// No transaction (`tx_id` 0).
pub const NO_TX: TxId = 0;

/// One request of [`StoreOps::request_many`]: type, transaction, payload.
pub type Request = (MsgType, TxId, Vec<u8>);

/// Changes sent to the store together ([`StoreOps::request_many`]): writing
/// a new domain's tree is ~80 requests, and on the host's daemon each one
/// alone is a round trip that wakes three threads (daemon reader and
/// writer, the caller), each of which preempts a running vCPU on a busy
/// host. Not atomic: use a transaction for that.
#[derive(Debug, Default)]
pub struct Batch {
    tx: TxId,
    requests: Vec<Request>,
}

impl Batch {
    /// An empty batch outside any transaction.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// An empty batch whose requests belong to transaction `tx`.
    pub fn in_transaction(tx: TxId) -> Batch {
        Batch {
            tx,
            requests: Vec::new(),
        }
    }

    /// Writes a node (creating it and missing parents).
    pub fn write(&mut self, path: &str, value: &[u8]) -> &mut Batch {
        self.requests
            .push((MsgType::Write, self.tx, write_payload(path, value)));
        self
    }

    /// Creates a node with an empty value (no error if it exists).
    pub fn mkdir(&mut self, path: &str) -> &mut Batch {
        let p = join_strings(&[path.as_bytes()]);
        self.requests.push((MsgType::Mkdir, self.tx, p));
        self
    }

    /// Sets a node's permissions.
    pub fn set_perms(&mut self, path: &str, perms: &Perms) -> &mut Batch {
        self.requests
            .push((MsgType::SetPerms, self.tx, set_perms_payload(path, perms)));
        self
    }

    /// Sends the requests; the first error any of them met, if one did.
    pub fn send(self, xs: &mut dyn StoreOps) -> XsResult<()> {
        xs.request_many(&self.requests)
            .into_iter()
            .find(Result::is_err)
            .unwrap_or(Ok(Vec::new()))
            .map(drop)
    }
}

fn write_payload(path: &str, value: &[u8]) -> Vec<u8> {
    let mut p = join_strings(&[path.as_bytes()]);
    p.extend_from_slice(value);
    p
}

fn set_perms_payload(path: &str, perms: &Perms) -> Vec<u8> {
    let texts = perms.to_strings();
    let mut parts: Vec<&[u8]> = vec![path.as_bytes()];
    parts.extend(texts.iter().map(|s| s.as_bytes()));
    join_strings(&parts)
}

/// A fired watch, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredWatch {
    /// The changed path (relative if the watch was registered relative).
    pub path: String,
    /// The token the watch was registered with.
    pub token: String,
}

/// One client's access to a store. See the module documentation.
pub trait StoreOps {
    /// Sends one request and returns the reply's payload, or the error the
    /// store answered with. Transport failures are [`XsError::Io`].
    fn request(&mut self, ty: MsgType, tx: TxId, payload: &[u8]) -> XsResult<Vec<u8>>;

    /// Takes the queued events of watches registered with `token`, oldest
    /// first; events of other tokens stay queued.
    fn take_watch_events(&mut self, token: &str) -> Vec<FiredWatch>;

    /// Sends `requests` in order and returns their answers in order. A
    /// client on a socket sends them together (see [`Batch`]); this default
    /// sends them one at a time.
    fn request_many(&mut self, requests: &[Request]) -> Vec<XsResult<Vec<u8>>> {
        requests
            .iter()
            .map(|(ty, tx, payload)| self.request(*ty, *tx, payload))
            .collect()
    }

    /// Reads a node's value.
    fn read(&mut self, path: &str) -> XsResult<Vec<u8>> {
        self.read_tx(NO_TX, path)
    }

    /// Reads a node's value inside transaction `tx`.
    fn read_tx(&mut self, tx: TxId, path: &str) -> XsResult<Vec<u8>> {
        self.request(MsgType::Read, tx, &join_strings(&[path.as_bytes()]))
    }

    /// Reads a node as UTF-8 text, `None` if it is missing or not text.
    fn read_string(&mut self, path: &str) -> Option<String> {
        self.read(path).ok().and_then(|v| String::from_utf8(v).ok())
    }

    /// Writes a node (creating it and missing parents).
    fn write(&mut self, path: &str, value: &[u8]) -> XsResult<()> {
        self.write_tx(NO_TX, path, value)
    }

    /// Writes a node inside transaction `tx`.
    fn write_tx(&mut self, tx: TxId, path: &str, value: &[u8]) -> XsResult<()> {
        self.request(MsgType::Write, tx, &write_payload(path, value))
            .map(drop)
    }

    /// Creates a node with an empty value (no error if it exists).
    fn mkdir(&mut self, path: &str) -> XsResult<()> {
        self.mkdir_tx(NO_TX, path)
    }

    /// Creates a node inside transaction `tx`.
    fn mkdir_tx(&mut self, tx: TxId, path: &str) -> XsResult<()> {
        self.request(MsgType::Mkdir, tx, &join_strings(&[path.as_bytes()]))
            .map(drop)
    }

    /// Removes a node and everything below it.
    fn rm(&mut self, path: &str) -> XsResult<()> {
        self.rm_tx(NO_TX, path)
    }

    /// Removes a subtree inside transaction `tx`.
    fn rm_tx(&mut self, tx: TxId, path: &str) -> XsResult<()> {
        self.request(MsgType::Rm, tx, &join_strings(&[path.as_bytes()]))
            .map(drop)
    }

    /// The names of a node's children.
    fn directory(&mut self, path: &str) -> XsResult<Vec<String>> {
        self.directory_tx(NO_TX, path)
    }

    /// The names of a node's children inside transaction `tx`.
    fn directory_tx(&mut self, tx: TxId, path: &str) -> XsResult<Vec<String>> {
        let reply = self.request(MsgType::Directory, tx, &join_strings(&[path.as_bytes()]))?;
        strings(&reply)
    }

    /// A node's permissions.
    fn get_perms(&mut self, path: &str) -> XsResult<Perms> {
        self.get_perms_tx(NO_TX, path)
    }

    /// A node's permissions inside transaction `tx`.
    fn get_perms_tx(&mut self, tx: TxId, path: &str) -> XsResult<Perms> {
        let reply = self.request(MsgType::GetPerms, tx, &join_strings(&[path.as_bytes()]))?;
        Perms::parse(split_strings(&reply).ok_or(XsError::Inval)?)
    }

    /// Sets a node's permissions.
    fn set_perms(&mut self, path: &str, perms: &Perms) -> XsResult<()> {
        self.set_perms_tx(NO_TX, path, perms)
    }

    /// Sets a node's permissions inside transaction `tx`.
    fn set_perms_tx(&mut self, tx: TxId, path: &str, perms: &Perms) -> XsResult<()> {
        self.request(MsgType::SetPerms, tx, &set_perms_payload(path, perms))
            .map(drop)
    }

    /// Writes a node and sets its permissions (not atomically).
    fn write_with_perms(&mut self, path: &str, value: &[u8], perms: &Perms) -> XsResult<()> {
        self.write(path, value)?;
        self.set_perms(path, perms)
    }

    /// Starts a transaction.
    fn transaction_start(&mut self) -> XsResult<TxId> {
        let reply = self.request(MsgType::TransactionStart, NO_TX, b"\0")?;
        let text = std::str::from_utf8(reply.strip_suffix(b"\0").unwrap_or(&reply))
            .map_err(|_| XsError::Inval)?;
        text.parse().map_err(|_| XsError::Inval)
    }

    /// Ends a transaction: commits it (`commit`) or throws it away. A commit
    /// that conflicted with another change fails with [`XsError::Again`].
    fn transaction_end(&mut self, tx: TxId, commit: bool) -> XsResult<()> {
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.request(MsgType::TransactionEnd, tx, arg).map(drop)
    }

    /// Watches `path` and everything below it; fires once straight away.
    fn watch(&mut self, path: &str, token: &str) -> XsResult<()> {
        self.request(
            MsgType::Watch,
            NO_TX,
            &join_strings(&[path.as_bytes(), token.as_bytes()]),
        )
        .map(drop)
    }

    /// Ends a watch. Its queued events are dropped too.
    fn unwatch(&mut self, path: &str, token: &str) -> XsResult<()> {
        let r = self
            .request(
                MsgType::Unwatch,
                NO_TX,
                &join_strings(&[path.as_bytes(), token.as_bytes()]),
            )
            .map(drop);
        self.take_watch_events(token);
        r
    }
}

/// How often [`in_transaction`] retries a transaction that conflicted.
const TRANSACTION_ATTEMPTS: usize = 16;

/// Runs `f` inside a transaction and commits it, so other clients see all
/// of its changes at once or none; a commit that conflicted with another
/// change (EAGAIN) runs `f` again, up to a few times. An error from `f`
/// throws the transaction away and is returned.
pub fn in_transaction<R>(
    xs: &mut dyn StoreOps,
    mut f: impl FnMut(&mut dyn StoreOps, TxId) -> XsResult<R>,
) -> XsResult<R> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tx = xs.transaction_start()?;
        let r = match f(xs, tx) {
            Ok(r) => r,
            Err(e) => {
                let _ = xs.transaction_end(tx, false);
                return Err(e);
            }
        };
        match xs.transaction_end(tx, true) {
            Err(XsError::Again) if attempt < TRANSACTION_ATTEMPTS => continue,
            Err(e) => return Err(e),
            Ok(()) => return Ok(r),
        }
    }
}

/// A payload of NUL-terminated UTF-8 strings.
fn strings(payload: &[u8]) -> XsResult<Vec<String>> {
    split_strings(payload)
        .ok_or(XsError::Inval)?
        .into_iter()
        .map(|s| String::from_utf8(s.to_vec()).map_err(|_| XsError::Inval))
        .collect()
}

/// Takes the events of `token` out of `queue`, keeping the others in order.
pub(crate) fn take_token(
    queue: &mut std::collections::VecDeque<FiredWatch>,
    token: &str,
) -> Vec<FiredWatch> {
    let mut taken = Vec::new();
    queue.retain(|e| {
        if e.token == token {
            taken.push(e.clone());
            false
        } else {
            true
        }
    });
    taken
}
