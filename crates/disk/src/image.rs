//! Image operations for the toolstack: create, clone (thin qcow2 overlay),
//! show a backing chain, recognise a format.

use crate::error::{DiskError, Result};
use crate::lock::create_locked;
use crate::{Format, MAX_CHAIN};
use imago::file::File as ImagoFile;
use imago::qcow2::Qcow2;
use imago::{FormatAccess, FormatCreateBuilder, StorageOpenOptions};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// The first bytes of every qcow2 file.
const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

/// One image of a backing chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainEntry {
    /// The file (as named by the user or resolved from the header above it).
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Its virtual disk size in bytes.
    pub size: u64,
    /// The backing file its header names, resolved.
    pub backing: Option<PathBuf>,
}

/// Creates a new, empty image of `size` bytes. Never replaces a file.
pub fn create(path: &Path, format: Format, size: u64) -> Result<()> {
    check_size(path, size)?;
    let file = create_locked(path)?;
    let result = match format {
        Format::Raw => file
            .set_len(size)
            .and_then(|()| file.sync_all())
            .map_err(|e| DiskError::io(path, "create", e)),
        Format::Qcow2 => write_qcow2(path, file, size, None),
    };
    if result.is_err() {
        // Leave nothing half-made behind; we created the file ourselves.
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Creates `overlay`, a qcow2 image over `base` (its backing file): a thin
/// copy-on-write clone. `base` stays unchanged as long as it is only used as
/// a backing file. `base_format` is probed when `None` (fine for the host's
/// own images; never probe an image a guest could have written).
pub fn clone(base: &Path, overlay: &Path, base_format: Option<Format>) -> Result<()> {
    let base_abs = std::fs::canonicalize(base).map_err(|source| DiskError::Open {
        path: base.to_path_buf(),
        source,
    })?;
    let format = match base_format {
        Some(f) => f,
        None => probe_format(&base_abs)?,
    };
    // Walking the whole chain first refuses a broken base before anything
    // is written.
    let top = chain_as(&base_abs, format)?
        .into_iter()
        .next()
        .expect("a chain has at least its top image");
    let file = create_locked(overlay)?;
    let result = write_qcow2(overlay, file, top.size, Some((&base_abs, format)));
    if result.is_err() {
        let _ = std::fs::remove_file(overlay);
    }
    result
}

/// The backing chain of `path`, top first. Opens nothing for writing and
/// takes no locks, so it works on images in use.
pub fn chain(path: &Path) -> Result<Vec<ChainEntry>> {
    chain_as(path, probe_format(path)?)
}

/// Reads the magic number: qcow2 or raw. Only for trusted images: a guest
/// with write access to a raw image can write a qcow2 header into it.
pub fn probe_format(path: &Path) -> Result<Format> {
    let mut file = File::open(path).map_err(|source| DiskError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut magic = [0u8; 4];
    match file.read_exact(&mut magic) {
        Ok(()) if magic == QCOW2_MAGIC => Ok(Format::Qcow2),
        Ok(()) => Ok(Format::Raw),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(Format::Raw),
        Err(e) => Err(DiskError::io(path, "read", e)),
    }
}

fn chain_as(path: &Path, format: Format) -> Result<Vec<ChainEntry>> {
    let mut out: Vec<ChainEntry> = Vec::new();
    let mut next = Some((path.to_path_buf(), format));
    while let Some((path, format)) = next.take() {
        if out.len() == MAX_CHAIN {
            return Err(DiskError::ChainTooLong {
                path: out[0].path.clone(),
                max: MAX_CHAIN,
            });
        }
        let entry = match read_entry(&path, format) {
            Ok(e) => e,
            Err(DiskError::Open { source, .. }) if !out.is_empty() => {
                let parent = &out[out.len() - 1];
                return Err(DiskError::Backing {
                    path: parent.path.clone(),
                    backing: path,
                    reason: source.to_string(),
                });
            }
            Err(e) => return Err(e),
        };
        if let Some(b) = &entry.backing {
            next = Some((b.clone(), entry_backing_format(&entry)?));
        }
        out.push(entry);
    }
    Ok(out)
}

/// A backing file's format: the header's word when it says, else probed
/// (as QEMU does; a backing file is read-only to guests).
fn entry_backing_format(entry: &ChainEntry) -> Result<Format> {
    let Some(backing) = &entry.backing else {
        unreachable!("called only with a backing file")
    };
    let file = File::open(&entry.path).map_err(|source| DiskError::Open {
        path: entry.path.clone(),
        source,
    })?;
    let q = open_header(&entry.path, file)?;
    match q.implicit_backing_format().map(String::as_str) {
        Some("qcow2") => Ok(Format::Qcow2),
        Some("raw") | Some("file") => Ok(Format::Raw),
        Some(other) => Err(DiskError::Backing {
            path: entry.path.clone(),
            backing: backing.clone(),
            reason: format!("unsupported backing format {other:?}"),
        }),
        None => probe_format(backing).map_err(|e| DiskError::Backing {
            path: entry.path.clone(),
            backing: backing.clone(),
            reason: e.to_string(),
        }),
    }
}

fn read_entry(path: &Path, format: Format) -> Result<ChainEntry> {
    let file = File::open(path).map_err(|source| DiskError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    match format {
        Format::Raw => {
            let meta = file
                .metadata()
                .map_err(|e| DiskError::io(path, "stat", e))?;
            let size = if meta.file_type().is_block_device() {
                crate::raw::block_device_size(&file)
                    .map_err(|e| DiskError::io(path, "BLKGETSIZE64", e))?
            } else {
                meta.len()
            };
            Ok(ChainEntry {
                path: path.to_path_buf(),
                format,
                size,
                backing: None,
            })
        }
        Format::Qcow2 => {
            let q = open_header(path, file)?;
            let backing = q.implicit_backing_file().map(|b| resolve(path, b));
            let size = FormatAccess::new(q).size();
            Ok(ChainEntry {
                path: path.to_path_buf(),
                format,
                size,
                backing,
            })
        }
    }
}

/// Parses a qcow2 header without opening anything it names.
fn open_header(path: &Path, file: File) -> Result<Qcow2<ImagoFile>> {
    let opts = StorageOpenOptions::new().write(false).filename(path);
    let storage =
        ImagoFile::from_open_file(file, opts).map_err(|e| DiskError::io(path, "open", e))?;
    Qcow2::<ImagoFile>::open_image(storage, false).map_err(|e| DiskError::Corrupt {
        path: path.to_path_buf(),
        format: "qcow2",
        reason: e.to_string(),
    })
}

/// A backing file name is relative to the directory of the image naming it.
fn resolve(image: &Path, backing: &str) -> PathBuf {
    let b = Path::new(backing);
    if b.is_absolute() {
        return b.to_path_buf();
    }
    match image.parent() {
        Some(dir) => dir.join(b),
        None => b.to_path_buf(),
    }
}

fn check_size(path: &Path, size: u64) -> Result<()> {
    if size == 0 || !size.is_multiple_of(512) {
        return Err(DiskError::Unsupported {
            path: path.to_path_buf(),
            what: format!("a size of {size} bytes (give a non-zero multiple of 512)"),
        });
    }
    Ok(())
}

fn write_qcow2(path: &Path, file: File, size: u64, backing: Option<(&Path, Format)>) -> Result<()> {
    let opts = StorageOpenOptions::new().write(true).filename(path);
    let storage =
        ImagoFile::from_open_file(file, opts).map_err(|e| DiskError::io(path, "create", e))?;
    let mut builder = Qcow2::<ImagoFile>::create_builder(storage).size(size);
    if let Some((base, format)) = backing {
        builder = builder.backing(
            base.to_string_lossy().into_owned(),
            format.as_str().to_string(),
        );
    }
    builder
        .create()
        .map_err(|e| DiskError::io(path, "create qcow2", e))?;
    // imago wrote through its own handle; make the new image durable.
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| DiskError::io(path, "fsync", e))
}
