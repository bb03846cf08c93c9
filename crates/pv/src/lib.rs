//! pv
