//! Errors a request can fail with, named as on the wire.
//!
//! xenstored answers a failed request with an `ERROR` message whose payload is
//! the errno *name* (`"ENOENT\0"`), taken from the `xsd_errors` table of
//! `io/xs_wire.h`. Only names in that table are understood by clients
//! (libxenstore maps anything else to `EINVAL`), so this enum has exactly
//! those names and nothing else.

/// A xenstore error; [`XsError::name`] is what goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum XsError {
    /// EINVAL: invalid argument, path or payload
    #[error("EINVAL: invalid argument")]
    Inval,
    /// EACCES: permission denied
    #[error("EACCES: permission denied")]
    Acces,
    /// EEXIST: already exists
    #[error("EEXIST: already exists")]
    Exist,
    /// EISDIR: is a directory
    #[error("EISDIR: is a directory")]
    IsDir,
    /// ENOENT: no such node, transaction, watch or domain
    #[error("ENOENT: no such entry")]
    NoEnt,
    /// ENOMEM: out of memory
    #[error("ENOMEM: out of memory")]
    NoMem,
    /// ENOSPC: a quota (nodes, value size, transactions, permissions) is exhausted
    #[error("ENOSPC: quota exhausted")]
    NoSpc,
    /// EIO: internal I/O error
    #[error("EIO: input/output error")]
    Io,
    /// ENOTEMPTY: not empty
    #[error("ENOTEMPTY: not empty")]
    NotEmpty,
    /// ENOSYS: unknown or unsupported request type
    #[error("ENOSYS: operation not supported")]
    NoSys,
    /// EROFS: read-only
    #[error("EROFS: read-only")]
    RoFs,
    /// EBUSY: busy (e.g. TRANSACTION_START inside a transaction)
    #[error("EBUSY: busy")]
    Busy,
    /// EAGAIN: the transaction conflicted with another change; retry it
    #[error("EAGAIN: transaction conflict, try again")]
    Again,
    /// EISCONN: already connected
    #[error("EISCONN: already connected")]
    IsConn,
    /// E2BIG: reply too large, or watch quota exhausted
    #[error("E2BIG: too big")]
    TooBig,
    /// EPERM: operation not permitted (e.g. a domU changing a node's owner)
    #[error("EPERM: operation not permitted")]
    Perm,
}

impl XsError {
    /// All errors, in the order of `xsd_errors` in `xs_wire.h`.
    pub const ALL: [XsError; 16] = [
        XsError::Inval,
        XsError::Acces,
        XsError::Exist,
        XsError::IsDir,
        XsError::NoEnt,
        XsError::NoMem,
        XsError::NoSpc,
        XsError::Io,
        XsError::NotEmpty,
        XsError::NoSys,
        XsError::RoFs,
        XsError::Busy,
        XsError::Again,
        XsError::IsConn,
        XsError::TooBig,
        XsError::Perm,
    ];

    /// The errno name sent in an `ERROR` reply, e.g. `"ENOENT"`.
    pub fn name(self) -> &'static str {
        match self {
            XsError::Inval => "EINVAL",
            XsError::Acces => "EACCES",
            XsError::Exist => "EEXIST",
            XsError::IsDir => "EISDIR",
            XsError::NoEnt => "ENOENT",
            XsError::NoMem => "ENOMEM",
            XsError::NoSpc => "ENOSPC",
            XsError::Io => "EIO",
            XsError::NotEmpty => "ENOTEMPTY",
            XsError::NoSys => "ENOSYS",
            XsError::RoFs => "EROFS",
            XsError::Busy => "EBUSY",
            XsError::Again => "EAGAIN",
            XsError::IsConn => "EISCONN",
            XsError::TooBig => "E2BIG",
            XsError::Perm => "EPERM",
        }
    }

    /// Parses an errno name as found in an `ERROR` payload (without the NUL).
    pub fn from_name(name: &str) -> Option<XsError> {
        XsError::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// Result of a store operation.
pub type XsResult<T> = Result<T, XsError>;
