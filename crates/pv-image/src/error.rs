//! Errors of the kernel image loader.

use std::path::PathBuf;

/// Why a kernel image could not be loaded.
///
/// Each message says what is wrong and what to do about it. [`crate::load_kernel`]
/// wraps every error except [`ImageError::Unreadable`] in [`ImageError::InFile`],
/// which names the file; [`ImageError::root`] gives the underlying error.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The kernel file could not be read (missing, no permission, I/O error).
    #[error(
        "cannot read kernel image {}: {error}; check the `kernel =` path and its permissions",
        path.display()
    )]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },

    /// An error while parsing the named file; `error` says what is wrong.
    #[error("kernel image {}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<ImageError>,
    },

    /// The bytes are neither an ELF vmlinux nor a bzImage.
    #[error(
        "not a kernel image: {found}; expected an ELF vmlinux (magic 7f 'E' 'L' 'F') \
         or an x86 bzImage (\"HdrS\" at offset 0x202) — point `kernel =` at the \
         vmlinuz/vmlinux file, not at an initrd or disk image"
    )]
    NotAKernel {
        /// What was found instead (the leading bytes, or a recognised format).
        found: String,
    },

    /// The image ends before a structure it declares.
    #[error(
        "truncated kernel image: {part} needs {needed} bytes but only {available} are \
         there; the file is incomplete or corrupt, fetch or extract it again"
    )]
    Truncated {
        /// Which part is cut (e.g. "ELF header", "program header 2", "bzImage payload").
        part: String,
        needed: u64,
        available: u64,
    },

    /// A bzImage whose boot protocol predates the payload fields (2.08).
    #[error(
        "bzImage uses boot protocol {}.{:02}, which has no payload fields (needs 2.08 or \
         later, Linux 2.6.26+); use a newer kernel or pass the uncompressed vmlinux",
        version >> 8, version & 0xff
    )]
    OldBootProtocol { version: u16 },

    /// The bzImage payload uses a compression method this loader does not decode.
    #[error(
        "the bzImage payload is compressed with {method}, which rxen does not decode \
         (supported: xz, gzip, lz4); use a kernel built with CONFIG_KERNEL_XZ (as Debian's are) \
         or pass the uncompressed vmlinux"
    )]
    UnsupportedCompression {
        /// "bzip2", "lzma", "lzo", "lz4 (frame format)" or "zstd".
        method: &'static str,
    },

    /// The bzImage payload starts with bytes that match no known compression.
    #[error(
        "the bzImage payload starts with {} which is no known compression format \
         (xz, gzip, bzip2, lzma, lzo, lz4, zstd) nor ELF; the image is corrupt or not a \
         Linux kernel — pass the uncompressed vmlinux instead",
        hex(magic)
    )]
    UnknownCompression { magic: Vec<u8> },

    /// The compressed payload is corrupt.
    #[error(
        "cannot decompress the {method} payload of the bzImage: {detail}; the image is \
         corrupt, fetch or extract it again"
    )]
    Decompress {
        method: &'static str,
        detail: String,
    },

    /// A size beyond any plausible kernel.
    #[error(
        "{what} is {size} bytes, more than the limit of {limit} bytes for a kernel \
         image; this is not a kernel (or a corrupt one) — check the `kernel =` path"
    )]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },

    /// An ELF image without Xen PV support.
    #[error(
        "kernel lacks Xen PV support ({missing}): it was built without CONFIG_XEN_PV; \
         use a kernel built with CONFIG_XEN_PV=y, such as Debian's linux-image-amd64 \
         or linux-image-cloud-amd64"
    )]
    NotXenPv {
        /// "no Xen ELF notes" or "no XEN_ELFNOTE_ENTRY note".
        missing: &'static str,
    },

    /// A 32-bit (ELFCLASS32) kernel.
    #[error(
        "32-bit kernels are not supported: rxen runs x86-64 PV guests only; use an \
         amd64 kernel"
    )]
    Elf32,

    /// A 64-bit ELF for another architecture (or big-endian).
    #[error(
        "the kernel is an ELF for {arch}, not x86-64; rxen runs x86-64 PV guests only, \
         use an amd64 kernel"
    )]
    WrongArch { arch: String },

    /// Structurally broken ELF headers.
    #[error("malformed ELF kernel: {detail}; the image is corrupt or not a Linux kernel")]
    MalformedElf { detail: String },

    /// A Xen note whose value has the wrong form.
    #[error(
        "malformed Xen ELF note {note}: {detail}; the kernel's Xen notes are corrupt, \
         use an unmodified distribution kernel"
    )]
    BadNote { note: &'static str, detail: String },

    /// A PT_LOAD segment whose load address falls outside the virtual range the
    /// notes declare (below VIRT_BASE, or past the end of the address space).
    #[error(
        "PT_LOAD segment {index} (p_paddr {paddr:#x}, memsz {memsz:#x}) does not fit the \
         kernel's virtual range: with VIRT_BASE {virt_base:#x} and PADDR_OFFSET \
         {paddr_offset:#x} it would load {reason}; the kernel's Xen notes do not match its \
         program headers"
    )]
    SegmentOutOfRange {
        index: usize,
        paddr: u64,
        memsz: u64,
        virt_base: u64,
        paddr_offset: u64,
        reason: &'static str,
    },

    /// ENTRY (or HYPERCALL_PAGE) points outside the loaded segments.
    #[error(
        "the {note} address {addr:#x} lies outside the loaded kernel \
         ({start:#x}..{end:#x}); the kernel's Xen notes do not match its program headers"
    )]
    AddressOutOfRange {
        note: &'static str,
        addr: u64,
        start: u64,
        end: u64,
    },
}

impl ImageError {
    /// The underlying error, looking through [`ImageError::InFile`].
    pub fn root(&self) -> &ImageError {
        match self {
            ImageError::InFile { error, .. } => error.root(),
            other => other,
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let v: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if v.is_empty() {
        "no bytes".into()
    } else {
        format!("bytes {}", v.join(" "))
    }
}
