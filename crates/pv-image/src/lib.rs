//! Xen PV guest kernel image loader.
//!
//! Turns a Linux kernel built with `CONFIG_XEN_PV` — a bzImage (`vmlinuz`, as
//! Debian ships it) or a plain ELF `vmlinux` — into the pieces a PV domain
//! builder needs: the `PT_LOAD` segments at their Xen load addresses and the
//! Xen ELF notes (`/usr/include/xen/elfnote.h`). Pure functions: no KVM, no
//! guest memory.
//!
//! ```no_run
//! let image = pv_image::load_kernel("vmlinuz".as_ref())?;
//! assert!(image.notes.features.is_required("writable_page_tables"));
//! for seg in &image.segments {
//!     // copy seg.data to seg.vaddr, zero the rest up to seg.memsz
//! }
//! # Ok::<(), pv_image::ImageError>(())
//! ```
//!
//! # Formats
//!
//! - ELF64 x86-64 (`ET_EXEC`/`ET_DYN`); notes come from `PT_NOTE` segments,
//!   or from `SHT_NOTE` sections when no `PT_NOTE` carries Xen notes.
//! - bzImage (boot protocol 2.08+): the payload is found through the setup
//!   header (`payload_offset`/`payload_length` at 0x248/0x24c, relative to the
//!   protected-mode code at `(setup_sects + 1) * 512`). XZ, gzip and LZ4
//!   (legacy frames, as in Debian's cloud kernel) payloads are decoded; bzip2,
//!   lzma, lzo and zstd are recognised and refused with a message naming them.
//!   Linux appends the uncompressed size to the payload: XZ and gzip ignore
//!   it, LZ4 checks it (its legacy format has no end marker).
//!
//! # Load addresses
//!
//! Each `PT_LOAD` segment loads at `p_paddr + VIRT_BASE - PADDR_OFFSET`
//! (Xen's rule; `p_vaddr` is not used because the per-CPU segment has
//! `p_vaddr` 0). Segments must not start below `VIRT_BASE`, must not overlap,
//! and ENTRY (and HYPERCALL_PAGE, if present) must lie inside them.
//!
//! # XZ decoder choice (measured)
//!
//! Debian's 6.1.0-56-amd64 `vmlinuz` (8.1 MB XZ payload → 65.9 MB vmlinux),
//! on this project's 2-core machine:
//!
//! | decoder | release build | debug build |
//! | --- | --- | --- |
//! | `liblzma` 0.4.9 (C liblzma 5.8 built from source) | 0.47 s | 0.58 s |
//! | `lzma-rs` 0.3.0 | cannot decode it: "Unknown filter id 4" | — |
//! | `lzma-rs` 0.3.0 on the same vmlinux re-compressed without the BCJ filter | 0.91 s | 3.6 s |
//!
//! The kernel's XZ stream uses the x86 BCJ filter (`xz --x86`), which
//! `lzma-rs` does not implement; even without it `lzma-rs` is 2× slower
//! (6× in debug builds). So this crate uses `liblzma`.

mod bzimage;
mod cache;
mod elf;
mod error;
mod lz4;

use std::borrow::Cow;
use std::path::Path;

pub use cache::KernelCache;
pub use error::ImageError;

use elf::{Elf, PT_LOAD, PT_NOTE};

/// Largest kernel file accepted, and largest decompressed payload.
pub const MAX_DECOMPRESSED: u64 = 512 << 20;
/// Largest span of the loaded kernel (`virt_end - virt_start`). A Linux x86-64
/// kernel image is at most 1 GiB (`KERNEL_IMAGE_SIZE`).
pub const MAX_KERNEL_SPAN: u64 = 1 << 30;
const PAGE_SIZE: u64 = 4096;

/// A parsed kernel, ready to be copied into guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelImage {
    /// The Xen ELF notes.
    pub notes: XenNotes,
    /// The `PT_LOAD` segments with non-zero `memsz`, sorted by `vaddr`.
    pub segments: Vec<Segment>,
    /// Lowest segment `vaddr`.
    pub virt_start: u64,
    /// Highest `vaddr + memsz`, rounded up to a 4 KiB page.
    pub virt_end: u64,
}

