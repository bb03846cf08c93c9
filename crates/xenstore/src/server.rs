//! The transport-independent xenstored: one store, many connections.
//!
//! A transport (the domain ring, the Unix socket, a test) calls
//! [`Xenstore::connect`] for each client, feeds it decoded requests with
//! [`Xenstore::handle`] (replies returned) or [`Xenstore::submit`] (replies
//! queued), and sends what [`Xenstore::take_output`] / [`Xenstore::take_events`]
//! hand back. Malformed requests get an `ERROR` reply, never a panic.

use std::collections::{BTreeMap, BTreeSet};

use crate::conn::{Conn, ConnId};
use crate::error::{XsError, XsResult};
use crate::path::{self, canonicalize, domain_path, parse_domid};
use crate::perms::{DomId, Perms, DOM0};
use crate::store::{Change, Quotas, Store};
use crate::watch::{Watch, WatchEvent};
use crate::wire::{join_strings, one_arg, split_strings, Message, MsgType, PAYLOAD_MAX};

/// A domain introduced with INTRODUCE: where its ring page and event channel
/// are, for the embedding monitor to map and bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Introduction {
    /// The domain.
    pub domid: DomId,
    /// Frame of its xenstore ring page (sent as signed decimal).
    pub mfn: u64,
    /// Its unbound event channel port for xenstore.
    pub evtchn: u32,
}

/// CONTROL commands understood.
const CONTROL_HELP: &str = "check\nhelp\nlog\nprint\nrxen-guest\n";

/// The CONTROL command (`rxen-guest <domid>`) by which a dom0 connection
/// starts speaking for a guest: a domain's monitor relays the guest's ring
/// over such a connection, and the daemon checks every request on it as
/// that domain's. When the connection closes (the monitor ended, even by
/// `kill -9`) the domain is released: see [`Xenstore::release_guest`].
pub const CONTROL_GUEST: &str = "rxen-guest";

/// First domain id reserved by Xen (`DOMID_FIRST_RESERVED`).
const DOMID_FIRST_RESERVED: DomId = 0x7ff0;

/// The store plus its connections, watches and domains.
#[derive(Debug)]
pub struct Xenstore {
    store: Store,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    introduced: BTreeSet<DomId>,
    introductions: Vec<Introduction>,
    /// The connections used by [`Xenstore::acting_as`], one per domain.
    own: BTreeMap<DomId, ConnId>,
    /// Guest connections made with [`CONTROL_GUEST`].
    guests: BTreeMap<DomId, ConnId>,
}

impl Default for Xenstore {
    fn default() -> Xenstore {
        Xenstore::new(Quotas::default())
    }
}

impl Xenstore {
    /// A fresh store with the given quotas.
    pub fn new(quotas: Quotas) -> Xenstore {
        Xenstore {
            store: Store::new(quotas),
            conns: BTreeMap::new(),
            next_conn: 1,
            introduced: BTreeSet::new(),
            introductions: Vec::new(),
            own: BTreeMap::new(),
            guests: BTreeMap::new(),
        }
    }

