//! Transactions: a private overlay on the tree, committed only if nothing it
//! looked at changed meanwhile.
//!
//! Every node a transaction reads or writes (present or absent) is recorded
//! with the generation it had in the shared tree when first touched. Writes
//! go to an overlay of whole nodes. At commit, any recorded node whose
//! generation differs now — changed, created or removed by someone else —
//! makes the commit fail with EAGAIN; otherwise the overlay is copied in and
//! the watch events queued during the transaction are fired.

use std::collections::HashMap;

use crate::error::{XsError, XsResult};
use crate::perms::DomId;
use crate::store::{Change, Node, Quotas, Tree};

/// A transaction id, as carried in the header's `tx_id` (never 0).
pub type TxId = u32;

/// One open transaction.
#[derive(Debug)]
pub(crate) struct Transaction {
    /// The domain that started it.
    pub domid: DomId,
    /// Nodes written (`Some`) or removed (`None`) by the transaction.
    pub overlay: HashMap<String, Option<Node>>,
    /// Generation of every touched node in the shared tree at first touch
    /// (`None`: absent).
    pub seen: HashMap<String, Option<u64>>,
    /// Watch events to fire at commit.
    pub changes: Vec<Change>,
    /// Change in the number of nodes each domain owns.
    pub owned_delta: HashMap<DomId, isize>,
}

impl Transaction {
    pub fn new(domid: DomId) -> Transaction {
        Transaction {
            domid,
            overlay: HashMap::new(),
            seen: HashMap::new(),
            changes: Vec::new(),
            owned_delta: HashMap::new(),
        }
    }

    /// Applies the transaction to `tree`, or fails with EAGAIN on conflict
    /// (ENOSPC if the committing domain's node quota would be exceeded).
    pub fn commit(self, tree: &mut Tree, quotas: &Quotas) -> XsResult<Vec<Change>> {
        let conflict = self
            .seen
            .iter()
            .find(|(path, gen)| tree.generation_of(path) != **gen);
        if let Some((path, _)) = conflict {
            tracing::debug!(path, "transaction conflict");
            return Err(XsError::Again);
        }
        if self.domid != crate::perms::DOM0 {
            let delta = self.owned_delta.get(&self.domid).copied().unwrap_or(0);
            if delta > 0 && tree.owned(self.domid) + delta as usize > quotas.nodes {
                return Err(XsError::NoSpc);
            }
        }
        for (path, node) in self.overlay {
            match node {
                Some(node) => tree.insert(path, node),
                None => tree.remove(&path),
            }
        }
        Ok(self.changes)
    }
}
