//! Errors of the disk crate: each names the file it is about.

use std::io;
use std::path::PathBuf;

/// Anything that can go wrong opening, creating or accessing an image.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The file could not be opened (missing, permissions, ...).
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },

    /// Another process (or another disk of this one) holds a conflicting lock.
    #[error(
        "{}: image is in use: another domain or program has it open {}; \
         an image can be open read-write by one user only (read-only by many)",
        path.display(),
        if *wanted_write { "(it was asked for read-write)" } else { "read-write" }
    )]
    Locked {
        /// The file.
        path: PathBuf,
        /// Whether we wanted it read-write.
        wanted_write: bool,
    },

    /// The image's metadata is invalid: corrupt or truncated.
    #[error("{}: not a usable {format} image: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The format it was opened as.
        format: &'static str,
        /// What the format driver said.
        reason: String,
    },

    /// A backing file named in an image header is missing or unusable.
    #[error("{}: backing file {}: {reason}", path.display(), backing.display())]
    Backing {
        /// The image whose header names the backing file.
        path: PathBuf,
        /// The backing file as resolved.
        backing: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },

    /// A backing chain that loops or is absurdly deep.
    #[error("{}: backing chain is longer than {max} images (a loop?)", path.display())]
    ChainTooLong {
        /// The top image.
        path: PathBuf,
        /// The limit.
        max: usize,
    },

    /// A write, flush or discard to an image opened read-only.
    #[error("{}: image is read-only", path.display())]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },

    /// A request outside the disk.
    #[error(
        "{}: request of {len} bytes at byte {offset} is outside the disk ({size} bytes)",
        path.display()
    )]
    OutOfRange {
        /// The file.
        path: PathBuf,
        /// Start of the request.
        offset: u64,
        /// Length of the request.
        len: u64,
        /// Disk size.
        size: u64,
    },

    /// An I/O error during read, write, flush or discard.
    #[error("{}: {op} failed: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Which operation.
        op: &'static str,
        /// What the OS or the format driver said.
        source: io::Error,
    },

    /// `create`/`clone` refuse to replace an existing file.
    #[error("{}: already exists (refusing to overwrite it)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },

    /// The operation is not supported for this image.
    #[error("{}: {what} is not supported", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What.
        what: String,
    },
}

impl DiskError {
    pub(crate) fn io(path: &std::path::Path, op: &'static str, source: io::Error) -> Self {
        DiskError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}

/// Result alias.
pub type Result<T, E = DiskError> = std::result::Result<T, E>;
