//! A writer (and a reader, for checks) of the `newc` cpio format that Linux
//! unpacks as an initramfs (`Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Each entry is a 110-byte ASCII header (`070701` and thirteen 8-digit hex
//! fields), the NUL-terminated name padded to a multiple of four bytes, then the
//! data padded the same way. The archive ends with an entry named `TRAILER!!!`.
//! The writer is deterministic: inode numbers count up from 1 and every mtime,
//! uid and gid is 0, so the same entries always give the same bytes.

use std::fmt;

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// File-type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170_000;
/// Directory.
pub const S_IFDIR: u32 = 0o040_000;
/// Regular file.
pub const S_IFREG: u32 = 0o100_000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120_000;
/// Character device.
pub const S_IFCHR: u32 = 0o020_000;

/// One entry as read back from an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, without a leading `/`.
    pub name: String,
    /// Full `st_mode`: type bits and permissions.
    pub mode: u32,
    /// File contents, or the target of a symlink.
    pub data: Vec<u8>,
    /// `(major, minor)` of a device node; `(0, 0)` otherwise.
    pub rdev: (u32, u32),
    /// Inode number.
    pub ino: u32,
    /// Link count.
    pub nlink: u32,
}

/// Builds a `newc` archive in memory. Callers add parent directories before
/// their children (the kernel does not create missing parents).
#[derive(Default)]
pub struct Writer {
    out: Vec<u8>,
    next_ino: u32,
}

impl Writer {
    /// An empty archive.
    pub fn new() -> Writer {
        Writer {
            out: Vec::new(),
            next_ino: 1,
        }
    }

    /// Adds a directory with permission bits `perm` (e.g. `0o755`).
    pub fn dir(&mut self, name: &str, perm: u32) {
        self.entry(name, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[]);
    }

    /// Adds a regular file with permission bits `perm`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | (perm & 0o7777), 1, (0, 0), data);
    }

    /// Adds a symbolic link `name` -> `target`.
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[]);
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.write_header(TRAILER, 0, 0, 1, (0, 0), 0);
        self.out
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let name = name.trim_start_matches('/');
        let ino = self.next_ino;
        self.next_ino += 1;
        let size = u32::try_from(data.len()).expect("cpio newc entries are limited to 4 GiB");
        self.write_header(name, ino, mode, nlink, rdev, size);
        self.out.extend_from_slice(data);
        pad4(&mut self.out);
    }

    fn write_header(
        &mut self,
        name: &str,
        ino: u32,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        size: u32,
    ) {
        let namesize = name.len() as u32 + 1;
        let fields = [
            ino, mode, 0, /* uid */
            0, /* gid */
            nlink, 0, /* mtime */
            size, 0, /* devmajor */
            0, /* devminor */
            rdev.0, rdev.1, namesize, 0, /* check */
        ];
        self.out.extend_from_slice(MAGIC);
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        pad4(&mut self.out);
    }
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Why an archive could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset of the entry that failed.
    pub offset: usize,
    /// What was wrong there.
    pub what: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad cpio archive at byte {}: {}", self.offset, self.what)
    }
}

impl std::error::Error for ParseError {}

