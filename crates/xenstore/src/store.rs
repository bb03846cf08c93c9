//! The tree: nodes with values, permissions and generations, and the
//! operations on it, each checked against the caller.
//!
//! Semantics follow C xenstored:
//! - WRITE and MKDIR create missing parents with empty values; new nodes
//!   inherit their parent's permissions, and a node created by an
//!   unprivileged domain is owned by it.
//! - Creating needs write access to the nearest existing ancestor; a missing
//!   node reads as ENOENT only if the nearest existing ancestor would grant
//!   the access asked for, EACCES otherwise (so existence does not leak).
//! - RM removes a whole subtree; removing a missing node is fine if its
//!   parent exists; removing `/` is EINVAL.
//! - SET_PERMS needs ownership; an unprivileged domain may not give a node
//!   away (EPERM).
//! - Quotas bind unprivileged domains only: nodes owned and value size
//!   (ENOSPC), permission entries per node (ENOSPC), open transactions
//!   (ENOSPC).
//!
//! Mutations report [`Change`]s: the paths watch events are due for, with the
//! permissions that decide who may see them. Inside a transaction they are
//! held back until commit.

use std::collections::HashMap;

use crate::error::{XsError, XsResult};
use crate::path::{self, basename, canonicalize, parent, Canonical};
use crate::perms::{Access, Caller, DomId, Perm, Perms, DOM0};
use crate::transaction::{Transaction, TxId};

/// One node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The value (arbitrary bytes).
    pub value: Vec<u8>,
    /// Owner, default and per-domain access.
    pub perms: Perms,
    /// Names of the children, in creation order.
    pub children: Vec<String>,
    /// Bumped on every change to this node in the shared tree.
    pub generation: u64,
}

/// Per-domain limits; privileged callers are exempt. Defaults are C
/// xenstored's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// Nodes a domain may own.
    pub nodes: usize,
    /// Longest value a domain may write.
    pub value_size: usize,
    /// Watches a domain may hold.
    pub watches: usize,
    /// Transactions a domain may have open.
    pub transactions: usize,
    /// Permission entries a domain may set on one node.
    pub perms: usize,
    /// Nodes one transaction may touch (read, write or remove) and changes
    /// it may queue: a transaction keeps each in memory until it ends.
    pub transaction_nodes: usize,
}

impl Default for Quotas {
    fn default() -> Quotas {
        Quotas {
            nodes: 1000,
            value_size: 2048,
            watches: 128,
            transactions: 10,
            perms: 5,
            // C xenstored's quota-max-transaction-nodes default.
            transaction_nodes: 1024,
        }
    }
}

/// A change watchers may be told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The changed path.
    pub path: String,
    /// Only watches on exactly this path fire (nodes removed below an RM's
    /// root); otherwise every watch at or above the path fires.
    pub exact: bool,
    /// A watcher may see the event if any of these grants it read access
    /// (the node's permissions, its parent's, and for SET_PERMS the old ones).
    pub perms: Vec<Perms>,
}

/// The shared tree, with per-owner node counts.
#[derive(Debug)]
pub(crate) struct Tree {
    nodes: HashMap<String, Node>,
    owned: HashMap<DomId, usize>,
    generation: u64,
}

impl Tree {
    fn new() -> Tree {
        let mut tree = Tree {
            nodes: HashMap::new(),
            owned: HashMap::new(),
            generation: 0,
        };
        let node = |children: &[&str]| Node {
            value: Vec::new(),
            perms: Perms::new(DOM0, Perm::None),
            children: children.iter().map(|c| c.to_string()).collect(),
            generation: 0,
        };
        tree.insert("/".into(), node(&["tool"]));
        tree.insert("/tool".into(), node(&["xenstored"]));
        tree.insert("/tool/xenstored".into(), node(&[]));
        tree.insert(path::INTRODUCE_DOMAIN.into(), node(&[]));
        tree.insert(path::RELEASE_DOMAIN.into(), node(&[]));
        tree
    }

    pub fn generation_of(&self, path: &str) -> Option<u64> {
        self.nodes.get(path).map(|n| n.generation)
    }

    pub fn owned(&self, domid: DomId) -> usize {
        self.owned.get(&domid).copied().unwrap_or(0)
    }

    fn count(&mut self, domid: DomId, delta: isize) {
        let n = self.owned.entry(domid).or_default();
        *n = n.saturating_add_signed(delta);
    }

