//! The xenstore wire protocol (`xen/io/xs_wire.h`): message header, message
//! types, error names, and the shared ring page a domain talks through.

use crate::xen::{XEN_E2BIG, XEN_EACCES, XEN_EAGAIN, XEN_EBUSY, XEN_EEXIST, XEN_EINVAL};
use crate::xen::{XEN_EIO, XEN_EISCONN, XEN_EISDIR, XEN_ENOENT, XEN_ENOMEM, XEN_ENOSPC};
use crate::xen::{XEN_ENOSYS, XEN_ENOTEMPTY, XEN_EPERM, XEN_EROFS};
use crate::InvalidValue;

/// Message types (`enum xsd_sockmsg_type`), carried in [`XsdSockmsg::type_`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XsSockmsgType {
    /// `XS_CONTROL` (alias `XS_DEBUG`).
    Control = 0,
    Directory = 1,
    Read = 2,
    GetPerms = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    Introduce = 8,
    Release = 9,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Rm = 13,
    SetPerms = 14,
    WatchEvent = 15,
    Error = 16,
    IsDomainIntroduced = 17,
    Resume = 18,
    SetTarget = 19,
    // 20 was XS_RESTRICT, now unused.
    ResetWatches = 21,
    DirectoryPart = 22,
}

/// Old name of [`XsSockmsgType::Control`].
pub const XS_DEBUG: XsSockmsgType = XsSockmsgType::Control;
/// Number of message type values (one past the last, counting the hole at 20).
pub const XS_TYPE_COUNT: u32 = 23;
/// Guaranteed invalid message type.
pub const XS_INVALID: u32 = 0xffff;

impl XsSockmsgType {
    /// Every message type, in numeric order.
    pub const ALL: [XsSockmsgType; 22] = [
        Self::Control,
        Self::Directory,
        Self::Read,
        Self::GetPerms,
        Self::Watch,
        Self::Unwatch,
        Self::TransactionStart,
        Self::TransactionEnd,
        Self::Introduce,
        Self::Release,
        Self::GetDomainPath,
        Self::Write,
        Self::Mkdir,
        Self::Rm,
        Self::SetPerms,
        Self::WatchEvent,
        Self::Error,
        Self::IsDomainIntroduced,
        Self::Resume,
        Self::SetTarget,
        Self::ResetWatches,
        Self::DirectoryPart,
    ];

    /// The header's name, e.g. `"XS_DIRECTORY"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Control => "XS_CONTROL",
            Self::Directory => "XS_DIRECTORY",
            Self::Read => "XS_READ",
            Self::GetPerms => "XS_GET_PERMS",
            Self::Watch => "XS_WATCH",
            Self::Unwatch => "XS_UNWATCH",
            Self::TransactionStart => "XS_TRANSACTION_START",
            Self::TransactionEnd => "XS_TRANSACTION_END",
            Self::Introduce => "XS_INTRODUCE",
            Self::Release => "XS_RELEASE",
            Self::GetDomainPath => "XS_GET_DOMAIN_PATH",
            Self::Write => "XS_WRITE",
            Self::Mkdir => "XS_MKDIR",
            Self::Rm => "XS_RM",
            Self::SetPerms => "XS_SET_PERMS",
            Self::WatchEvent => "XS_WATCH_EVENT",
            Self::Error => "XS_ERROR",
            Self::IsDomainIntroduced => "XS_IS_DOMAIN_INTRODUCED",
            Self::Resume => "XS_RESUME",
            Self::SetTarget => "XS_SET_TARGET",
            Self::ResetWatches => "XS_RESET_WATCHES",
            Self::DirectoryPart => "XS_DIRECTORY_PART",
        }
    }
}

impl TryFrom<u32> for XsSockmsgType {
    type Error = InvalidValue;

    fn try_from(v: u32) -> Result<Self, InvalidValue> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| *t as u32 == v)
            .ok_or_else(|| InvalidValue::new("xenstore message type", v))
    }
}

impl From<XsSockmsgType> for u32 {
    fn from(t: XsSockmsgType) -> u32 {
        t as u32
    }
}

/// `XS_WRITE` flag strings of the old write protocol.
pub const XS_WRITE_NONE: &str = "NONE";
pub const XS_WRITE_CREATE: &str = "CREATE";
pub const XS_WRITE_CREATE_EXCL: &str = "CREATE|EXCL";