/// One loadable segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Guest virtual load address: `p_paddr + virt_base - paddr_offset`.
    pub vaddr: u64,
    /// The file bytes (`p_filesz` of them).
    pub data: Vec<u8>,
    /// Size in memory; bytes beyond `data.len()` up to `memsz` are zero.
    pub memsz: u64,
}

/// The Xen ELF notes of a PV kernel (owner "Xen", types from `elfnote.h`).
/// Absent numeric notes are `None` (or Xen's default, as documented); absent
/// string notes are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XenNotes {
    /// XEN_ELFNOTE_ENTRY (1): virtual address of the PV entry point.
    pub entry: u64,
    /// XEN_ELFNOTE_VIRT_BASE (3); 0 if absent.
    pub virt_base: u64,
    /// XEN_ELFNOTE_PADDR_OFFSET (4); 0 if absent.
    pub paddr_offset: u64,
    /// XEN_ELFNOTE_HYPERCALL_PAGE (2): virtual address of the hypercall page.
    pub hypercall_page: Option<u64>,
    /// XEN_ELFNOTE_INIT_P2M (15): where the initial p2m list is to be mapped.
    pub init_p2m: Option<u64>,
    /// XEN_ELFNOTE_MOD_START_PFN (16) is present and non-zero.
    pub mod_start_pfn: bool,
    /// XEN_ELFNOTE_HV_START_LOW (12).
    pub hv_start_low: Option<u64>,
    /// XEN_ELFNOTE_FEATURES (10), parsed.
    pub features: Features,
    /// XEN_ELFNOTE_SUPPORTED_FEATURES (17): bitmap of XENFEAT_* numbers.
    pub supported_features: Option<u32>,
    /// XEN_ELFNOTE_GUEST_OS (6), e.g. "linux".
    pub guest_os: String,
    /// XEN_ELFNOTE_XEN_VERSION (5), e.g. "xen-3.0".
    pub xen_version: String,
    /// XEN_ELFNOTE_LOADER (8), e.g. "generic".
    pub loader: String,
    /// XEN_ELFNOTE_PAE_MODE (9), e.g. "yes".
    pub pae_mode: String,
    /// XEN_ELFNOTE_L1_MFN_VALID (13): the first (mask, value) pair.
    pub l1_mfn_valid: Option<(u64, u64)>,
    /// XEN_ELFNOTE_SUSPEND_CANCEL (14).
    pub suspend_cancel: Option<u32>,
    /// XEN_ELFNOTE_PHYS32_ENTRY (18): 32-bit physical entry (PVH), unused for PV.
    pub phys32_entry: Option<u32>,
}

/// The FEATURES note: `|`-separated XENFEAT names (without the `XENFEAT_`
/// prefix); a leading `!` marks a feature the kernel requires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// Names marked with `!`, in note order, without the `!`.
    pub required: Vec<String>,
    /// The other names, in note order.
    pub optional: Vec<String>,
}

impl Features {
    /// Parses a FEATURES string, e.g. `"!writable_page_tables|pae_pgdir_above_4gb"`.
    pub fn parse(s: &str) -> Features {
        let mut f = Features::default();
        for name in s.split('|').map(str::trim).filter(|n| !n.is_empty()) {
            match name.strip_prefix('!') {
                Some(req) => f.required.push(req.trim().to_string()),
                None => f.optional.push(name.to_string()),
            }
        }
        f
    }

    /// The kernel cannot run without `name`.
    pub fn is_required(&self, name: &str) -> bool {
        self.required.iter().any(|n| n == name)
    }

    /// The kernel names `name`, required or optional.
    pub fn mentions(&self, name: &str) -> bool {
        self.is_required(name) || self.optional.iter().any(|n| n == name)
    }
}

/// Reads and parses a kernel file. Errors other than an unreadable file come
/// wrapped in [`ImageError::InFile`], naming the file.
pub fn load_kernel(path: &Path) -> Result<KernelImage, ImageError> {
    load_kernel_with(path, None)
}

/// [`load_kernel`], decompressing through `cache` (see [`KernelCache`]).
pub fn load_kernel_cached(path: &Path, cache: &KernelCache) -> Result<KernelImage, ImageError> {
    load_kernel_with(path, Some(cache))
}