    pub fn insert(&mut self, path: String, mut node: Node) {
        self.generation += 1;
        node.generation = self.generation;
        if let Some(old) = self.nodes.get(&path) {
            let owner = old.perms.owner();
            self.count(owner, -1);
        }
        self.count(node.perms.owner(), 1);
        self.nodes.insert(path, node);
    }

    pub fn remove(&mut self, path: &str) {
        if let Some(old) = self.nodes.remove(path) {
            self.generation += 1;
            self.count(old.perms.owner(), -1);
        }
    }
}

/// The tree as seen by one operation: directly, or through a transaction.
struct View<'a> {
    tree: &'a mut Tree,
    tx: Option<&'a mut Transaction>,
    caller: Caller,
    quotas: &'a Quotas,
    changes: Vec<Change>,
}

impl View<'_> {
    fn get(&mut self, path: &str) -> Option<&Node> {
        let base = self.tree.nodes.get(path);
        if let Some(tx) = self.tx.as_deref_mut() {
            if !tx.seen.contains_key(path) {
                tx.seen.insert(path.to_string(), base.map(|n| n.generation));
            }
            if let Some(over) = tx.overlay.get(path) {
                return over.as_ref();
            }
        }
        base
    }

    /// Like `get`, but not recorded in the transaction (for watch-event
    /// permissions, which must not make commits conflict).
    fn peek(&self, path: &str) -> Option<&Node> {
        if let Some(over) = self.tx.as_deref().and_then(|tx| tx.overlay.get(path)) {
            return over.as_ref();
        }
        self.tree.nodes.get(path)
    }

    fn owner_of(&mut self, path: &str) -> Option<DomId> {
        self.get(path).map(|n| n.perms.owner())
    }

    fn put(&mut self, path: &str, node: Node) {
        if self.tx.is_none() {
            self.tree.insert(path.to_string(), node);
            return;
        }
        let old = self.owner_of(path);
        let tx = self.tx.as_deref_mut().expect("in a transaction");
        if let Some(old) = old {
            *tx.owned_delta.entry(old).or_default() -= 1;
        }
        *tx.owned_delta.entry(node.perms.owner()).or_default() += 1;
        tx.overlay.insert(path.to_string(), Some(node));
    }

    fn remove(&mut self, path: &str) {
        if self.tx.is_none() {
            self.tree.remove(path);
            return;
        }
        let old = self.owner_of(path);
        let tx = self.tx.as_deref_mut().expect("in a transaction");
        if let Some(old) = old {
            *tx.owned_delta.entry(old).or_default() -= 1;
        }
        tx.overlay.insert(path.to_string(), None);
    }

    fn owned(&self, domid: DomId) -> usize {
        let delta = self
            .tx
            .as_deref()
            .and_then(|tx| tx.owned_delta.get(&domid))
            .copied()
            .unwrap_or(0);
        self.tree.owned(domid).saturating_add_signed(delta)
    }

    /// The node if the caller has `need` on it; `Ok(None)` if it does not
    /// exist and the nearest existing ancestor grants some of `need`.
    fn lookup(&mut self, path: &str, need: Access) -> XsResult<Option<Node>> {
        let caller = self.caller;
        if let Some(node) = self.get(path) {
            return if node.perms.access_for(caller).contains(need) {
                Ok(Some(node.clone()))
            } else {
                Err(XsError::Acces)
            };
        }
        let mut ancestor = path;
        loop {
            ancestor = parent(ancestor);
            if let Some(node) = self.get(ancestor) {
                return if node.perms.access_for(caller).intersects(need) {
                    Ok(None)
                } else {
                    Err(XsError::Acces)
                };
            }
            if ancestor == "/" {
                return Err(XsError::NoEnt);
            }
        }
    }

    fn record(&mut self, path: &str, exact: bool, mut perms: Vec<Perms>) {
        if let Some(p) = self.peek(parent(path)) {
            perms.push(p.perms.clone());
        }
        self.changes.push(Change {
            path: path.to_string(),
            exact,
            perms,
        });
    }

    fn check_value(&self, value: &[u8]) -> XsResult<()> {
        if !self.caller.privileged() && value.len() > self.quotas.value_size {
            return Err(XsError::NoSpc);
        }
        Ok(())
    }

    fn read(&mut self, path: &str) -> XsResult<Vec<u8>> {
        let node = self.lookup(path, Access::READ)?.ok_or(XsError::NoEnt)?;
        Ok(node.value)
    }

    fn directory(&mut self, path: &str) -> XsResult<(u64, Vec<String>)> {
        let node = self.lookup(path, Access::READ)?.ok_or(XsError::NoEnt)?;
        Ok((node.generation, node.children))
    }

    fn write(&mut self, path: &str, value: &[u8]) -> XsResult<()> {
        self.check_value(value)?;
        match self.lookup(path, Access::WRITE)? {
            Some(mut node) => {
                node.value = value.to_vec();
                let perms = node.perms.clone();
                self.put(path, node);
                self.record(path, false, vec![perms]);
                Ok(())
            }
            None => self.create(path, value),
        }
    }

    fn mkdir(&mut self, path: &str) -> XsResult<()> {
        match self.lookup(path, Access::WRITE)? {
            Some(_) => Ok(()),
            None => self.create(path, &[]),
        }
    }

    /// Creates `path` and any missing parents.
    fn create(&mut self, path: &str, value: &[u8]) -> XsResult<()> {
        let mut missing = vec![path.to_string()];
        let mut existing = parent(path).to_string();
        while self.get(&existing).is_none() {
            if existing == "/" {
                // The root always exists; anything else is a corrupt tree.
                tracing::error!(path, "xenstore root missing");
                return Err(XsError::Io);
            }
            missing.push(existing.clone());
            existing = parent(&existing).to_string();
        }
        if !self.caller.privileged()
            && self.owned(self.caller.domid) + missing.len() > self.quotas.nodes
        {
            return Err(XsError::NoSpc);
        }
        let mut above = self.get(&existing).expect("exists").clone();
        let mut above_path = existing;
        for name in missing.iter().rev() {
            let mut perms = above.perms.clone();
            if !self.caller.privileged() {
                perms.owner.domid = self.caller.domid;
            }
            above.children.push(basename(name).to_string());
            self.put(&above_path, above);
            above = Node {
                value: if name == path {
                    value.to_vec()
                } else {
                    Vec::new()
                },
                perms,
                children: Vec::new(),
                generation: 0,
            };
            above_path = name.clone();
        }
        let perms = above.perms.clone();
        self.put(&above_path, above);
        self.record(path, false, vec![perms]);
        Ok(())
    }

    fn rm(&mut self, path: &str) -> XsResult<()> {
        if self.lookup(path, Access::WRITE)?.is_none() {
            return match self.get(parent(path)) {
                Some(_) => Ok(()),
                None => Err(XsError::NoEnt),
            };
        }
        if path == "/" {
            return Err(XsError::Inval);
        }
        // Pre-order walk; removing in reverse takes children before parents.
        let mut order = Vec::new();
        let mut stack = vec![path.to_string()];
        while let Some(p) = stack.pop() {
            if let Some(node) = self.get(&p) {
                let kids: Vec<String> = node.children.iter().map(|c| path::child(&p, c)).collect();
                stack.extend(kids);
                order.push(p);
            }
        }
        for p in order.iter().rev() {
            let perms = self.get(p).map(|n| n.perms.clone()).into_iter().collect();
            self.record(p, p != path, perms);
            self.remove(p);
        }
        let parent_path = parent(path).to_string();
        let mut above = self
            .get(&parent_path)
            .expect("parent of existing node")
            .clone();
        let name = basename(path);
        above.children.retain(|c| c != name);
        self.put(&parent_path, above);
        Ok(())
    }

    fn get_perms(&mut self, path: &str) -> XsResult<Perms> {
        let node = self.lookup(path, Access::READ)?.ok_or(XsError::NoEnt)?;
        Ok(node.perms)
    }

    fn set_perms(&mut self, path: &str, perms: Perms) -> XsResult<()> {
        let privileged = self.caller.privileged();
        if !privileged && perms.len() > self.quotas.perms {
            return Err(XsError::NoSpc);
        }
        let mut node = self
            .lookup(path, Access::WRITE.union(Access::OWNER))?
            .ok_or(XsError::NoEnt)?;
        if !privileged && perms.owner() != node.perms.owner() {
            return Err(XsError::Perm);
        }
        let old = std::mem::replace(&mut node.perms, perms.clone());
        self.put(path, node);
        self.record(path, false, vec![old, perms]);
        Ok(())
    }
}

