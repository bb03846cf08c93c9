//! guestprep