fn load_kernel_with(path: &Path, cache: Option<&KernelCache>) -> Result<KernelImage, ImageError> {
    let unreadable = |error| ImageError::Unreadable {
        path: path.to_path_buf(),
        error,
    };
    let in_file = |error| ImageError::InFile {
        path: path.to_path_buf(),
        error: Box::new(error),
    };
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    if size > MAX_DECOMPRESSED {
        return Err(in_file(ImageError::TooLarge {
            what: "the file",
            size,
            limit: MAX_DECOMPRESSED,
        }));
    }
    let bytes = std::fs::read(path).map_err(unreadable)?;
    match cache {
        Some(c) => c.parse(&bytes),
        None => parse_kernel(&bytes),
    }
    .map_err(in_file)
}

/// Parses a kernel image held in memory (bzImage or ELF vmlinux).
pub fn parse_kernel(bytes: &[u8]) -> Result<KernelImage, ImageError> {
    let vmlinux = extract_vmlinux(bytes)?;
    parse_elf(&vmlinux)
}

/// The ELF vmlinux inside `bytes`: `bytes` itself for an ELF, the decompressed
/// payload for a bzImage.
pub fn extract_vmlinux(bytes: &[u8]) -> Result<Cow<'_, [u8]>, ImageError> {
    if bytes.len() as u64 > MAX_DECOMPRESSED {
        return Err(ImageError::TooLarge {
            what: "the kernel image",
            size: bytes.len() as u64,
            limit: MAX_DECOMPRESSED,
        });
    }
    if bytes.starts_with(elf::ELF_MAGIC) {
        return Ok(Cow::Borrowed(bytes));
    }
    if bzimage::is_bzimage(bytes) {
        let payload = bzimage::payload(bytes)?;
        return bzimage::decompress(payload).map(Cow::Owned);
    }
    Err(ImageError::NotAKernel {
        found: describe(bytes),
    })
}

/// Names what a non-kernel file looks like, for [`ImageError::NotAKernel`].
fn describe(bytes: &[u8]) -> String {
    let head = error::hex(&bytes[..bytes.len().min(8)]);
    let kind = match bytes {
        [] => return "an empty file".into(),
        [0x1f, 0x8b, ..] => "gzip-compressed data (decompress it first)",
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => "xz-compressed data (decompress it first)",
        [b'0', b'7', b'0', b'7', b'0', b'1' | b'2', ..] => "a cpio archive (an initrd?)",
        [b'Q', b'F', b'I', 0xfb, ..] => "a qcow2 disk image",
        [b'M', b'Z', ..] => "a PE/EFI executable without an x86 boot header",
        _ => return format!("the file starts with {head}"),
    };
    format!("{kind}, starting with {head}")
}

/// Xen note numbers (`elfnote.h`).
mod note {
    pub const ENTRY: u32 = 1;
    pub const HYPERCALL_PAGE: u32 = 2;
    pub const VIRT_BASE: u32 = 3;
    pub const PADDR_OFFSET: u32 = 4;
    pub const XEN_VERSION: u32 = 5;
    pub const GUEST_OS: u32 = 6;
    pub const LOADER: u32 = 8;
    pub const PAE_MODE: u32 = 9;
    pub const FEATURES: u32 = 10;
    pub const HV_START_LOW: u32 = 12;
    pub const L1_MFN_VALID: u32 = 13;
    pub const SUSPEND_CANCEL: u32 = 14;
    pub const INIT_P2M: u32 = 15;
    pub const MOD_START_PFN: u32 = 16;
    pub const SUPPORTED_FEATURES: u32 = 17;
    pub const PHYS32_ENTRY: u32 = 18;
}

/// A numeric note: 1, 2, 4 or 8 bytes, little-endian.
fn numeric(desc: &[u8], name: &'static str) -> Result<u64, ImageError> {
    match desc.len() {
        1 | 2 | 4 | 8 => {
            let mut b = [0u8; 8];
            b[..desc.len()].copy_from_slice(desc);
            Ok(u64::from_le_bytes(b))
        }
        n => Err(ImageError::BadNote {
            note: name,
            detail: format!("a numeric note of {n} bytes (expected 1, 2, 4 or 8)"),
        }),
    }
}