/// The store: the tree, open transactions, quotas and SET_TARGET links.
#[derive(Debug)]
pub struct Store {
    tree: Tree,
    txs: HashMap<TxId, Transaction>,
    next_tx: TxId,
    quotas: Quotas,
    targets: HashMap<DomId, DomId>,
}

impl Default for Store {
    fn default() -> Store {
        Store::new(Quotas::default())
    }
}

impl Store {
    /// A store holding Xen's initial nodes (`/`, `/tool/xenstored` and the
    /// special `@introduceDomain`/`@releaseDomain`), all owned by dom0.
    pub fn new(quotas: Quotas) -> Store {
        Store {
            tree: Tree::new(),
            txs: HashMap::new(),
            next_tx: 1,
            quotas,
            targets: HashMap::new(),
        }
    }

    /// The quotas in force.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// The caller as permission checks see it (with its SET_TARGET domain).
    pub fn caller(&self, domid: DomId) -> Caller {
        Caller {
            domid,
            target: self.targets.get(&domid).copied(),
        }
    }

    /// Lets `domid` act as `target` (SET_TARGET).
    pub fn set_target(&mut self, domid: DomId, target: DomId) {
        self.targets.insert(domid, target);
    }

    /// Whether `domid` may read a node with any of `perms`.
    pub fn may_read(&self, domid: DomId, perms: &[Perms]) -> bool {
        let caller = self.caller(domid);
        perms
            .iter()
            .any(|p| p.access_for(caller).contains(Access::READ))
    }

