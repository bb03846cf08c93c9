//! TAP devices: the host side of a vif, one frame per read or write.
//!
//! A TAP is opened with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`: Ethernet
//! frames, no packet-information prefix, a virtio-net header ([`VnetHdr`])
//! before each frame. With `TUNSETOFFLOAD` (checksum, TSO4, TSO6) the host
//! stack hands the vif frames of up to 64 KiB with partial checksums, which
//! netback passes to the guest as GSO packets instead of segmenting them.
//!
//! The device is not persistent: it lives as long as one of its file
//! descriptors is open, so when the monitor exits, even by `kill -9`, the
//! kernel deletes it and takes it off its bridge. The descriptors are
//! close-on-exec so a hotplug script (or any child) cannot keep it alive.
//! They are nonblocking: a read with nothing queued or a write to a full
//! queue returns `Ok(None)` / `Ok(false)` instead of waiting.

use std::ffi::CString;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::vnet::{VnetHdr, VNET_HDR_LEN};

// From <linux/if_tun.h>.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// Fail instead of attaching to a TAP of the same name that exists.
const IFF_TUN_EXCL: libc::c_short = 0x8000u16 as libc::c_short;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;

/// Longest interface name (IFNAMSIZ less the NUL).
pub const MAX_NAME: usize = 15;

/// The largest frame a TAP with TSO hands over: 64 KiB of IP packet plus
/// an Ethernet header with a VLAN tag. Read buffers should be this big.
pub const MAX_FRAME: usize = 65_535 + 18;

/// What the host stack may hand the vif unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offload {
    /// Partial checksums (`F_NEEDS_CSUM`), for frames the guest completes
    /// or trusts (netfront's `feature-no-csum-offload` = 0).
    pub csum: bool,
    /// TCP over IPv4 segmentation (`feature-gso-tcpv4`); needs `csum`.
    pub tso4: bool,
    /// TCP over IPv6 segmentation (`feature-gso-tcpv6`); needs `csum`.
    pub tso6: bool,
    /// TSO frames with the ECN bit (`GSO_ECN`); needs `tso4` or `tso6`.
    pub ecn: bool,
}

impl Offload {
    /// Everything netfront can take: checksum, TSO4, TSO6.
    pub const ALL: Offload = Offload {
        csum: true,
        tso4: true,
        tso6: true,
        ecn: true,
    };
    /// Complete frames only (a frontend that offers no offloads).
    pub const NONE: Offload = Offload {
        csum: false,
        tso4: false,
        tso6: false,
        ecn: false,
    };

    fn flags(self) -> libc::c_uint {
        let mut f = 0;
        if self.csum {
            f |= TUN_F_CSUM;
            if self.tso4 {
                f |= TUN_F_TSO4;
            }
            if self.tso6 {
                f |= TUN_F_TSO6;
            }
            if self.ecn && (self.tso4 || self.tso6) {
                f |= TUN_F_TSO_ECN;
            }
        }
        f
    }
}