fn numeric32(desc: &[u8], name: &'static str) -> Result<u32, ImageError> {
    let v = numeric(desc, name)?;
    u32::try_from(v).map_err(|_| ImageError::BadNote {
        note: name,
        detail: format!("value {v:#x} does not fit in 32 bits"),
    })
}

/// A string note: up to the first NUL (the terminator may be missing).
fn string(desc: &[u8]) -> String {
    let end = desc.iter().position(|&b| b == 0).unwrap_or(desc.len());
    String::from_utf8_lossy(&desc[..end]).into_owned()
}

/// Builds [`XenNotes`] from (type, desc) pairs of "Xen" notes, later notes
/// overriding earlier ones as in Xen's libelf.
fn xen_notes<'a>(notes: impl IntoIterator<Item = (u32, &'a [u8])>) -> Result<XenNotes, ImageError> {
    let mut n = XenNotes::default();
    let mut entry = None;
    let mut any = false;
    for (ty, desc) in notes {
        any = true;
        match ty {
            note::ENTRY => entry = Some(numeric(desc, "ENTRY")?),
            note::HYPERCALL_PAGE => n.hypercall_page = Some(numeric(desc, "HYPERCALL_PAGE")?),
            note::VIRT_BASE => n.virt_base = numeric(desc, "VIRT_BASE")?,
            note::PADDR_OFFSET => n.paddr_offset = numeric(desc, "PADDR_OFFSET")?,
            note::XEN_VERSION => n.xen_version = string(desc),
            note::GUEST_OS => n.guest_os = string(desc),
            note::LOADER => n.loader = string(desc),
            note::PAE_MODE => n.pae_mode = string(desc),
            note::FEATURES => n.features = Features::parse(&string(desc)),
            note::HV_START_LOW => n.hv_start_low = Some(numeric(desc, "HV_START_LOW")?),
            note::L1_MFN_VALID => {
                if desc.len() < 16 || desc.len() % 16 != 0 {
                    return Err(ImageError::BadNote {
                        note: "L1_MFN_VALID",
                        detail: format!(
                            "{} bytes (expected pairs of 64-bit mask and value, a multiple of 16)",
                            desc.len()
                        ),
                    });
                }
                n.l1_mfn_valid = Some((elf::u64_at(desc, 0), elf::u64_at(desc, 8)));
            }
            note::SUSPEND_CANCEL => n.suspend_cancel = Some(numeric32(desc, "SUSPEND_CANCEL")?),
            note::INIT_P2M => n.init_p2m = Some(numeric(desc, "INIT_P2M")?),
            note::MOD_START_PFN => n.mod_start_pfn = numeric(desc, "MOD_START_PFN")? != 0,
            note::SUPPORTED_FEATURES => {
                n.supported_features = Some(numeric32(desc, "SUPPORTED_FEATURES")?)
            }
            note::PHYS32_ENTRY => n.phys32_entry = Some(numeric32(desc, "PHYS32_ENTRY")?),
            _ => {} // INFO, GUEST_VERSION, BSD_SYMTAB, crash/dump notes: not needed
        }
    }
    if !any {
        return Err(ImageError::NotXenPv {
            missing: "no Xen ELF notes",
        });
    }
    n.entry = entry.ok_or(ImageError::NotXenPv {
        missing: "no XEN_ELFNOTE_ENTRY note",
    })?;
    Ok(n)
}

/// Collects the Xen notes of an ELF: from `PT_NOTE` segments, or, if none of
/// those has any, from `SHT_NOTE` sections.
fn collect_xen_notes(elf: &Elf<'_>) -> Result<XenNotes, ImageError> {
    let mut raw = Vec::new();
    for (i, ph) in elf.phdrs.iter().enumerate() {
        if ph.p_type != PT_NOTE {
            continue;
        }
        if !elf::fits(ph.offset, ph.filesz, elf.bytes.len()) {
            return Err(ImageError::Truncated {
                part: format!("PT_NOTE segment (program header {i})"),
                needed: ph.offset.saturating_add(ph.filesz),
                available: elf.bytes.len() as u64,
            });
        }
        let area = &elf.bytes[ph.offset as usize..(ph.offset + ph.filesz) as usize];
        raw.extend(elf::parse_notes(
            area,
            ph.align,
            &format!("PT_NOTE segment {i}"),
        )?);
    }
    raw.retain(|n| n.name == b"Xen");
    if raw.is_empty() {
        for &(off, size, align) in &elf.note_sections {
            let area = &elf.bytes[off as usize..(off + size) as usize];
            raw.extend(elf::parse_notes(area, align, "SHT_NOTE section")?);
        }
        raw.retain(|n| n.name == b"Xen");
    }
    xen_notes(raw.iter().map(|n| (n.n_type, n.desc)))
}

