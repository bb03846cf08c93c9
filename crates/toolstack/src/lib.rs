//! toolstack
