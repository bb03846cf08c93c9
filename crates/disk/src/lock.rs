//! Opening image files with an open-file-description lock, so two users
//! cannot write one image at once.
//!
//! OFD locks (`F_OFD_SETLK`) belong to the open file, not the process: two
//! disks of one process conflict just like two processes do, and the lock goes
//! away with the last descriptor, also on `kill -9`. A read-write open takes a
//! write lock over the whole file, a read-only open (backing files, `access=ro`)
//! a read lock; so any number of readers share an image, and a writer excludes
//! everyone, including QEMU, which locks single bytes of the same files.

use crate::error::{DiskError, Result};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How to open an image file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileMode {
    pub write: bool,
    pub direct: bool,
}

/// Opens `path` and locks it according to `mode`.
pub(crate) fn open_locked(path: &Path, mode: FileMode) -> Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(mode.write);
    if mode.direct {
        opts.custom_flags(libc::O_DIRECT);
    }
    let file = opts.open(path).map_err(|source| DiskError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    lock_patiently(&file, mode.write).map_err(|e| match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => DiskError::Locked {
            path: path.to_path_buf(),
            wanted_write: mode.write,
        },
        _ => DiskError::io(path, "lock", e),
    })?;
    Ok(file)
}

/// Creates a new file (never replacing one) and write-locks it.
pub(crate) fn create_locked(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                DiskError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                DiskError::Open {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    lock(&file, true).map_err(|e| DiskError::io(path, "lock", e))?;
    Ok(file)
}

/// How long a conflicting lock may take to go away before the image counts
/// as in use: a process that forks holds our open files (and so their OFD
/// locks) until its child execs, and a monitor that just ended may still be
/// closing its images.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(300);

fn lock_patiently(file: &File, write: bool) -> io::Result<()> {
    let start = std::time::Instant::now();
    loop {
        match lock(file, write) {
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES))
                    && start.elapsed() < LOCK_PATIENCE =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

fn lock(file: &File, write: bool) -> io::Result<()> {
    // SAFETY: all-zero is a valid `struct flock`; we fill in the fields used.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = if write { libc::F_WRLCK } else { libc::F_RDLCK } as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = 0;
    fl.l_len = 0; // the whole file, however large it grows
                  // SAFETY: valid descriptor and a valid flock for the duration of the call.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
