//! One client connection: who it is, its watches, its open transactions and
//! what is waiting to be sent to it.

use std::collections::{BTreeSet, VecDeque};

use crate::perms::DomId;
use crate::transaction::TxId;
use crate::watch::{WatchEvent, WatchList};
use crate::wire::Message;

/// Identifies a connection to a [`crate::Xenstore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Most watch events kept pending for one connection; older ones are
/// dropped beyond this (a client that never reads must not exhaust memory).
pub const MAX_PENDING_EVENTS: usize = 1024;

/// State of one connection.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The domain speaking on it (0 for host tools).
    pub domid: DomId,
    pub watches: WatchList,
    pub txs: BTreeSet<TxId>,
    /// Replies queued by [`crate::Xenstore::submit`].
    pub replies: VecDeque<Message>,
    /// Pending WATCH_EVENTs.
    pub events: VecDeque<WatchEvent>,
}

impl Conn {
    pub fn new(domid: DomId) -> Conn {
        Conn {
            domid,
            watches: WatchList::default(),
            txs: BTreeSet::new(),
            replies: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Queues an event unless an identical one is already pending (as
    /// xenstored does; special `@` events are never merged).
    pub fn queue_event(&mut self, event: WatchEvent) {
        if !event.path.starts_with('@') && self.events.contains(&event) {
            return;
        }
        if self.events.len() >= MAX_PENDING_EVENTS {
            tracing::warn!(
                domid = self.domid,
                "watch event queue full, dropping oldest"
            );
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}
