//! The rxen toolstack: what `xl` is to Xen.
//!
//! - [`config`]: `xl.cfg(5)` files.
//! - [`registry`]: the state directory: which domains exist, their ids,
//!   names and files, stale-entry cleanup.
//! - [`client`]: requests to a domain's monitor over its control socket.

/// Domain configuration files (`xl.cfg(5)`): parsing, validation, typed config.
pub mod config;

/// The domain registry in the state directory.
pub mod registry;

/// The control-socket client.
pub mod client;