/// Why a TAP could not be opened or configured.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error(
        "invalid interface name {0:?}: expected 1 to {MAX_NAME} characters, no blanks, `/` or `:`"
    )]
    BadName(String),
    #[error("cannot open /dev/net/tun: {0} (is the tun module loaded, and are we root or CAP_NET_ADMIN?)")]
    OpenTun(#[source] io::Error),
    #[error("network interface {0} already exists (another domain's vif, or a leftover persistent TAP: `ip link del {0}`)")]
    Exists(String),
    #[error("cannot create TAP {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("TAP {name}: {what} failed: {source}")]
    Ioctl {
        name: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Checks `name` is a valid Linux interface name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A TAP device and its queues (one descriptor each).
#[derive(Debug)]
pub struct Tap {
    name: String,
    queues: Vec<TapQueue>,
}

/// One queue of a TAP: frames in and out.
#[derive(Debug)]
pub struct TapQueue {
    fd: OwnedFd,
}

impl Tap {
    /// Creates TAP `name` with `queues` queues (at least 1) in the calling
    /// thread's network namespace, the host stack allowed to hand it the
    /// offloads in `offload`. The device starts down.
    pub fn create(name: &str, queues: usize, offload: Offload) -> Result<Tap, TapError> {
        if !valid_name(name) {
            return Err(TapError::BadName(name.to_string()));
        }
        let queues = queues.max(1);
        let mut out = Vec::with_capacity(queues);
        for q in 0..queues {
            out.push(TapQueue::open(name, q == 0, queues > 1)?);
        }
        let tap = Tap {
            name: name.to_string(),
            queues: out,
        };
        let sz: libc::c_int = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int from the pointer.
        let r = unsafe { libc::ioctl(tap.queues[0].fd.as_raw_fd(), TUNSETVNETHDRSZ, &sz) };
        if r < 0 {
            return Err(tap.ioctl_error("TUNSETVNETHDRSZ"));
        }
        tap.set_offload(offload)?;
        tracing::debug!(name, queues, ?offload, "TAP created");
        Ok(tap)
    }

    /// Changes what the host stack may hand over unfinished (e.g. once the
    /// frontend said which offloads it takes).
    pub fn set_offload(&self, offload: Offload) -> Result<(), TapError> {
        // SAFETY: TUNSETOFFLOAD takes the flags by value.
        let r = unsafe {
            libc::ioctl(
                self.queues[0].fd.as_raw_fd(),
                TUNSETOFFLOAD,
                offload.flags() as libc::c_ulong,
            )
        };
        if r < 0 {
            return Err(self.ioctl_error("TUNSETOFFLOAD"));
        }
        Ok(())
    }

    fn ioctl_error(&self, what: &'static str) -> TapError {
        TapError::Ioctl {
            name: self.name.clone(),
            what,
            source: io::Error::last_os_error(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn queues(&self) -> &[TapQueue] {
        &self.queues
    }

    /// Queue `i` (queue 0 always exists).
    pub fn queue(&self, i: usize) -> Option<&TapQueue> {
        self.queues.get(i)
    }
}

impl TapQueue {
    fn open(name: &str, first: bool, multi: bool) -> Result<TapQueue, TapError> {
        let path = CString::new("/dev/net/tun").expect("no NUL");
        // SAFETY: a valid C string; the result is checked.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(TapError::OpenTun(io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = IfReq {
            name: [0; 16],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        if multi {
            req.flags |= IFF_MULTI_QUEUE;
        }
        if first {
            req.flags |= IFF_TUN_EXCL;
        }
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads (and may write back) one ifreq.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EBUSY) {
                TapError::Exists(name.to_string())
            } else {
                TapError::Create {
                    name: name.to_string(),
                    source: e,
                }
            });
        }
        Ok(TapQueue { fd })
    }

    /// Reads one frame into `buf` (which should hold [`MAX_FRAME`] bytes;
    /// a longer frame is cut). `Ok(None)`: nothing queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(VnetHdr, usize)>> {
        let mut hdr = [0u8; VNET_HDR_LEN];
        let mut iov = [IoSliceMut::new(&mut hdr), IoSliceMut::new(buf)];
        loop {
            // SAFETY: IoSliceMut is ABI-compatible with iovec; both point
            // into live buffers of the given lengths.
            let n = unsafe {
                libc::readv(
                    self.fd.as_raw_fd(),
                    iov.as_mut_ptr().cast(),
                    iov.len() as libc::c_int,
                )
            };
            if n >= 0 {
                let n = n as usize;
                if n < VNET_HDR_LEN {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("TAP read of {n} bytes: shorter than the vnet header"),
                    ));
                }
                return Ok(Some((VnetHdr::from_bytes(&hdr), n - VNET_HDR_LEN)));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(e),
            }
        }
    }

    /// Writes one frame made of `parts` with header `hdr`. `Ok(false)`: the
    /// queue is full (try again when the fd is writable).
    pub fn send(&self, hdr: &VnetHdr, parts: &[&[u8]]) -> io::Result<bool> {
        let h = hdr.to_bytes();
        let mut iov: Vec<IoSlice> = Vec::with_capacity(parts.len() + 1);
        iov.push(IoSlice::new(&h));
        iov.extend(parts.iter().map(|p| IoSlice::new(p)));
        loop {
            // SAFETY: IoSlice is ABI-compatible with iovec; all point into
            // live buffers.
            let n = unsafe {
                libc::writev(
                    self.fd.as_raw_fd(),
                    iov.as_ptr().cast(),
                    iov.len() as libc::c_int,
                )
            };
            if n >= 0 {
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(false),
                _ => return Err(e),
            }
        }
    }
}

impl AsRawFd for TapQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for TapQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
