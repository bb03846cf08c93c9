//! Raw images: a plain file or a host block device, byte for byte the disk.

use crate::error::{DiskError, Result};
use crate::lock::{open_locked, FileMode};
use crate::{check_range, Disk};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

/// O_DIRECT needs buffers, offsets and lengths aligned to the logical block
/// size; 4 KiB covers every device we meet.
const DIRECT_ALIGN: usize = 4096;

/// A raw image file or block device.
#[derive(Debug)]
pub struct RawDisk {
    file: File,
    path: PathBuf,
    size: u64,
    read_only: bool,
    direct: bool,
    block_device: bool,
}

impl RawDisk {
    /// Opens `path` as a raw disk (read-write unless `read_only`), locked.
    pub fn open(path: &Path, read_only: bool, direct: bool) -> Result<Self> {
        let file = open_locked(
            path,
            FileMode {
                write: !read_only,
                direct,
            },
        )?;
        let meta = file
            .metadata()
            .map_err(|e| DiskError::io(path, "stat", e))?;
        let block_device = meta.file_type().is_block_device();
        let size = if block_device {
            block_device_size(&file).map_err(|e| DiskError::io(path, "BLKGETSIZE64", e))?
        } else {
            meta.len()
        };
        Ok(RawDisk {
            file,
            path: path.to_path_buf(),
            size,
            read_only,
            direct,
            block_device,
        })
    }

    fn direct_read(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let (start, len) = aligned_span(offset, buf.len());
        let mut bounce = AlignedBuf::new(len);
        self.file.read_exact_at(bounce.as_mut(), start)?;
        let skip = (offset - start) as usize;
        buf.copy_from_slice(&bounce.as_mut()[skip..skip + buf.len()]);
        Ok(())
    }

    fn direct_write(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let (start, len) = aligned_span(offset, buf.len());
        let mut bounce = AlignedBuf::new(len);
        let skip = (offset - start) as usize;
        if skip != 0 || len != buf.len() {
            // Read-modify-write of the partial blocks at either end.
            self.file.read_exact_at(bounce.as_mut(), start)?;
        }
        bounce.as_mut()[skip..skip + buf.len()].copy_from_slice(buf);
        self.file.write_all_at(bounce.as_mut(), start)
    }
}

impl Disk for RawDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&self.path, self.size, offset, buf.len() as u64)?;
        let r = if self.direct {
            self.direct_read(buf, offset)
        } else {
            self.file.read_exact_at(buf, offset)
        };
        r.map_err(|e| DiskError::io(&self.path, "read", e))
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_writable()?;
        check_range(&self.path, self.size, offset, buf.len() as u64)?;
        let r = if self.direct {
            self.direct_write(buf, offset)
        } else {
            self.file.write_all_at(buf, offset)
        };
        r.map_err(|e| DiskError::io(&self.path, "write", e))
    }

    fn flush(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        // The size never changes, so data sync is enough for a raw image.
        self.file
            .sync_data()
            .map_err(|e| DiskError::io(&self.path, "fdatasync", e))
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<()> {
        self.check_writable()?;
        check_range(&self.path, self.size, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let r = if self.block_device {
            let range = [offset, len];
            // SAFETY: BLKDISCARD reads two u64 (start, length) from the pointer.
            let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), BLKDISCARD, range.as_ptr()) };
            if rc < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        } else {
            // SAFETY: plain syscall on a valid descriptor.
            let rc = unsafe {
                libc::fallocate(
                    self.file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    offset as libc::off_t,
                    len as libc::off_t,
                )
            };
            if rc < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        match r {
            Ok(()) => Ok(()),
            // Discard is a hint: a file system without hole punching just keeps the data.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
            Err(e) => Err(DiskError::io(&self.path, "discard", e)),
        }
    }
}

/// `_IOR(0x12, 114, size_t)`
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
/// `_IO(0x12, 119)`
const BLKDISCARD: libc::c_ulong = 0x1277;

pub(crate) fn block_device_size(file: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// The smallest `DIRECT_ALIGN`-aligned span covering `offset..offset+len`.
fn aligned_span(offset: u64, len: usize) -> (u64, usize) {
    let a = DIRECT_ALIGN as u64;
    let start = offset / a * a;
    let end = (offset + len as u64).div_ceil(a) * a;
    (start, (end - start) as usize)
}

/// A heap buffer aligned for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    layout: Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len.max(DIRECT_ALIGN), DIRECT_ALIGN)
            .expect("aligned_span yields sizes far below isize::MAX");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, layout }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr points to layout.size() initialised bytes we own.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::aligned_span;

    #[test]
    fn spans_cover_the_request() {
        assert_eq!(aligned_span(0, 4096), (0, 4096));
        assert_eq!(aligned_span(512, 512), (0, 4096));
        assert_eq!(aligned_span(4000, 200), (0, 8192));
        assert_eq!(aligned_span(8192, 1), (8192, 4096));
    }
}