/// Parses an ELF vmlinux into a [`KernelImage`].
fn parse_elf(bytes: &[u8]) -> Result<KernelImage, ImageError> {
    let elf = Elf::parse(bytes)?;
    let notes = collect_xen_notes(&elf)?;

    let mut segments = Vec::new();
    for (i, ph) in elf.phdrs.iter().enumerate() {
        if ph.p_type != PT_LOAD || ph.memsz == 0 {
            continue;
        }
        if ph.filesz > ph.memsz {
            return Err(ImageError::MalformedElf {
                detail: format!(
                    "PT_LOAD segment {i} has filesz {:#x} > memsz {:#x}",
                    ph.filesz, ph.memsz
                ),
            });
        }
        if !elf::fits(ph.offset, ph.filesz, bytes.len()) {
            return Err(ImageError::Truncated {
                part: format!("PT_LOAD segment {i} data"),
                needed: ph.offset.saturating_add(ph.filesz),
                available: bytes.len() as u64,
            });
        }
        let out_of_range = |reason| ImageError::SegmentOutOfRange {
            index: i,
            paddr: ph.paddr,
            memsz: ph.memsz,
            virt_base: notes.virt_base,
            paddr_offset: notes.paddr_offset,
            reason,
        };
        let va = ph.paddr as i128 + notes.virt_base as i128 - notes.paddr_offset as i128;
        if va < notes.virt_base as i128 {
            return Err(out_of_range("below VIRT_BASE"));
        }
        let end = va as u128 + ph.memsz as u128;
        if end.div_ceil(PAGE_SIZE as u128) * PAGE_SIZE as u128 > u64::MAX as u128 {
            return Err(out_of_range("past the end of the 64-bit address space"));
        }
        let data = &bytes[ph.offset as usize..(ph.offset + ph.filesz) as usize];
        segments.push((
            i,
            Segment {
                vaddr: va as u64,
                data: data.to_vec(),
                memsz: ph.memsz,
            },
        ));
    }
    if segments.is_empty() {
        return Err(ImageError::MalformedElf {
            detail: "no PT_LOAD segments".into(),
        });
    }
    segments.sort_by_key(|(_, s)| s.vaddr);
    for w in segments.windows(2) {
        let ((i, a), (j, b)) = (&w[0], &w[1]);
        if a.vaddr + a.memsz > b.vaddr {
            return Err(ImageError::MalformedElf {
                detail: format!(
                    "PT_LOAD segments {i} ({:#x}..{:#x}) and {j} ({:#x}..{:#x}) overlap",
                    a.vaddr,
                    a.vaddr + a.memsz,
                    b.vaddr,
                    b.vaddr + b.memsz
                ),
            });
        }
    }
    let segments: Vec<Segment> = segments.into_iter().map(|(_, s)| s).collect();
    let virt_start = segments[0].vaddr;
    let last = segments.iter().map(|s| s.vaddr + s.memsz).max().unwrap();
    let virt_end = last.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    if virt_end - virt_start > MAX_KERNEL_SPAN {
        return Err(ImageError::TooLarge {
            what: "the kernel's virtual span (lowest to highest PT_LOAD address)",
            size: virt_end - virt_start,
            limit: MAX_KERNEL_SPAN,
        });
    }
    let check = |note: &'static str, addr: u64| {
        if addr < virt_start || addr >= virt_end {
            Err(ImageError::AddressOutOfRange {
                note,
                addr,
                start: virt_start,
                end: virt_end,
            })
        } else {
            Ok(())
        }
    };
    check("ENTRY", notes.entry)?;
    if let Some(hp) = notes.hypercall_page {
        check("HYPERCALL_PAGE", hp)?;
    }
    Ok(KernelImage {
        notes,
        segments,
        virt_start,
        virt_end,
    })
}

#[cfg(test)]
mod tests;