    /// Number of nodes `domid` owns in the shared tree.
    pub fn nodes_owned(&self, domid: DomId) -> usize {
        self.tree.owned(domid)
    }

    /// Number of nodes in the shared tree (including the special ones).
    pub fn node_count(&self) -> usize {
        self.tree.nodes.len()
    }

    /// Runs `op` on the tree or in transaction `tx` (0 = none). Changes made
    /// in a transaction are kept for its commit.
    fn run<T>(
        &mut self,
        domid: DomId,
        tx: TxId,
        op: impl FnOnce(&mut View) -> XsResult<T>,
    ) -> XsResult<(T, Vec<Change>)> {
        let caller = self.caller(domid);
        let tx = match tx {
            0 => None,
            id => match self.txs.get_mut(&id) {
                Some(t) if t.domid == domid => Some(t),
                _ => return Err(XsError::NoEnt),
            },
        };
        // Bound what an unprivileged domain's open transaction holds: the
        // next operation fails once it has touched its quota of nodes.
        if let Some(t) = &tx {
            let held = t.seen.len() + t.overlay.len() + t.changes.len();
            if !caller.privileged() && held >= self.quotas.transaction_nodes {
                return Err(XsError::NoSpc);
            }
        }
        let mut view = View {
            tree: &mut self.tree,
            tx,
            caller,
            quotas: &self.quotas,
            changes: Vec::new(),
        };
        let out = op(&mut view)?;
        let changes = std::mem::take(&mut view.changes);
        match view.tx {
            Some(tx) => {
                tx.changes.extend(changes);
                Ok((out, Vec::new()))
            }
            None => Ok((out, changes)),
        }
    }

    fn canon(&self, domid: DomId, raw: &[u8], special: bool) -> XsResult<Canonical> {
        canonicalize(raw, domid, self.caller(domid).privileged(), special)
    }

    /// READ: the value at `path`.
    pub fn read(&mut self, domid: DomId, tx: TxId, path: impl AsRef<[u8]>) -> XsResult<Vec<u8>> {
        let p = self.canon(domid, path.as_ref(), false)?;
        Ok(self.run(domid, tx, |v| v.read(&p.path))?.0)
    }

    /// DIRECTORY: the names of the children of `path`.
    pub fn directory(
        &mut self,
        domid: DomId,
        tx: TxId,
        path: impl AsRef<[u8]>,
    ) -> XsResult<Vec<String>> {
        Ok(self.directory_gen(domid, tx, path)?.1)
    }

    /// The node's generation and its children (for DIRECTORY_PART).
    pub fn directory_gen(
        &mut self,
        domid: DomId,
        tx: TxId,
        path: impl AsRef<[u8]>,
    ) -> XsResult<(u64, Vec<String>)> {
        let p = self.canon(domid, path.as_ref(), false)?;
        Ok(self.run(domid, tx, |v| v.directory(&p.path))?.0)
    }