    /// The store (read-only; mutate through this object so watches fire).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Opens a connection for `domid` (0 for host tools).
    pub fn connect(&mut self, domid: DomId) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(id, Conn::new(domid));
        tracing::debug!(?id, domid, "xenstore connect");
        id
    }

    /// Closes a connection: its watches and transactions go away. A guest
    /// connection ([`CONTROL_GUEST`]) takes its domain with it.
    pub fn disconnect(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            for tx in c.txs {
                let _ = self.store.transaction_end(c.domid, tx, false);
            }
            tracing::debug!(?conn, "xenstore disconnect");
            if self.guests.get(&c.domid) == Some(&conn) {
                tracing::info!(
                    domid = c.domid,
                    "guest connection closed: releasing the domain"
                );
                let _ = self.release_guest(c.domid);
            }
        }
    }

    /// Makes dom0 connection `conn` speak for guest `domid` from now on
    /// (see [`CONTROL_GUEST`]) and introduces the domain. EEXIST if another
    /// open connection already speaks for it.
    pub fn become_guest(&mut self, conn: ConnId, domid: DomId) -> XsResult<()> {
        if domid == DOM0 || domid >= DOMID_FIRST_RESERVED {
            return Err(XsError::Inval);
        }
        if let Some(other) = self.guests.get(&domid) {
            if *other != conn && self.conns.contains_key(other) {
                return Err(XsError::Exist);
            }
        }
        let c = self.conn_mut(conn)?;
        if c.domid != DOM0 {
            return Err(XsError::Acces);
        }
        c.watches.clear();
        c.events.clear();
        let txs = std::mem::take(&mut c.txs);
        c.domid = domid;
        for tx in txs {
            let _ = self.store.transaction_end(DOM0, tx, false);
        }
        self.guests.insert(domid, conn);
        tracing::info!(?conn, domid, "connection speaks for a guest");
        if !self.introduced.contains(&domid) {
            self.introduce_domain(domid)?;
        }
        Ok(())
    }

    /// Releases guest `domid` as a toolstack would on destroy: removes its
    /// `/local/domain/<id>` subtree, its `/vm/<uuid>` entry and its backend
    /// directories (`/local/domain/0/backend/<type>/<id>`), then releases
    /// it ([`Xenstore::release_domain`]). ENOENT if it was not introduced.
    pub fn release_guest(&mut self, domid: DomId) -> XsResult<()> {
        if !self.is_introduced(domid) || domid == DOM0 {
            return Err(XsError::NoEnt);
        }
        if let Some(conn) = self.guests.remove(&domid) {
            // The connection, if still open, speaks for nobody now.
            if let Some(c) = self.conns.get_mut(&conn) {
                c.watches.clear();
                c.events.clear();
            }
        }
        let home = domain_path(domid);
        let vm = self
            .store
            .read(DOM0, 0, format!("{home}/vm"))
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
            .filter(|v| v.starts_with("/vm/") && !v.contains(".."));
        let mut doomed: Vec<String> = self
            .store
            .directory(DOM0, 0, "/local/domain/0/backend")
            .unwrap_or_default()
            .into_iter()
            .map(|kind| format!("/local/domain/0/backend/{kind}/{domid}"))
            .collect();
        doomed.push(home);
        doomed.extend(vm);
        for path in doomed {
            match self.store.rm(DOM0, 0, &path) {
                Ok(changes) => self.fire(&changes),
                Err(XsError::NoEnt) => {}
                Err(e) => tracing::warn!(path, "cannot remove a released domain's node: {e}"),
            }
        }
        self.release_domain(domid)
    }

    /// Whether an open connection speaks for guest `domid`.
    pub fn has_guest(&self, domid: DomId) -> bool {
        self.guests
            .get(&domid)
            .is_some_and(|c| self.conns.contains_key(c))
    }

    /// Number of open connections (in-process [`Xenstore::acting_as`] ones
    /// included).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Whether `conn` is open.
    pub fn is_connected(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// The domain of a connection.
    pub fn conn_domid(&self, conn: ConnId) -> Option<DomId> {
        self.conns.get(&conn).map(|c| c.domid)
    }

    /// Number of watches held by a connection.
    pub fn watch_count(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, |c| c.watches.len())
    }

    /// Number of watches on all connections.
    pub fn total_watches(&self) -> usize {
        self.conns.values().map(|c| c.watches.len()).sum()
    }

    /// Handles one request; returns the reply (always exactly one). Watch
    /// events it causes are queued for [`Xenstore::take_events`]; send the
    /// reply first.
    pub fn handle(&mut self, conn: ConnId, msg: &Message) -> Vec<Message> {
        let reply = match self.dispatch(conn, msg) {
            Ok(payload) if payload.len() > PAYLOAD_MAX => msg.error_reply(XsError::TooBig),
            Ok(payload) => msg.reply(payload),
            Err(e) => {
                tracing::trace!(?conn, ty = msg.ty, err = e.name(), "request failed");
                msg.error_reply(e)
            }
        };
        vec![reply]
    }

    /// Handles one request and queues its reply for [`Xenstore::take_output`].
    pub fn submit(&mut self, conn: ConnId, msg: &Message) {
        let replies = self.handle(conn, msg);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.replies.extend(replies);
        }
    }

    /// The connection kept for in-process access as `domid`.
    pub(crate) fn own_conn(&mut self, domid: DomId) -> ConnId {
        if let Some(c) = self.own.get(&domid).filter(|c| self.conns.contains_key(c)) {
            return *c;
        }
        let c = self.connect(domid);
        self.own.insert(domid, c);
        c
    }

    /// Takes the pending events of `conn` whose token is `token`.
    pub fn take_events_of(&mut self, conn: ConnId, token: &str) -> Vec<crate::ops::FiredWatch> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        c.events.retain(|e| {
            if e.token == token {
                taken.push(crate::ops::FiredWatch {
                    path: e.path.clone(),
                    token: e.token.clone(),
                });
                false
            } else {
                true
            }
        });
        taken
    }

    /// Pending WATCH_EVENTs of a connection.
    pub fn take_events(&mut self, conn: ConnId) -> Vec<Message> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        c.events
            .drain(..)
            .map(|e| Message::watch_event(&e.path, &e.token))
            .collect()
    }

    /// Queued replies, then pending events, in sending order.
    pub fn take_output(&mut self, conn: ConnId) -> Vec<Message> {
        let mut out: Vec<Message> = match self.conns.get_mut(&conn) {
            Some(c) => c.replies.drain(..).collect(),
            None => return Vec::new(),
        };
        out.extend(self.take_events(conn));
        out
    }

    /// Replies queued for `conn` and not yet taken.
    pub fn queued_replies(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, |c| c.replies.len())
    }

    /// Whether [`Xenstore::take_output`] would return anything.
    pub fn has_output(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| !c.replies.is_empty() || !c.events.is_empty())
    }

    /// Connections with something to send.
    pub fn conns_with_output(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| !c.replies.is_empty() || !c.events.is_empty())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Queues watch events for `changes` on every connection whose watches
    /// match and whose domain may read the node.
    pub fn fire(&mut self, changes: &[Change]) {
        for change in changes {
            for c in self.conns.values_mut() {
                if !self.store.may_read(c.domid, &change.perms) {
                    continue;
                }
                let events: Vec<WatchEvent> = c.watches.events_for(change).collect();
                for e in events {
                    c.queue_event(e);
                }
            }
        }
    }

    fn fire_special(&mut self, path: &str) {
        let perms = self.store.perms_of(path).cloned().into_iter().collect();
        self.fire(&[Change {
            path: path.to_string(),
            exact: false,
            perms,
        }]);
    }

    /// Marks `domid` as introduced and fires `@introduceDomain`.
    /// Introducing an introduced domain again is accepted silently.
    pub fn introduce_domain(&mut self, domid: DomId) -> XsResult<()> {
        if domid == DOM0 {
            return Err(XsError::Inval);
        }
        if self.introduced.insert(domid) {
            self.fire_special(path::INTRODUCE_DOMAIN);
        }
        Ok(())
    }

    /// Releases `domid`: drops the watches and transactions of its
    /// connections and fires `@releaseDomain`. ENOENT if not introduced.
    pub fn release_domain(&mut self, domid: DomId) -> XsResult<()> {
        if domid == DOM0 {
            return Err(XsError::Inval);
        }
        if !self.introduced.remove(&domid) {
            return Err(XsError::NoEnt);
        }
        for c in self.conns.values_mut().filter(|c| c.domid == domid) {
            c.watches.clear();
            c.events.clear();
            for tx in std::mem::take(&mut c.txs) {
                let _ = self.store.transaction_end(domid, tx, false);
            }
        }
        self.fire_special(path::RELEASE_DOMAIN);
        Ok(())
    }

    /// Whether `domid` is introduced (dom0 always is).
    pub fn is_introduced(&self, domid: DomId) -> bool {
        domid == DOM0 || self.introduced.contains(&domid)
    }

    /// INTRODUCE requests received since the last call, for the monitor to
    /// map the ring page and bind the event channel.
    pub fn take_introductions(&mut self) -> Vec<Introduction> {
        std::mem::take(&mut self.introductions)
    }

    /// Writes as `domid` outside any transaction, firing watches.
    pub fn write(&mut self, domid: DomId, path: &str, value: &[u8]) -> XsResult<()> {
        let changes = self.store.write(domid, 0, path, value)?;
        self.fire(&changes);
        Ok(())
    }

    /// Reads as `domid` outside any transaction.
    pub fn read(&mut self, domid: DomId, path: &str) -> XsResult<Vec<u8>> {
        self.store.read(domid, 0, path)
    }

    /// Lists children as `domid` outside any transaction.
    pub fn directory(&mut self, domid: DomId, path: &str) -> XsResult<Vec<String>> {
        self.store.directory(domid, 0, path)
    }

    /// Creates a node as `domid`, firing watches.
    pub fn mkdir(&mut self, domid: DomId, path: &str) -> XsResult<()> {
        let changes = self.store.mkdir(domid, 0, path)?;
        self.fire(&changes);
        Ok(())
    }

    /// Removes a subtree as `domid`, firing watches.
    pub fn rm(&mut self, domid: DomId, path: &str) -> XsResult<()> {
        let changes = self.store.rm(domid, 0, path)?;
        self.fire(&changes);
        Ok(())
    }

    /// Sets permissions as `domid`, firing watches.
    pub fn set_perms(&mut self, domid: DomId, path: &str, perms: Perms) -> XsResult<()> {
        let changes = self.store.set_perms(domid, 0, path, perms)?;
        self.fire(&changes);
        Ok(())
    }

    /// Lets `domid` act as `target` (SET_TARGET).
    pub fn set_target(&mut self, domid: DomId, target: DomId) {
        self.store.set_target(domid, target);
    }

    /// Runs a request; `Ok` is the reply payload.
    fn dispatch(&mut self, conn: ConnId, msg: &Message) -> XsResult<Vec<u8>> {
        let Some(c) = self.conns.get(&conn) else {
            tracing::warn!(?conn, "request on unknown connection");
            return Err(XsError::NoEnt);
        };
        let domid = c.domid;
        let ty = match msg.msg_type() {
            None | Some(MsgType::WatchEvent | MsgType::Error) => return Err(XsError::NoSys),
            Some(ty) => ty,
        };
        let privileged_only = matches!(
            ty,
            MsgType::Control
                | MsgType::Introduce
                | MsgType::Release
                | MsgType::IsDomainIntroduced
                | MsgType::Resume
                | MsgType::SetTarget
        );
        if privileged_only && domid != DOM0 {
            return Err(XsError::Acces);
        }
        // WATCH and UNWATCH ignore tx_id; everything else must name an open
        // transaction of this connection, or none.
        let tx = match ty {
            MsgType::Watch | MsgType::Unwatch => 0,
            _ => msg.tx_id,
        };
        if tx != 0 && !c.txs.contains(&tx) {
            return Err(XsError::NoEnt);
        }
        let p = &msg.payload[..];
        let ok = || b"OK\0".to_vec();
        match ty {
            MsgType::Read => self.store.read(domid, tx, arg(p)?),
            MsgType::Directory => {
                let kids = self.store.directory(domid, tx, arg(p)?)?;
                Ok(join_strings(
                    &kids.iter().map(|k| k.as_bytes()).collect::<Vec<_>>(),
                ))
            }
            MsgType::DirectoryPart => self.directory_part(domid, tx, p),
            MsgType::GetPerms => {
                let perms = self.store.get_perms(domid, tx, arg(p)?)?;
                let s = perms.to_strings();
                Ok(join_strings(
                    &s.iter().map(|s| s.as_bytes()).collect::<Vec<_>>(),
                ))
            }
            MsgType::Write => {
                let nul = p.iter().position(|&b| b == 0).ok_or(XsError::Inval)?;
                let changes = self.store.write(domid, tx, &p[..nul], &p[nul + 1..])?;
                self.fire(&changes);
                Ok(ok())
            }
            MsgType::Mkdir => {
                let changes = self.store.mkdir(domid, tx, arg(p)?)?;
                self.fire(&changes);
                Ok(ok())
            }
            MsgType::Rm => {
                let changes = self.store.rm(domid, tx, arg(p)?)?;
                self.fire(&changes);
                Ok(ok())
            }
            MsgType::SetPerms => {
                let strings = split_strings(p).ok_or(XsError::Inval)?;
                let (path, perms) = strings.split_first().ok_or(XsError::Inval)?;
                let perms = Perms::parse(perms.iter().copied())?;
                let changes = self.store.set_perms(domid, tx, path, perms)?;
                self.fire(&changes);
                Ok(ok())
            }
            MsgType::Watch => self.watch(conn, domid, p).map(|()| ok()),
            MsgType::Unwatch => {
                let (path, token) = two_args(p)?;
                let path = canonicalize(path, domid, domid == DOM0, true)?;
                let token = std::str::from_utf8(token).map_err(|_| XsError::Inval)?;
                self.conn_mut(conn)?.watches.remove(&path.path, token)?;
                Ok(ok())
            }
            MsgType::ResetWatches => {
                let c = self.conn_mut(conn)?;
                c.watches.clear();
                let txs = std::mem::take(&mut c.txs);
                for t in txs {
                    let _ = self.store.transaction_end(domid, t, false);
                }
                Ok(ok())
            }
            MsgType::TransactionStart => {
                if msg.tx_id != 0 {
                    return Err(XsError::Busy);
                }
                let id = self.store.transaction_start(domid)?;
                self.conn_mut(conn)?.txs.insert(id);
                Ok(format!("{id}\0").into_bytes())
            }
            MsgType::TransactionEnd => {
                let commit = match arg(p)? {
                    b"T" => true,
                    b"F" => false,
                    _ => return Err(XsError::Inval),
                };
                if tx == 0 {
                    return Err(XsError::NoEnt);
                }
                self.conn_mut(conn)?.txs.remove(&tx);
                let changes = self.store.transaction_end(domid, tx, commit)?;
                self.fire(&changes);
                Ok(ok())
            }
            MsgType::GetDomainPath => {
                let d = parse_domid(arg(p)?)?;
                Ok(format!("{}\0", domain_path(d)).into_bytes())
            }
            MsgType::Introduce => self.introduce(p).map(|()| ok()),
            MsgType::Release => {
                self.release_guest(parse_domid(arg(p)?)?)?;
                Ok(ok())
            }
            MsgType::IsDomainIntroduced => {
                let d = parse_domid(arg(p)?)?;
                Ok(if self.is_introduced(d) {
                    b"T\0".to_vec()
                } else {
                    b"F\0".to_vec()
                })
            }
            MsgType::Resume => {
                let d = parse_domid(arg(p)?)?;
                if !self.is_introduced(d) {
                    return Err(XsError::NoEnt);
                }
                Ok(ok())
            }
            MsgType::SetTarget => {
                let (d, t) = two_args(p)?;
                self.store.set_target(parse_domid(d)?, parse_domid(t)?);
                Ok(ok())
            }
            MsgType::Control => match split_strings(p).as_deref() {
                Some([cmd, domid]) if *cmd == CONTROL_GUEST.as_bytes() => {
                    self.become_guest(conn, parse_domid(domid)?)?;
                    Ok(ok())
                }
                _ => control(p),
            },
            MsgType::WatchEvent | MsgType::Error => Err(XsError::NoSys),
        }
    }

    fn conn_mut(&mut self, conn: ConnId) -> XsResult<&mut Conn> {
        self.conns.get_mut(&conn).ok_or(XsError::NoEnt)
    }

    fn watch(&mut self, conn: ConnId, domid: DomId, p: &[u8]) -> XsResult<()> {
        let (path, token) = two_args(p)?;
        let canon = canonicalize(path, domid, domid == DOM0, true)?;
        let token = std::str::from_utf8(token).map_err(|_| XsError::Inval)?;
        if domid != DOM0 {
            let held: usize = self
                .conns
                .values()
                .filter(|c| c.domid == domid)
                .map(|c| c.watches.len())
                .sum();
            if held >= self.store.quotas().watches {
                return Err(XsError::TooBig);
            }
        }
        let prefix_len = if canon.relative {
            domain_path(domid).len() + 1
        } else {
            0
        };
        let c = self.conn_mut(conn)?;
        let w = c.watches.add(Watch {
            path: canon.path,
            token: token.to_string(),
            prefix_len,
        })?;
        // Fires once straight away, with the path as given.
        let first = WatchEvent {
            path: w.client_path().to_string(),
            token: w.token.clone(),
        };
        c.queue_event(first);
        Ok(())
    }

    fn introduce(&mut self, p: &[u8]) -> XsResult<()> {
        let strings = split_strings(p).ok_or(XsError::Inval)?;
        let [domid, mfn, evtchn, ..] = strings[..] else {
            return Err(XsError::Inval);
        };
        let domid = parse_domid(domid)?;
        let mfn: i64 = parse_num(mfn)?;
        let evtchn: u32 = parse_num(evtchn)?;
        if domid == DOM0 {
            return Err(XsError::Inval);
        }
        self.introduce_domain(domid)?;
        self.introductions.push(Introduction {
            domid,
            mfn: mfn as u64,
            evtchn,
        });
        Ok(())
    }

    fn directory_part(&mut self, domid: DomId, tx: u32, p: &[u8]) -> XsResult<Vec<u8>> {
        let (path, offset) = two_args(p)?;
        let offset: usize = parse_num(offset)?;
        let (gen, kids) = self.store.directory_gen(domid, tx, path)?;
        let all = join_strings(&kids.iter().map(|k| k.as_bytes()).collect::<Vec<_>>());
        let mut out = format!("{gen}\0").into_bytes();
        if offset >= all.len() {
            out.push(0);
            return Ok(out);
        }
        // Whole names only, leaving room for the terminating empty string.
        let room = PAYLOAD_MAX - out.len() - 1;
        let rest = &all[offset..];
        let mut take = 0;
        for name in rest.split_inclusive(|&b| b == 0) {
            if take + name.len() > room {
                break;
            }
            take += name.len();
        }
        out.extend_from_slice(&rest[..take]);
        if take == rest.len() {
            out.push(0);
        }
        Ok(out)
    }
}

/// The single string argument of a payload.
fn arg(p: &[u8]) -> XsResult<&[u8]> {
    one_arg(p).ok_or(XsError::Inval)
}

/// Exactly two string arguments.
fn two_args(p: &[u8]) -> XsResult<(&[u8], &[u8])> {
    match split_strings(p).ok_or(XsError::Inval)?[..] {
        [a, b] => Ok((a, b)),
        _ => Err(XsError::Inval),
    }
}

fn parse_num<T: std::str::FromStr>(raw: &[u8]) -> XsResult<T> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(XsError::Inval)
}

fn control(p: &[u8]) -> XsResult<Vec<u8>> {
    let strings = split_strings(p).ok_or(XsError::Inval)?;
    let (cmd, args) = strings.split_first().ok_or(XsError::Inval)?;
    match *cmd {
        b"help" => Ok(format!("{CONTROL_HELP}\0").into_bytes()),
        b"check" | b"log" => Ok(b"OK\0".to_vec()),
        b"print" => {
            let text = args.first().ok_or(XsError::Inval)?;
            tracing::info!(target: "xenstore", "{}", String::from_utf8_lossy(text));
            Ok(b"OK\0".to_vec())
        }
        _ => Err(XsError::Inval),
    }
}
