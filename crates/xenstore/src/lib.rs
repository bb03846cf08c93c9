//! xenstore
