//! Private network namespaces for tests: nothing a test does to links may
//! reach the host's real interfaces.

use std::io;

/// Moves the calling thread (only) into a new network namespace, with its
/// loopback up. Links, TAPs and netlink sockets the thread makes from then
/// on live there, as do processes it spawns; the namespace goes when the
/// last of them does. Needs CAP_SYS_ADMIN.
pub fn enter_new() -> io::Result<()> {
    // SAFETY: unshare takes flags only; CLONE_NEWNET affects this thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut nl = crate::netlink::Netlink::open().map_err(io::Error::other)?;
    nl.set_up("lo", true).map_err(io::Error::other)?;
    Ok(())
}
