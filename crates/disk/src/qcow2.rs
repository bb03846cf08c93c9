//! qcow2 images through the `imago` crate, with backing chains.
//!
//! imago opens the files a qcow2 header names (backing file, external data
//! file) through an "open gate". Ours opens each of them with the same OFD
//! locking as the top image (backing files shared, read-only), bounds the chain
//! length, and remembers which file failed so the error names it.

use crate::error::{DiskError, Result};
use crate::lock::{open_locked, FileMode};
use crate::{check_range, Disk, MAX_CHAIN};
use imago::file::File as ImagoFile;
use imago::format::gate::ImplicitOpenGate;
use imago::qcow2::Qcow2;
use imago::{FormatAccess, FormatDriverBuilder, StorageOpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// A qcow2 image, with its backing chain open read-only below it.
pub struct Qcow2Disk {
    access: FormatAccess<ImagoFile>,
    path: PathBuf,
    read_only: bool,
}

impl std::fmt::Debug for Qcow2Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2Disk")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Qcow2Disk {
    /// Opens a qcow2 image and its backing chain.
    pub fn open(path: &Path, read_only: bool, direct: bool) -> Result<Self> {
        let writable = !read_only;
        let file = open_locked(
            path,
            FileMode {
                write: writable,
                direct,
            },
        )?;
        let opts = StorageOpenOptions::new()
            .write(writable)
            .direct(direct)
            .filename(path);
        let storage =
            ImagoFile::from_open_file(file, opts).map_err(|e| DiskError::io(path, "open", e))?;
        let gate = LockingGate::new(path);
        let opened = Qcow2::<ImagoFile>::builder(storage)
            .write(writable)
            .storage_open_options(StorageOpenOptions::new().direct(direct))
            .open(gate.clone());
        let qcow2 = opened.map_err(|e| gate.error_for(path, e))?;
        Ok(Qcow2Disk {
            access: FormatAccess::new(qcow2),
            path: path.to_path_buf(),
            read_only,
        })
    }
}

impl Disk for Qcow2Disk {
    fn size(&self) -> u64 {
        self.access.size()
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&self.path, self.size(), offset, buf.len() as u64)?;
        self.access
            .read(buf, offset)
            .map_err(|e| DiskError::io(&self.path, "read", e))
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_writable()?;
        check_range(&self.path, self.size(), offset, buf.len() as u64)?;
        self.access
            .write(buf, offset)
            .map_err(|e| DiskError::io(&self.path, "write", e))
    }

    fn flush(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        // flush() writes imago's cached metadata (L2 tables, refcounts) to
        // the file; sync() then makes data and metadata durable.
        self.access
            .flush()
            .map_err(|e| DiskError::io(&self.path, "flush", e))?;
        self.access
            .sync()
            .map_err(|e| DiskError::io(&self.path, "sync", e))
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<()> {
        self.check_writable()?;
        check_range(&self.path, self.size(), offset, len)?;
        if len == 0 {
            return Ok(());
        }
        match self.access.discard_to_any(offset, len) {
            Ok(()) => Ok(()),
            // A hint only: what cannot be dropped stays allocated.
            Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
            Err(e) => Err(DiskError::io(&self.path, "discard", e)),
        }
    }
}

/// The open gate: locks, counts and remembers failures.
#[derive(Clone)]
struct LockingGate {
    state: Arc<Mutex<GateState>>,
}

struct GateState {
    /// Files opened so far (the top image counts).
    opened: usize,
    /// The last file opened: the one whose header names the next.
    last: PathBuf,
    /// The first (innermost) failure, precise about which file.
    failure: Option<DiskError>,
}

impl LockingGate {
    fn new(top: &Path) -> Self {
        LockingGate {
            state: Arc::new(Mutex::new(GateState {
                opened: 1,
                last: top.to_path_buf(),
                failure: None,
            })),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut GateState) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn record(&self, err: DiskError) -> io::Error {
        let msg = err.to_string();
        self.with(|s| {
            if s.failure.is_none() {
                s.failure = Some(err);
            }
        });
        io::Error::other(msg)
    }

    /// The error to report for a failed open of `top`.
    fn error_for(&self, top: &Path, e: io::Error) -> DiskError {
        self.with(|s| s.failure.take())
            .unwrap_or(DiskError::Corrupt {
                path: top.to_path_buf(),
                format: "qcow2",
                reason: e.to_string(),
            })
    }
}

impl ImplicitOpenGate<ImagoFile> for LockingGate {
    fn open_format<F: FormatDriverBuilder<ImagoFile>>(
        &mut self,
        builder: F,
    ) -> io::Result<FormatAccess<ImagoFile>> {
        let path = builder.get_image_path();
        match builder.open(self.clone()) {
            Ok(image) => Ok(FormatAccess::new(image)),
            Err(e) => {
                let path = path.unwrap_or_else(|| self.with(|s| s.last.clone()));
                Err(self.record(DiskError::Corrupt {
                    path,
                    format: format_name(F::FORMAT),
                    reason: e.to_string(),
                }))
            }
        }
    }

    fn open_storage(&mut self, opts: StorageOpenOptions) -> io::Result<ImagoFile> {
        let (parent, count) = self.with(|s| {
            s.opened += 1;
            (s.last.clone(), s.opened)
        });
        let Some(path) = opts.get_filename().map(Path::to_path_buf) else {
            return Err(io::Error::other("an image refers to a file without a name"));
        };
        if count > MAX_CHAIN {
            return Err(self.record(DiskError::ChainTooLong {
                path: parent,
                max: MAX_CHAIN,
            }));
        }
        let mode = FileMode {
            write: opts.get_writable(),
            direct: opts.get_direct(),
        };
        let file = match open_locked(&path, mode) {
            Ok(f) => f,
            Err(e) => {
                let reason = match &e {
                    DiskError::Open { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                return Err(self.record(DiskError::Backing {
                    path: parent,
                    backing: path,
                    reason,
                }));
            }
        };
        self.with(|s| s.last = path.clone());
        ImagoFile::from_open_file(file, opts)
    }
}

fn format_name(f: imago::format::Format) -> &'static str {
    match f {
        imago::format::Format::Raw => "raw",
        imago::format::Format::Qcow2 => "qcow2",
        _ => "image",
    }
}
