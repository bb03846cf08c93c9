//! xenstore: rxen's xenstored.
//!
//! One store per host, shared by every domain and the toolstack. The
//! semantics (tree, permissions, transactions, quotas, watches) are kept
//! apart from the transports (a domain's shared ring page, a Unix socket) so
//! they can be tested with no guest.
//!
//! Code map, from the bottom up:

/// [`XsClient`]: a synchronous client of a xenstored socket.
pub mod client;
/// Per-connection state.
pub mod conn;
/// Errors, named as on the wire (`ENOENT`, `EACCES`, ...).
pub mod error;
/// [`StoreOps`] on an in-process store.
pub mod local;
/// [`StoreOps`]: a client's access to a store, in-process or over a socket.
pub mod ops;
/// Path validation, relative paths, special `@` paths.
pub mod path;
/// Node permissions and Xen's access rules.
pub mod perms;
/// The `xenstore_domain_interface` ring page shared with a guest.
pub mod ring;
/// The transport-independent server: requests in, replies and events out.
pub mod server;
/// The tree and its operations, checked per caller, with quotas.
pub mod store;
/// Transactions: overlay, conflict detection, commit.
pub mod transaction;
/// Unix-socket front end for host tools (`xenstore-read` and friends).
pub mod unix;
/// Watches and which changes fire them.
pub mod watch;
/// Header, message types, payload rules, a streaming decoder.
pub mod wire;

pub use client::XsClient;
pub use conn::ConnId;
pub use error::{XsError, XsResult};
pub use local::Local;
pub use ops::{in_transaction, Batch, FiredWatch, Request, StoreOps, NO_TX};
pub use perms::{Caller, DomId, Perm, Perms, DOM0};
pub use server::{Introduction, Xenstore};
pub use store::{Change, Quotas, Store};
pub use transaction::TxId;
pub use wire::{Decoder, Message, MsgType};
