//! The host side of rxen's virtual NICs.
//!
//! Each vif of a domain is a TAP device on the host (`vifDOMID.DEVID`, as in
//! xl), a port of a Linux bridge (`xenbr0` by default): netback moves frames
//! between the guest's rings and the TAP. This crate has the host half:
//!
//! - [`tap`]: the TAP device (virtio-net headers, offloads, queues);
//! - [`netlink`]: link changes over rtnetlink (up, MTU, MAC, bridge port);
//! - [`vif`]: plug and unplug one vif as xl does ([`HostVif`]);
//! - [`mac`]: random MACs in Xen's OUI, the host side's MAC;
//! - [`rate`]: the `rate=` credit scheme ([`RateLimiter`]);
//! - [`script`]: hotplug scripts with xl's arguments and environment;
//! - [`vnet`]: the virtio-net header before each TAP frame;
//! - [`netns`]: private network namespaces for tests.
//!
//! Nothing here outlives the process: TAPs are not persistent, so even a
//! `kill -9` of a monitor takes its vifs and bridge ports with it.

pub mod mac;
pub mod netlink;
pub mod netns;
pub mod rate;
pub mod script;
pub mod tap;
pub mod vif;
pub mod vnet;

pub use mac::{Mac, HOST_SIDE_MAC};
pub use netlink::{Netlink, NetlinkError};
pub use rate::RateLimiter;
pub use tap::{Offload, Tap, TapError, TapQueue, MAX_FRAME};
pub use vif::{HostNetError, HostVif, HostVifConfig, DEFAULT_BRIDGE};
pub use vnet::VnetHdr;

#[cfg(test)]
mod tests;
