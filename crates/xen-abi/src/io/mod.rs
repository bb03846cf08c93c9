//! Split-driver I/O protocols (`xen/io/*.h`): shared rings and the
//! console, xenstore, block and network wire formats.

pub mod blkif;
pub mod console;
pub mod netif;
pub mod protocols;
pub mod ring;
pub mod xenbus;
pub mod xs_wire;
