//! Device backends: the dom0 side of the rings a PV guest shares.
//!
//! Each backend moves data between a page shared with the guest and host
//! byte streams or files; it knows nothing about event channels or threads.
//! Its methods say when the guest should be notified, and the monitor
//! (`domain` crate) raises the event.
//!
//! Shared pages are accessed through [`xenstore::ring::SharedPage`]
//! (atomic index loads and stores, volatile byte copies), so a backend can be
//! tested against a page in memory that plays the guest.

/// The block backend's request engine (`io/blkif.h`).
pub mod blkback;
/// The PV console ring (`hvc0`, `io/console.h`).
pub mod console;
/// The backend side of `io/ring.h` request/response rings.
pub mod io_ring;
/// `virtio_net_hdr` and the header parsing behind checksum offload.
pub mod net_packet;
/// The network backend's ring engine (`io/netif.h`).
pub mod netback;
/// Virtual block devices on xenbus: nodes and handshake.
pub mod vbd;
/// Virtual network interfaces on xenbus: nodes and handshake.
pub mod vif;
/// Publishing a device's xenstore directories (one transaction).
pub mod xenbus;

pub use console::{ConsoleBackend, ConsoleError};
pub use xenstore::ring::{OwnedPage, RawPage, SharedPage};
