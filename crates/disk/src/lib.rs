//! Disk images behind one trait, for rxen's block backend and toolstack.
//!
//! - [`RawDisk`]: a plain file or a host block device (optionally O_DIRECT);
//!   flush is `fdatasync`, discard punches holes (`BLKDISCARD` on devices).
//! - [`Qcow2Disk`]: qcow2 through the `imago` crate, with its backing chain
//!   open read-only below it, so a clone is a thin copy-on-write overlay.
//! - [`create`], [`clone`], [`chain`]: the image operations of the CLI.
//!
//! Safety: opening read-write takes an exclusive OFD lock on the image, read-only
//! (and every backing file) a shared one, so two domains cannot write one
//! image. Every error names the file it is about.

mod error;
mod image;
mod lock;
mod qcow2;
mod raw;

pub use error::{DiskError, Result};
pub use image::{chain, clone, create, probe_format, ChainEntry};
pub use qcow2::Qcow2Disk;
pub use raw::RawDisk;

use std::path::Path;

/// Backing chains longer than this are refused (they are loops in practice).
pub const MAX_CHAIN: usize = 64;

/// A virtual disk: a byte array of fixed size.
///
/// Offsets and lengths are in bytes; callers (blkback) work in 512-byte
/// sectors, but nothing here requires alignment.
pub trait Disk: Send + std::fmt::Debug {
    /// Disk size in bytes.
    fn size(&self) -> u64;

    /// Whether the disk was opened read-only (writes fail).
    fn read_only(&self) -> bool;

    /// The image file, for messages.
    fn path(&self) -> &Path;

    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;

    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()>;

    /// Makes every completed write durable on the host's storage.
    fn flush(&mut self) -> Result<()>;

    /// Tells the image that a range is no longer needed (contents then unspecified).
    fn discard(&mut self, offset: u64, len: u64) -> Result<()>;

    /// An error unless writable.
    fn check_writable(&self) -> Result<()> {
        if self.read_only() {
            return Err(DiskError::ReadOnly {
                path: self.path().to_path_buf(),
            });
        }
        Ok(())
    }
}

/// Image formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Byte for byte the disk.
    Raw,
    /// QEMU copy-on-write v2/v3.
    Qcow2,
}

impl Format {
    /// The name used in configs and qcow2 headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "raw" => Ok(Format::Raw),
            "qcow2" => Ok(Format::Qcow2),
            other => Err(format!(
                "unsupported disk format {other:?} (rxen supports raw and qcow2)"
            )),
        }
    }
}

/// How to open a disk.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// Open read-only (shared lock; writes fail).
    pub read_only: bool,
    /// Bypass the host page cache (O_DIRECT).
    pub direct: bool,
}

/// Opens `path` as a disk of `format`. The format is never guessed: a guest
/// that can write a raw image could otherwise make it look like qcow2.
pub fn open(path: &Path, format: Format, opts: OpenOptions) -> Result<Box<dyn Disk>> {
    Ok(match format {
        Format::Raw => Box::new(RawDisk::open(path, opts.read_only, opts.direct)?),
        Format::Qcow2 => Box::new(Qcow2Disk::open(path, opts.read_only, opts.direct)?),
    })
}

/// Checks that `offset..offset+len` lies inside a disk of `size` bytes.
pub(crate) fn check_range(path: &Path, size: u64, offset: u64, len: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(DiskError::OutOfRange {
            path: path.to_path_buf(),
            offset,
            len,
            size,
        }),
    }
}