/// Reads a `newc` archive back into its entries (without the trailer).
pub fn parse(buf: &[u8]) -> Result<Vec<Entry>, ParseError> {
    let mut entries = Vec::new();
    let mut off = 0;
    loop {
        let err = |what| ParseError { offset: off, what };
        let header = buf
            .get(off..off + HEADER_LEN)
            .ok_or(err("truncated header"))?;
        if &header[..6] != MAGIC {
            return Err(err("bad magic (not newc)"));
        }
        let mut fields = [0u32; 13];
        for (i, f) in fields.iter_mut().enumerate() {
            let hex = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i])
                .map_err(|_| err("non-ASCII header field"))?;
            *f = u32::from_str_radix(hex, 16).map_err(|_| err("non-hex header field"))?;
        }
        let [ino, mode, _uid, _gid, nlink, _mtime, size, _maj, _min, rmaj, rmin, namesize, _chk] =
            fields;
        let name_start = off + HEADER_LEN;
        let name_end = name_start + namesize as usize;
        let name_bytes = buf.get(name_start..name_end).ok_or(err("truncated name"))?;
        let name = name_bytes
            .strip_suffix(&[0])
            .ok_or(err("name not NUL-terminated"))?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| err("name not UTF-8"))?;
        let data_start = align4(name_end);
        let data_end = data_start + size as usize;
        let data = buf
            .get(data_start..data_end)
            .ok_or(err("truncated data"))?
            .to_vec();
        off = align4(data_end);
        if name == TRAILER {
            return Ok(entries);
        }
        entries.push(Entry {
            name,
            mode,
            data,
            rdev: (rmaj, rmin),
            ino,
            nlink,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::new();
        w.dir("bin", 0o755);
        w.file("/bin/busybox", 0o755, b"\x7fELF-ish");
        w.symlink("bin/sh", "busybox");
        w.char_dev("dev/console", 0o600, 5, 1);
        w.file("init", 0o755, b"#!/bin/sh\necho hi\n");
        w.file("empty", 0o644, b"");
        w.finish()
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        assert!(bytes.len().is_multiple_of(4));
        let e = parse(&bytes).unwrap();
        let names: Vec<_> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "dev/console",
                "init",
                "empty"
            ]
        );
        assert_eq!(e[0].mode, S_IFDIR | 0o755);
        assert_eq!(e[1].mode, S_IFREG | 0o755);
        assert_eq!(e[1].data, b"\x7fELF-ish");
        assert_eq!(e[2].mode & S_IFMT, S_IFLNK);
        assert_eq!(e[2].data, b"busybox");
        assert_eq!(e[3].mode, S_IFCHR | 0o600);
        assert_eq!(e[3].rdev, (5, 1));
        assert_eq!(e[4].data, b"#!/bin/sh\necho hi\n");
        assert!(e[5].data.is_empty());
        let inos: Vec<_> = e.iter().map(|e| e.ino).collect();
        assert_eq!(inos, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn deterministic() {
        assert_eq!(sample(), sample());
    }

    #[test]
    fn header_layout() {
        let mut w = Writer::new();
        w.file("a", 0o644, b"xyz");
        let b = w.finish();
        // Header, "a\0" padded to 112, data "xyz" padded to 116, then trailer.
        assert_eq!(&b[..6], b"070701");
        assert_eq!(&b[6..14], b"00000001"); // ino
        assert_eq!(&b[14..22], b"000081a4"); // mode 0100644
        assert_eq!(&b[54..62], b"00000003"); // filesize
        assert_eq!(&b[94..102], b"00000002"); // namesize
        assert_eq!(&b[110..112], b"a\0");
        assert_eq!(&b[112..115], b"xyz");
        assert_eq!(&b[116..122], b"070701");
        assert_eq!(b.len(), 116 + align4(110 + 11));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"070707garbage").is_err());
        let bytes = sample();
        assert!(parse(&bytes[..bytes.len() - 20]).is_err());
    }

    /// GNU cpio, when installed (CI installs Debian's `cpio`), lists what we wrote.
    #[test]
    fn gnu_cpio_lists_archive() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let Ok(mut child) = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            eprintln!("cpio not installed; skipping the cross-check with GNU cpio");
            return;
        };
        child.stdin.take().unwrap().write_all(&sample()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<_> = listing.lines().collect();
        assert_eq!(lines.len(), 6, "{listing}");
        assert!(lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" bin"));
        assert!(lines[1].starts_with("-rwxr-xr-x") && lines[1].ends_with(" bin/busybox"));
        assert!(lines[2].starts_with("lrwxrwxrwx") && lines[2].ends_with("bin/sh -> busybox"));
        assert!(lines[3].starts_with("crw-------") && lines[3].contains("5,"));
        assert!(lines[3].ends_with(" dev/console"));
    }
}
