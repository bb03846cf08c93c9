//! A cache of decompressed kernels.
//!
//! Decompressing a Debian bzImage's XZ payload takes ~0.5 s here (more on a
//! busy machine), a third of the boot budget, and it is the same work on
//! every boot of the same kernel. The cache keeps the extracted ELF vmlinux
//! under the SHA-256 of the image file, so a changed file is a different
//! entry and a stale one can never be used. A cache that cannot be read or
//! written only costs the decompression: every failure falls back to it.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{extract_vmlinux, parse_elf, ImageError, KernelImage};

/// Where decompressed kernels are kept.
#[derive(Debug, Clone)]
pub struct KernelCache {
    dir: PathBuf,
}

impl KernelCache {
    pub fn new(dir: impl Into<PathBuf>) -> KernelCache {
        KernelCache { dir: dir.into() }
    }

    /// `kernels/` in rxen's cache: `$RXEN_CACHE`, else `$XDG_CACHE_HOME/rxen`,
    /// else `~/.cache/rxen` (the same place guestprep keeps guests in).
    pub fn in_user_cache() -> KernelCache {
        let set = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let root = set("RXEN_CACHE")
            .or_else(|| set("XDG_CACHE_HOME").map(|d| d.join("rxen")))
            .unwrap_or_else(|| {
                set("HOME")
                    .unwrap_or_else(std::env::temp_dir)
                    .join(".cache")
                    .join("rxen")
            });
        KernelCache::new(root.join("kernels"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Parses `bytes` (a bzImage or an ELF vmlinux) like
    /// [`crate::parse_kernel`], taking the decompressed payload from the cache
    /// when it is there and putting it there when it is not.
    pub fn parse(&self, bytes: &[u8]) -> Result<KernelImage, ImageError> {
        if bytes.starts_with(b"\x7fELF") {
            return parse_elf(bytes);
        }
        let entry = self.entry(bytes);
        if let Ok(cached) = map_entry(&entry) {
            // Parsed once: a damaged entry (e.g. a disk that filled up)
            // fails here and is dropped and rebuilt.
            match parse_elf(&cached) {
                Ok(image) => {
                    tracing::debug!(entry = %entry.display(), "decompressed kernel from the cache");
                    return Ok(image);
                }
                Err(_) => {
                    let _ = fs::remove_file(&entry);
                }
            }
        }
        let vmlinux = extract_vmlinux(bytes)?;
        if let Err(e) = store(&entry, &vmlinux) {
            tracing::debug!(entry = %entry.display(), "cannot cache the decompressed kernel: {e}");
        }
        parse_elf(&vmlinux)
    }

    fn entry(&self, bytes: &[u8]) -> PathBuf {
        let hash: String = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir.join(format!("{hash}.vmlinux"))
    }
}

/// The cache entry at `path`, mapped read-only: parsing it touches only the
/// headers and the loadable segments, straight from the page cache (reading
/// it first copied all of a Debian kernel's 66 MiB, symbols included, into
/// fresh memory on every boot).
fn map_entry(path: &Path) -> std::io::Result<memmap2::Mmap> {
    let file = fs::File::open(path)?;
    // SAFETY: entries are written once under a temporary name and renamed
    // into place (`store`), never modified afterwards; one replaced or
    // removed meanwhile keeps this mapping's pages. A file truncated under
    // the mapping by hand would fault (SIGBUS): the cache directory is
    // rxen's own.
    unsafe { memmap2::Mmap::map(&file) }
}

/// Writes `data` to `path` so that readers see all of it or nothing.
fn store(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("kernel"),
        std::process::id()
    ));
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}
