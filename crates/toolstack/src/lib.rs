//! The rxen toolstack: what `xl` is to Xen.

/// Domain configuration files (`xl.cfg(5)`): parsing, validation, typed config.
pub mod config;
