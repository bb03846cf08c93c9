//! The on-disk cache: where it is, content hashes, and writes that other
//! processes never see half done.

use crate::PrepError;
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where rxen keeps fetched and built guest artefacts: `$RXEN_CACHE` if set,
/// else `$XDG_CACHE_HOME/rxen`, else `~/.cache/rxen`. Created on demand; if it
/// cannot be created, the first write into it reports why.
pub fn cache_dir() -> PathBuf {
    let dir = cache_dir_from(
        std::env::var_os("RXEN_CACHE"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    );
    let _ = fs::create_dir_all(&dir);
    dir
}

pub(crate) fn cache_dir_from(
    rxen: Option<OsString>,
    xdg: Option<OsString>,
    home: Option<OsString>,
) -> PathBuf {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(rxen) {
        return dir;
    }
    if let Some(xdg) = set(xdg) {
        return xdg.join("rxen");
    }
    set(home)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache")
        .join("rxen")
}

/// Lower-case hex SHA-256 of the parts, each prefixed by its length so that
/// `("ab", "c")` and `("a", "bc")` differ.
pub(crate) fn hash_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A name no other thread or process uses at the same time.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}.{n}", std::process::id())
}

pub(crate) fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PrepError {
    let path = path.to_path_buf();
    move |source| PrepError::Io { what, path, source }
}

pub(crate) fn create_dir(path: &Path) -> Result<(), PrepError> {
    fs::create_dir_all(path).map_err(io_err("cannot create directory", path))
}

/// Writes `data` to `path` by writing a temporary file beside it and renaming
/// it into place, so readers see either nothing or the whole file.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PrepError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        create_dir(parent)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", unique_suffix()));
    let tmp = PathBuf::from(tmp);
    let result = fs::write(&tmp, data)
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)))
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err("cannot write", path))
}

/// A scratch directory under the cache, removed when dropped.
pub(crate) struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub(crate) fn new(cache: &Path) -> Result<ScratchDir, PrepError> {
        let path = cache.join("tmp").join(unique_suffix());
        let _ = fs::remove_dir_all(&path);
        create_dir(&path)?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_precedence() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(
            cache_dir_from(s("/c"), s("/x"), s("/h")),
            PathBuf::from("/c")
        );
        assert_eq!(
            cache_dir_from(None, s("/x"), s("/h")),
            PathBuf::from("/x/rxen")
        );
        assert_eq!(
            cache_dir_from(s(""), s(""), s("/h")),
            PathBuf::from("/h/.cache/rxen")
        );
    }

    #[test]
    fn hash_is_stable_and_framed() {
        // Pinned value: changing the hashing invalidates every cache entry.
        assert_eq!(
            hash_hex(&[b"abc"]),
            "ce91dc5eec0139adf091900d225971d6ad246a845bad791b5693a9d0d55dd391"
        );
        assert_eq!(hash_hex(&[b"ab", b"c"]), hash_hex(&[b"ab", b"c"]));
        assert_ne!(hash_hex(&[b"ab", b"c"]), hash_hex(&[b"a", b"bc"]));
        assert_eq!(hash_hex(&[b""]).len(), 64);
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = std::env::temp_dir().join(format!("guestprep-test-{}", unique_suffix()));
        let f = dir.join("sub/file");
        write_atomic(&f, b"one", 0o644).unwrap();
        write_atomic(&f, b"two", 0o755).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.join("sub")).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