/// The `xsd_errors` table: the errno values an `XS_ERROR` reply may name,
/// with the string sent on the wire (e.g. `"ENOENT\0"`). The first entry is
/// the fallback for unlisted errors.
pub const XSD_ERRORS: [(i32, &str); 16] = [
    (XEN_EINVAL as i32, "EINVAL"),
    (XEN_EACCES as i32, "EACCES"),
    (XEN_EEXIST as i32, "EEXIST"),
    (XEN_EISDIR as i32, "EISDIR"),
    (XEN_ENOENT as i32, "ENOENT"),
    (XEN_ENOMEM as i32, "ENOMEM"),
    (XEN_ENOSPC as i32, "ENOSPC"),
    (XEN_EIO as i32, "EIO"),
    (XEN_ENOTEMPTY as i32, "ENOTEMPTY"),
    (XEN_ENOSYS as i32, "ENOSYS"),
    (XEN_EROFS as i32, "EROFS"),
    (XEN_EBUSY as i32, "EBUSY"),
    (XEN_EAGAIN as i32, "EAGAIN"),
    (XEN_EISCONN as i32, "EISCONN"),
    (XEN_E2BIG as i32, "E2BIG"),
    (XEN_EPERM as i32, "EPERM"),
];

/// `struct xsd_sockmsg`: the 16-byte header of every message; `len` bytes
/// of payload follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XsdSockmsg {
    /// [`XsSockmsgType`] (`type` in C).
    pub type_: u32,
    /// Echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 for none.
    pub tx_id: u32,
    /// Payload length.
    pub len: u32,
}
const _: () = assert!(size_of::<XsdSockmsg>() == 16);
// SAFETY: plain-old-data: four u32, every bit pattern valid.
unsafe impl vm_memory::ByteValued for XsdSockmsg {}

/// Order of the strings in an `XS_WATCH_EVENT` payload (`enum xs_watch_type`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XsWatchType {
    /// The first string is the path that changed.
    Path = 0,
    /// The second string is the watch token.
    Token = 1,
}
pub const XS_WATCH_PATH: u32 = XsWatchType::Path as u32;
pub const XS_WATCH_TOKEN: u32 = XsWatchType::Token as u32;

/// Size of each of the two rings in [`XenstoreDomainInterface`].
pub const XENSTORE_RING_SIZE: usize = 1024;
/// Maximum payload of one message.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// Maximum length of an absolute path.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// Maximum length of a relative path.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;

/// `server_features`: the server supports the `connection` field.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `server_features`: the server reports errors in `error`.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;

/// `connection`: connected.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `connection`: the guest asks for a reconnect (rings are being reset).
pub const XENSTORE_RECONNECT: u32 = 1;

/// `error`: no error.
pub const XENSTORE_ERROR_NONE: u32 = 0;
/// `error`: communication problem.
pub const XENSTORE_ERROR_COMM: u32 = 1;
/// `error`: invalid ring index.
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
/// `error`: protocol violation.
pub const XENSTORE_ERROR_PROTO: u32 = 3;

/// A xenstore ring index (`XENSTORE_RING_IDX`).
pub type XenstoreRingIdx = u32;

/// `MASK_XENSTORE_IDX`.
pub const fn mask_xenstore_idx(idx: XenstoreRingIdx) -> usize {
    idx as usize & (XENSTORE_RING_SIZE - 1)
}

/// `struct xenstore_domain_interface`: the xenstore ring page.
///
/// The guest writes requests into `req` and reads replies from `rsp`.
/// `evtchn_port` comes from later Xen releases (not in the 4.17 headers,
/// which end after `error` at 2076 bytes): the guest's xenstore event
/// channel, for domains whose xenstore is connected late. Older guests
/// never touch those bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenstoreDomainInterface {
    /// Requests to the xenstore daemon.
    pub req: [u8; XENSTORE_RING_SIZE],
    /// Replies and watch events to the guest.
    pub rsp: [u8; XENSTORE_RING_SIZE],
    pub req_cons: XenstoreRingIdx,
    pub req_prod: XenstoreRingIdx,
    pub rsp_cons: XenstoreRingIdx,
    pub rsp_prod: XenstoreRingIdx,
    /// `XENSTORE_SERVER_FEATURE_*`, set by the server.
    pub server_features: u32,
    /// `XENSTORE_CONNECTED` / `XENSTORE_RECONNECT`.
    pub connection: u32,
    /// `XENSTORE_ERROR_*`, set by the server.
    pub error: u32,
    /// The guest's xenstore event channel (later Xen; see above).
    pub evtchn_port: u32,
}
const _: () = assert!(size_of::<XenstoreDomainInterface>() == 2080);
// SAFETY: plain-old-data: byte arrays and u32, no padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for XenstoreDomainInterface {}

impl Default for XenstoreDomainInterface {
    fn default() -> Self {
        Self {
            req: [0; XENSTORE_RING_SIZE],
            rsp: [0; XENSTORE_RING_SIZE],
            req_cons: 0,
            req_prod: 0,
            rsp_cons: 0,
            rsp_prod: 0,
            server_features: 0,
            connection: 0,
            error: 0,
            evtchn_port: 0,
        }
    }
}