    /// WRITE: sets the value at `path`, creating it and missing parents.
    pub fn write(
        &mut self,
        domid: DomId,
        tx: TxId,
        path: impl AsRef<[u8]>,
        value: &[u8],
    ) -> XsResult<Vec<Change>> {
        let p = self.canon(domid, path.as_ref(), false)?;
        Ok(self.run(domid, tx, |v| v.write(&p.path, value))?.1)
    }

    /// MKDIR: makes sure `path` exists.
    pub fn mkdir(
        &mut self,
        domid: DomId,
        tx: TxId,
        path: impl AsRef<[u8]>,
    ) -> XsResult<Vec<Change>> {
        let p = self.canon(domid, path.as_ref(), false)?;
        Ok(self.run(domid, tx, |v| v.mkdir(&p.path))?.1)
    }

    /// RM: removes `path` and everything below it.
    pub fn rm(&mut self, domid: DomId, tx: TxId, path: impl AsRef<[u8]>) -> XsResult<Vec<Change>> {
        let p = self.canon(domid, path.as_ref(), false)?;
        Ok(self.run(domid, tx, |v| v.rm(&p.path))?.1)
    }

    /// GET_PERMS (special `@` nodes allowed).
    pub fn get_perms(&mut self, domid: DomId, tx: TxId, path: impl AsRef<[u8]>) -> XsResult<Perms> {
        let p = self.canon(domid, path.as_ref(), true)?;
        Ok(self.run(domid, tx, |v| v.get_perms(&p.path))?.0)
    }

    /// SET_PERMS (special `@` nodes allowed).
    pub fn set_perms(
        &mut self,
        domid: DomId,
        tx: TxId,
        path: impl AsRef<[u8]>,
        perms: Perms,
    ) -> XsResult<Vec<Change>> {
        let p = self.canon(domid, path.as_ref(), true)?;
        Ok(self.run(domid, tx, |v| v.set_perms(&p.path, perms))?.1)
    }

    /// The permissions of a node in the shared tree, unchecked (for watch
    /// filtering of special events).
    pub fn perms_of(&self, path: &str) -> Option<&Perms> {
        self.tree.nodes.get(path).map(|n| &n.perms)
    }

    /// TRANSACTION_START for `domid`.
    pub fn transaction_start(&mut self, domid: DomId) -> XsResult<TxId> {
        if domid != DOM0 {
            let open = self.txs.values().filter(|t| t.domid == domid).count();
            if open >= self.quotas.transactions {
                return Err(XsError::NoSpc);
            }
        }
        let mut id = self.next_tx;
        while id == 0 || self.txs.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next_tx = id.wrapping_add(1);
        self.txs.insert(id, Transaction::new(domid));
        Ok(id)
    }

    /// TRANSACTION_END: commit (`true`) or abort. A commit that conflicts
    /// fails with EAGAIN; either way the transaction is gone afterwards.
    pub fn transaction_end(
        &mut self,
        domid: DomId,
        tx: TxId,
        commit: bool,
    ) -> XsResult<Vec<Change>> {
        match self.txs.get(&tx) {
            Some(t) if t.domid == domid => {}
            _ => return Err(XsError::NoEnt),
        }
        let t = self.txs.remove(&tx).expect("checked");
        if !commit {
            return Ok(Vec::new());
        }
        t.commit(&mut self.tree, &self.quotas)
    }

    /// Whether `tx` is open.
    pub fn transaction_exists(&self, tx: TxId) -> bool {
        self.txs.contains_key(&tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_layout() {
        let mut s = Store::default();
        assert_eq!(s.directory(0, 0, "/").unwrap(), ["tool"]);
        assert_eq!(s.directory(0, 0, "/tool").unwrap(), ["xenstored"]);
        assert_eq!(
            s.get_perms(0, 0, "@releaseDomain").unwrap().to_strings(),
            ["n0"]
        );
        assert_eq!(s.read(0, 0, "@releaseDomain"), Err(XsError::Inval));
    }

    #[test]
    fn owner_counts_follow_changes() {
        let mut s = Store::default();
        s.write(0, 0, "/local/domain/3", b"").unwrap();
        s.set_perms(0, 0, "/local/domain/3", Perms::new(3, Perm::None))
            .unwrap();
        assert_eq!(s.nodes_owned(3), 1);
        s.write(3, 0, "a/b", b"x").unwrap();
        assert_eq!(s.nodes_owned(3), 3);
        s.rm(3, 0, "a").unwrap();
        assert_eq!(s.nodes_owned(3), 1);
    }
}
