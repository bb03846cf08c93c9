//! Unit tests on synthetic images built here.

use super::*;
use std::io::Read;

const VIRT_BASE: u64 = 0xffff_ffff_8000_0000;

/// Where the synthetic ELF keeps its notes.
#[derive(Clone, Copy, PartialEq)]
enum NotesIn {
    Segment,
    Section,
}

/// A PT_LOAD to put in a synthetic ELF.
#[derive(Clone)]
struct Load {
    vaddr: u64,
    paddr: u64,
    data: Vec<u8>,
    memsz: u64,
}

#[derive(Clone)]
struct ElfSpec {
    class: u8,
    machine: u16,
    loads: Vec<Load>,
    notes: Vec<(&'static str, u32, Vec<u8>)>,
    notes_in: NotesIn,
}

fn push_note(out: &mut Vec<u8>, name: &str, ty: u32, desc: &[u8]) {
    let name = [name.as_bytes(), b"\0"].concat();
    out.extend((name.len() as u32).to_le_bytes());
    out.extend((desc.len() as u32).to_le_bytes());
    out.extend(ty.to_le_bytes());
    out.extend(&name);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Builds an ELF64 image: header, program headers, note area, segment data,
/// and (for `NotesIn::Section`) a section table with a null and a note section.
fn build_elf(spec: &ElfSpec) -> Vec<u8> {
    let mut notes = Vec::new();
    for (name, ty, desc) in &spec.notes {
        push_note(&mut notes, name, *ty, desc);
    }
    let note_ph = spec.notes_in == NotesIn::Segment && !notes.is_empty();
    let phnum = spec.loads.len() + note_ph as usize;
    let notes_off = 64 + phnum * 56;
    let mut data_off = (notes_off + notes.len()).next_multiple_of(16);
    let mut load_offs = Vec::new();
    for l in &spec.loads {
        load_offs.push(data_off);
        data_off = (data_off + l.data.len()).next_multiple_of(16);
    }
    let shoff = data_off;
    let shnum = if spec.notes_in == NotesIn::Section {
        2
    } else {
        0
    };

    let mut b = Vec::new();
    b.extend(b"\x7fELF");
    b.extend([spec.class, 1, 1, 0]);
    b.resize(16, 0);
    b.extend(2u16.to_le_bytes()); // ET_EXEC
    b.extend(spec.machine.to_le_bytes());
    b.extend(1u32.to_le_bytes());
    b.extend(0x100_0000u64.to_le_bytes()); // e_entry (unused by Xen)
    b.extend(64u64.to_le_bytes()); // e_phoff
    b.extend((if shnum > 0 { shoff } else { 0 } as u64).to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend(64u16.to_le_bytes());
    b.extend(56u16.to_le_bytes());
    b.extend((phnum as u16).to_le_bytes());
    b.extend(64u16.to_le_bytes());
    b.extend((shnum as u16).to_le_bytes());
    b.extend(0u16.to_le_bytes());
    assert_eq!(b.len(), 64);
    let mut phdr =
        |ty: u32, off: usize, vaddr: u64, paddr: u64, filesz: usize, memsz: u64, align: u64| {
            b.extend(ty.to_le_bytes());
            b.extend(7u32.to_le_bytes());
            b.extend((off as u64).to_le_bytes());
            b.extend(vaddr.to_le_bytes());
            b.extend(paddr.to_le_bytes());
            b.extend((filesz as u64).to_le_bytes());
            b.extend(memsz.to_le_bytes());
            b.extend(align.to_le_bytes());
        };
    for (l, &off) in spec.loads.iter().zip(&load_offs) {
        phdr(1, off, l.vaddr, l.paddr, l.data.len(), l.memsz, 0x20_0000);
    }
    if note_ph {
        phdr(4, notes_off, 0, 0, notes.len(), notes.len() as u64, 4);
    }
    b.extend(&notes);
    for (l, &off) in spec.loads.iter().zip(&load_offs) {
        b.resize(off, 0);
        b.extend(&l.data);
    }
    b.resize(data_off, 0);
    if shnum > 0 {
        b.extend([0u8; 64]);
        let mut sh = vec![0u8; 64];
        sh[4..8].copy_from_slice(&7u32.to_le_bytes()); // SHT_NOTE
        sh[24..32].copy_from_slice(&(notes_off as u64).to_le_bytes());
        sh[32..40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        sh[48..56].copy_from_slice(&4u64.to_le_bytes());
        b.extend(sh);
    }
    b
}

fn u32le(v: u32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}
fn u64le(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}
fn cstr(s: &str) -> Vec<u8> {
    [s.as_bytes(), b"\0"].concat()
}

const ENTRY: u64 = VIRT_BASE + 0x100_0010;

/// The notes of Debian's 6.1 kernel, as it lays them out (FEATURES without a NUL).
fn linux_notes() -> Vec<(&'static str, u32, Vec<u8>)> {
    vec![
        ("Xen", 6, cstr("linux")),
        ("Xen", 7, cstr("2.6")),
        ("Xen", 5, cstr("xen-3.0")),
        ("Xen", 3, u64le(VIRT_BASE)),
        ("Xen", 15, u64le(0x80_0000_0000)),
        ("Xen", 1, u64le(ENTRY)),
        (
            "Xen",
            10,
            b"!writable_page_tables|pae_pgdir_above_4gb".to_vec(),
        ),
        ("Xen", 17, u32le(0x8801)),
        ("Xen", 9, cstr("yes")),
        ("Xen", 8, cstr("generic")),
        ("Xen", 13, [u64le(1), u64le(1)].concat()),
        ("Xen", 14, u32le(1)),
        ("Xen", 16, u32le(1)),
        ("Xen", 12, u64le(0xffff_8000_0000_0000)),
        ("Xen", 4, u64le(0)),
        ("GNU", 3, vec![0xab; 20]),
        ("Xen", 18, u64le(0x100_0850)),
    ]
}

fn text() -> Vec<u8> {
    (0..0x3000u32).map(|i| (i * 7) as u8).collect()
}

/// A Linux-like kernel: text, data with bss, and a per-CPU segment with p_vaddr 0.
fn linux_spec() -> ElfSpec {
    ElfSpec {
        class: 2,
        machine: 62,
        loads: vec![
            Load {
                vaddr: VIRT_BASE + 0x100_0000,
                paddr: 0x100_0000,
                data: text(),
                memsz: 0x3000,
            },
            Load {
                vaddr: 0,
                paddr: 0x100_4000,
                data: vec![0x55; 0x100],
                memsz: 0x800,
            },
            Load {
                vaddr: VIRT_BASE + 0x100_3000,
                paddr: 0x100_3000,
                data: vec![0xdd; 0x100],
                memsz: 0x1000,
            },
        ],
        notes: linux_notes(),
        notes_in: NotesIn::Segment,
    }
}

fn expected_notes() -> XenNotes {
    XenNotes {
        entry: ENTRY,
        virt_base: VIRT_BASE,
        paddr_offset: 0,
        hypercall_page: None,
        init_p2m: Some(0x80_0000_0000),
        mod_start_pfn: true,
        hv_start_low: Some(0xffff_8000_0000_0000),
        features: Features {
            required: vec!["writable_page_tables".into()],
            optional: vec!["pae_pgdir_above_4gb".into()],
        },
        supported_features: Some(0x8801),
        guest_os: "linux".into(),
        xen_version: "xen-3.0".into(),
        loader: "generic".into(),
        pae_mode: "yes".into(),
        l1_mfn_valid: Some((1, 1)),
        suspend_cancel: Some(1),
        phys32_entry: Some(0x100_0850),
    }
}

fn expected_image() -> KernelImage {
    KernelImage {
        notes: expected_notes(),
        segments: vec![
            Segment {
                vaddr: VIRT_BASE + 0x100_0000,
                data: text(),
                memsz: 0x3000,
            },
            Segment {
                vaddr: VIRT_BASE + 0x100_3000,
                data: vec![0xdd; 0x100],
                memsz: 0x1000,
            },
            Segment {
                vaddr: VIRT_BASE + 0x100_4000,
                data: vec![0x55; 0x100],
                memsz: 0x800,
            },
        ],
        virt_start: VIRT_BASE + 0x100_0000,
        virt_end: VIRT_BASE + 0x100_5000,
    }
}

fn with_notes(notes: Vec<(&'static str, u32, Vec<u8>)>) -> Vec<u8> {
    build_elf(&ElfSpec {
        notes,
        ..linux_spec()
    })
}

/// `linux_notes()` with note `ty` replaced by `desc` (or removed if `None`).
fn notes_with(ty: u32, desc: Option<Vec<u8>>) -> Vec<(&'static str, u32, Vec<u8>)> {
    let mut n: Vec<_> = linux_notes()
        .into_iter()
        .filter(|(name, t, _)| !(*name == "Xen" && *t == ty))
        .collect();
    if let Some(d) = desc {
        n.push(("Xen", ty, d));
    }
    n
}

fn err(bytes: &[u8]) -> ImageError {
    parse_kernel(bytes).expect_err("expected an error")
}

#[test]
fn linux_like_elf_parses_exactly() {
    assert_eq!(
        parse_kernel(&build_elf(&linux_spec())).unwrap(),
        expected_image()
    );
}

#[test]
fn notes_in_sections_only_are_found() {
    let spec = ElfSpec {
        notes_in: NotesIn::Section,
        ..linux_spec()
    };
    assert_eq!(parse_kernel(&build_elf(&spec)).unwrap(), expected_image());
}

#[test]
fn string_notes_with_and_without_nul() {
    let mut notes = notes_with(10, Some(cstr("!writable_page_tables|pae_pgdir_above_4gb")));
    notes.retain(|(_, t, _)| *t != 6);
    notes.push(("Xen", 6, b"linux".to_vec())); // no terminator
    let img = parse_kernel(&with_notes(notes)).unwrap();
    assert_eq!(img.notes, expected_notes());
}

#[test]
fn numeric_notes_of_every_width() {
    for (desc, want) in [
        (vec![0x42], 0x42u64),
        (vec![0x34, 0x12], 0x1234),
        (u32le(0x1234_5678), 0x1234_5678),
        (u64le(0x1122_3344_5566_7788), 0x1122_3344_5566_7788),
    ] {
        let img = parse_kernel(&with_notes(notes_with(12, Some(desc)))).unwrap();
        assert_eq!(img.notes.hv_start_low, Some(want));
    }
}

#[test]
fn numeric_note_of_odd_width_is_rejected() {
    let e = err(&with_notes(notes_with(15, Some(vec![1, 2, 3]))));
    assert!(
        matches!(
            &e,
            ImageError::BadNote {
                note: "INIT_P2M",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("3 bytes"), "{e}");
}

#[test]
fn u32_note_too_wide_is_rejected() {
    let e = err(&with_notes(notes_with(17, Some(u64le(1 << 40)))));
    assert!(
        matches!(
            e,
            ImageError::BadNote {
                note: "SUPPORTED_FEATURES",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn l1_mfn_valid_needs_pairs() {
    let e = err(&with_notes(notes_with(13, Some(u64le(1)))));
    assert!(
        matches!(
            e,
            ImageError::BadNote {
                note: "L1_MFN_VALID",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn absent_optional_notes_take_defaults() {
    let notes = vec![("Xen", 1, u64le(0x100_0010))];
    let img = parse_kernel(&with_notes(notes)).unwrap();
    assert_eq!(
        img.notes,
        XenNotes {
            entry: 0x100_0010,
            ..XenNotes::default()
        }
    );
    // VIRT_BASE 0: segments load at p_paddr.
    assert_eq!(img.virt_start, 0x100_0000);
    assert_eq!(img.virt_end, 0x100_5000);
}

#[test]
fn hypercall_page_note() {
    let hp = VIRT_BASE + 0x100_1000;
    let img = parse_kernel(&with_notes(notes_with(2, Some(u64le(hp))))).unwrap();
    assert_eq!(img.notes.hypercall_page, Some(hp));
    let e = err(&with_notes(notes_with(2, Some(u64le(VIRT_BASE)))));
    assert!(
        matches!(
            e,
            ImageError::AddressOutOfRange {
                note: "HYPERCALL_PAGE",
                addr: VIRT_BASE,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn no_notes_means_no_xen_pv() {
    let e = err(&with_notes(vec![]));
    assert!(
        matches!(
            e,
            ImageError::NotXenPv {
                missing: "no Xen ELF notes"
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("CONFIG_XEN_PV"), "{e}");
    // Only non-Xen notes (a kernel without CONFIG_XEN_PV still has a GNU build id).
    let e = err(&with_notes(vec![
        ("GNU", 3, vec![1; 20]),
        ("Linux", 1, u32le(0)),
    ]));
    assert!(
        matches!(
            e,
            ImageError::NotXenPv {
                missing: "no Xen ELF notes"
            }
        ),
        "{e:?}"
    );
}

/// 8-byte aligned note segments (a static glibc binary's .note.gnu.property):
/// the header and name are padded together to 16 bytes, not the name to 8.
#[test]
fn eight_byte_aligned_notes_parse() {
    let mut area = Vec::new();
    area.extend(u32le(4));
    area.extend(u32le(16));
    area.extend(u32le(5)); // NT_GNU_PROPERTY_TYPE_0
    area.extend(b"GNU\0");
    area.extend([0xaa; 16]);
    area.extend(u32le(4));
    area.extend(u32le(3));
    area.extend(u32le(6));
    area.extend(b"Xen\0");
    area.extend(b"hi\0");
    area.resize(area.len().next_multiple_of(8), 0);
    let notes = elf::parse_notes(&area, 8, "test").unwrap();
    assert_eq!(notes.len(), 2);
    assert_eq!((notes[0].name, notes[0].n_type), (&b"GNU"[..], 5));
    assert_eq!(notes[0].desc, &[0xaa; 16][..]);
    assert_eq!((notes[1].name, notes[1].desc), (&b"Xen"[..], &b"hi\0"[..]));
    // 4-byte alignment is unchanged: a 5-byte name pads to 8.
    let mut area = Vec::new();
    area.extend(u32le(5));
    area.extend(u32le(4));
    area.extend(u32le(1));
    area.extend(b"Linux\0\0\0");
    area.extend(u32le(7));
    let notes = elf::parse_notes(&area, 4, "test").unwrap();
    assert_eq!(
        (notes[0].name, notes[0].desc),
        (&b"Linux"[..], &u32le(7)[..])
    );
}

#[test]
fn no_entry_note_means_no_xen_pv() {
    let e = err(&with_notes(notes_with(1, None)));
    assert!(
        matches!(
            e,
            ImageError::NotXenPv {
                missing: "no XEN_ELFNOTE_ENTRY note"
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("CONFIG_XEN_PV"), "{e}");
}

#[test]
fn entry_outside_segments_is_rejected() {
    let e = err(&with_notes(notes_with(
        1,
        Some(u64le(VIRT_BASE + 0x200_0000)),
    )));
    assert!(
        matches!(
            e,
            ImageError::AddressOutOfRange {
                note: "ENTRY",
                addr: 0xffff_ffff_8200_0000,
                start: 0xffff_ffff_8100_0000,
                end: 0xffff_ffff_8100_5000,
            }
        ),
        "{e:?}"
    );
}

#[test]
fn segment_below_virt_base_is_rejected() {
    // PADDR_OFFSET larger than the segment's p_paddr puts it below VIRT_BASE.
    let e = err(&with_notes(notes_with(4, Some(u64le(0x100_2000)))));
    assert!(
        matches!(
            e,
            ImageError::SegmentOutOfRange {
                index: 0,
                paddr: 0x100_0000,
                reason: "below VIRT_BASE",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn segment_past_address_space_is_rejected() {
    let e = err(&with_notes(notes_with(
        3,
        Some(u64le(0xffff_ffff_ff00_0000)),
    )));
    assert!(
        matches!(
            e,
            ImageError::SegmentOutOfRange {
                reason: "past the end of the 64-bit address space",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn paddr_offset_is_subtracted() {
    // Old-style kernels put __PAGE_OFFSET-like values in p_paddr and declare them.
    let mut spec = linux_spec();
    for l in &mut spec.loads {
        l.paddr += 0x4000_0000;
    }
    spec.notes = notes_with(4, Some(u64le(0x4000_0000)));
    let mut want = expected_image();
    want.notes.paddr_offset = 0x4000_0000;
    assert_eq!(parse_kernel(&build_elf(&spec)).unwrap(), want);
}

#[test]
fn overlapping_segments_are_rejected() {
    let mut spec = linux_spec();
    spec.loads[2].paddr = 0x100_2000;
    let e = err(&build_elf(&spec));
    assert!(
        matches!(&e, ImageError::MalformedElf { detail } if detail.contains("overlap")),
        "{e:?}"
    );
}

#[test]
fn filesz_above_memsz_is_rejected() {
    let mut spec = linux_spec();
    spec.loads[1].memsz = 0x10;
    let e = err(&build_elf(&spec));
    assert!(
        matches!(&e, ImageError::MalformedElf { detail } if detail.contains("filesz")),
        "{e:?}"
    );
}

#[test]
fn huge_span_is_rejected() {
    let mut spec = linux_spec();
    spec.loads[1].paddr = 0x5000_0000;
    let e = err(&build_elf(&spec));
    assert!(
        matches!(
            e,
            ImageError::TooLarge {
                size: 0x4f00_1000,
                limit: MAX_KERNEL_SPAN,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn truncated_elf_headers() {
    let elf = build_elf(&linux_spec());
    let e = err(&elf[..10]);
    assert!(
        matches!(&e, ImageError::Truncated { part, needed: 16, available: 10 } if part == "ELF identification"),
        "{e:?}"
    );
    let e = err(&elf[..40]);
    assert!(
        matches!(&e, ImageError::Truncated { part, needed: 64, available: 40 } if part == "ELF header"),
        "{e:?}"
    );
    let e = err(&elf[..100]);
    assert!(
        matches!(&e, ImageError::Truncated { part, needed: 288, available: 100 } if part.starts_with("program header table")),
        "{e:?}"
    );
    // Cut inside the first segment's data (after the notes).
    let e = err(&elf[..0x300]);
    assert!(
        matches!(&e, ImageError::Truncated { part, available: 0x300, .. } if part == "PT_LOAD segment 0 data"),
        "{e:?}"
    );
    // Cut inside the note segment.
    let e = err(&elf[..0x130]);
    assert!(
        matches!(&e, ImageError::Truncated { part, .. } if part.starts_with("PT_NOTE")),
        "{e:?}"
    );
}

#[test]
fn elf32_is_rejected() {
    let spec = ElfSpec {
        class: 1,
        ..linux_spec()
    };
    let e = err(&build_elf(&spec));
    assert!(matches!(e, ImageError::Elf32), "{e:?}");
    assert!(e.to_string().contains("32-bit"), "{e}");
}

#[test]
fn other_architecture_is_rejected() {
    let spec = ElfSpec {
        machine: 183,
        ..linux_spec()
    };
    let e = err(&build_elf(&spec));
    assert!(
        matches!(&e, ImageError::WrongArch { arch } if arch == "AArch64"),
        "{e:?}"
    );
}

#[test]
fn bogus_magic_is_named() {
    let e = err(b"hello world, not a kernel at all");
    assert!(
        matches!(&e, ImageError::NotAKernel { found } if found == "the file starts with bytes 68 65 6c 6c 6f 20 77 6f"),
        "{e:?}"
    );
    let e = err(b"");
    assert!(
        matches!(&e, ImageError::NotAKernel { found } if found == "an empty file"),
        "{e:?}"
    );
    let e = err(b"070701000000");
    assert!(
        matches!(&e, ImageError::NotAKernel { found } if found.starts_with("a cpio archive")),
        "{e:?}"
    );
    let e = err(&[0x1f, 0x8b, 8, 0, 0, 0]);
    assert!(
        matches!(&e, ImageError::NotAKernel { found } if found.starts_with("gzip-compressed data")),
        "{e:?}"
    );
}

// ---- bzImage ----

const SETUP_SECTS: u8 = 3;

/// Wraps `payload` in a minimal bzImage: boot sector + setup sectors with the
/// setup header, then protected-mode code whose `payload_offset` points at the
/// payload (after 0x40 bytes of stub code), then 0x100 bytes of trailing data.
fn bzimage(payload: &[u8]) -> Vec<u8> {
    let pm = (SETUP_SECTS as usize + 1) * 512;
    let mut b = vec![0u8; pm];
    b[0x1f1] = SETUP_SECTS;
    b[0x1fe] = 0x55;
    b[0x1ff] = 0xaa;
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    b[0x248..0x24c].copy_from_slice(&0x40u32.to_le_bytes());
    b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend([0x90; 0x40]);
    b.extend(payload);
    b.extend([0xcc; 0x100]);
    b
}

/// XZ as the kernel build makes it (`xz --check=crc32 --x86 --lzma2`), followed
/// by the 4-byte uncompressed size Linux appends.
fn xz_payload(data: &[u8]) -> Vec<u8> {
    use liblzma::stream::{Check, Filters, LzmaOptions, Stream};
    let opts = LzmaOptions::new_preset(6).unwrap();
    let mut filters = Filters::new();
    filters.x86().lzma2(&opts);
    let stream = Stream::new_stream_encoder(&filters, Check::Crc32).unwrap();
    let mut out = Vec::new();
    liblzma::read::XzEncoder::new_stream(data, stream)
        .read_to_end(&mut out)
        .unwrap();
    out.extend((data.len() as u32).to_le_bytes());
    out
}

fn gzip_payload(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzEncoder::new(data, flate2::Compression::default())
        .read_to_end(&mut out)
        .unwrap();
    out.extend((data.len() as u32).to_le_bytes());
    out
}

#[test]
fn bzimage_with_xz_payload() {
    let elf = build_elf(&linux_spec());
    let bz = bzimage(&xz_payload(&elf));
    assert_eq!(parse_kernel(&bz).unwrap(), expected_image());
    assert_eq!(extract_vmlinux(&bz).unwrap().as_ref(), &elf[..]);
}

#[test]
fn bzimage_setup_sects_zero_means_four() {
    let elf = build_elf(&linux_spec());
    let payload = xz_payload(&elf);
    let mut bz = bzimage(&payload);
    // Move the payload one sector later and declare setup_sects 0 (= 4).
    bz[0x1f1] = 0;
    bz.splice(4 * 512..4 * 512, [0u8; 512]);
    assert_eq!(parse_kernel(&bz).unwrap(), expected_image());
}

#[test]
fn bzimage_with_gzip_payload() {
    let bz = bzimage(&gzip_payload(&build_elf(&linux_spec())));
    assert_eq!(parse_kernel(&bz).unwrap(), expected_image());
}

#[test]
fn bzimage_with_lz4_legacy_payload() {
    let elf = build_elf(&linux_spec());
    // Small blocks, so the image has several.
    let payload = crate::lz4::tests::legacy(&elf, 1024, true);
    let bz = bzimage(&payload);
    assert_eq!(parse_kernel(&bz).unwrap(), expected_image());
    assert_eq!(extract_vmlinux(&bz).unwrap().as_ref(), &elf[..]);
    // Cut inside the payload (the header still declares the full length).
    let mut short = bzimage(&payload[..payload.len() - 10]);
    let e = err(&short);
    assert!(
        matches!(e, ImageError::Decompress { method: "lz4", .. }),
        "{e:?}"
    );
    short.truncate(short.len() - 0x100 - 5);
    let e = err(&short);
    assert!(matches!(e, ImageError::Truncated { .. }), "{e:?}");
}

#[test]
fn bzimage_with_uncompressed_elf_payload() {
    let bz = bzimage(&build_elf(&linux_spec()));
    assert_eq!(parse_kernel(&bz).unwrap(), expected_image());
}

#[test]
fn bzimage_unsupported_compressions_are_named() {
    for (magic, method) in [
        (&b"BZh91AY&SY"[..], "bzip2"),
        (&[0x5d, 0, 0, 0x80, 0][..], "lzma"),
        (&b"\x89LZO\x00\r\n"[..], "lzo"),
        (&[0x04, 0x22, 0x4d, 0x18, 0][..], "lz4 (frame format)"),
        (&[0x28, 0xb5, 0x2f, 0xfd, 0][..], "zstd"),
    ] {
        let e = err(&bzimage(magic));
        assert!(
            matches!(e, ImageError::UnsupportedCompression { method: m } if m == method),
            "{method}: {e:?}"
        );
        assert!(e.to_string().contains(method), "{e}");
    }
}

#[test]
fn bzimage_unknown_payload_magic() {
    let e = err(&bzimage(b"\x01\x02\x03\x04\x05\x06\x07\x08\x09"));
    assert!(
        matches!(&e, ImageError::UnknownCompression { magic } if magic == b"\x01\x02\x03\x04\x05\x06\x07\x08"),
        "{e:?}"
    );
}

#[test]
fn bzimage_truncated_payload() {
    let bz = bzimage(&xz_payload(&build_elf(&linux_spec())));
    let payload_end = bz.len() - 0x100;
    let cut = &bz[..payload_end - 1];
    let e = err(cut);
    assert!(
        matches!(&e, ImageError::Truncated { part, needed, available }
            if part.starts_with("bzImage payload") && *needed == payload_end as u64 && *available == cut.len() as u64),
        "{e:?}"
    );
    let e = err(&bz[..0x220]);
    assert!(
        matches!(&e, ImageError::Truncated { part, needed: 0x250, available: 0x220 } if part == "bzImage setup header"),
        "{e:?}"
    );
    let e = err(&bz[..0x300]);
    assert!(
        matches!(&e, ImageError::Truncated { part, needed: 0x800, .. } if part.starts_with("bzImage protected-mode code")),
        "{e:?}"
    );
}

#[test]
fn bzimage_cut_xz_stream_fails_to_decompress() {
    let payload = xz_payload(&build_elf(&linux_spec()));
    let short = &payload[..payload.len() / 2];
    let e = err(&bzimage(short));
    assert!(
        matches!(e, ImageError::Decompress { method: "xz", .. }),
        "{e:?}"
    );
}

#[test]
fn bzimage_corrupt_xz_stream_fails_to_decompress() {
    let mut payload = xz_payload(&build_elf(&linux_spec()));
    let mid = payload.len() / 2;
    for b in &mut payload[mid..mid + 16] {
        *b ^= 0xa5;
    }
    let e = err(&bzimage(&payload));
    assert!(
        matches!(e, ImageError::Decompress { method: "xz", .. }),
        "{e:?}"
    );
}

#[test]
fn bzimage_payload_that_is_not_elf() {
    let e = err(&bzimage(&xz_payload(b"MZ this is not an ELF")));
    assert!(
        matches!(&e, ImageError::NotAKernel { found } if found.contains("xz payload decompresses to bytes 4d 5a")),
        "{e:?}"
    );
}

#[test]
fn bzimage_old_boot_protocol() {
    let mut bz = bzimage(&xz_payload(&build_elf(&linux_spec())));
    bz[0x206..0x208].copy_from_slice(&0x0206u16.to_le_bytes());
    let e = err(&bz);
    assert!(
        matches!(e, ImageError::OldBootProtocol { version: 0x0206 }),
        "{e:?}"
    );
    assert!(e.to_string().contains("2.06"), "{e}");
}

#[test]
fn decompressed_size_is_capped() {
    let payload = xz_payload(&vec![0u8; 1 << 20]);
    let e = bzimage::decompress_limited(&payload, 4096).unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::TooLarge {
                size: 4097,
                limit: 4096,
                ..
            }
        ),
        "{e:?}"
    );
    let e = bzimage::decompress_limited(&gzip_payload(&vec![0u8; 1 << 20]), 4096).unwrap_err();
    assert!(
        matches!(e, ImageError::TooLarge { limit: 4096, .. }),
        "{e:?}"
    );
}

// ---- files ----

#[test]
fn missing_file_is_unreadable() {
    let path = Path::new("/nonexistent/rxen/vmlinuz");
    let e = load_kernel(path).unwrap_err();
    assert!(
        matches!(&e, ImageError::Unreadable { path: p, error } if p == path && error.kind() == std::io::ErrorKind::NotFound),
        "{e:?}"
    );
    assert!(e.to_string().contains("/nonexistent/rxen/vmlinuz"), "{e}");
}

#[test]
fn errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("pv-image-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("initrd.img");
    std::fs::write(&bad, b"070701 cpio").unwrap();
    let good = dir.join("vmlinuz");
    std::fs::write(&good, bzimage(&xz_payload(&build_elf(&linux_spec())))).unwrap();

    let e = load_kernel(&bad).unwrap_err();
    assert!(
        matches!(&e, ImageError::InFile { path, .. } if *path == bad),
        "{e:?}"
    );
    assert!(matches!(e.root(), ImageError::NotAKernel { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("initrd.img") && msg.contains("cpio archive"),
        "{msg}"
    );

    assert_eq!(load_kernel(&good).unwrap(), expected_image());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn features_parse() {
    let f = Features::parse("!writable_page_tables|pae_pgdir_above_4gb||!auto_translated_physmap");
    assert_eq!(
        f,
        Features {
            required: vec![
                "writable_page_tables".into(),
                "auto_translated_physmap".into()
            ],
            optional: vec!["pae_pgdir_above_4gb".into()],
        }
    );
    assert!(f.is_required("writable_page_tables"));
    assert!(!f.is_required("pae_pgdir_above_4gb"));
    assert!(f.mentions("pae_pgdir_above_4gb"));
    assert!(!f.mentions("dom0"));
    assert_eq!(Features::parse(""), Features::default());
}

// ---- the decompressed-kernel cache ----

#[test]
fn cache_stores_then_serves_the_decompressed_payload() {
    let dir = std::env::temp_dir().join(format!("rxen-kcache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = KernelCache::new(&dir);
    let elf = build_elf(&linux_spec());
    let bz = bzimage(&xz_payload(&elf));
    assert_eq!(cache.parse(&bz).unwrap(), expected_image());
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(std::fs::read(&entries[0]).unwrap(), elf);
    // A damaged entry is dropped and rebuilt.
    std::fs::write(&entries[0], b"not an elf").unwrap();
    assert_eq!(cache.parse(&bz).unwrap(), expected_image());
    assert_eq!(std::fs::read(&entries[0]).unwrap(), elf);
    // A different image is a different entry.
    let bz2 = bzimage(&gzip_payload(&elf));
    assert_eq!(cache.parse(&bz2).unwrap(), expected_image());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    // Plain ELF kernels are not cached.
    assert_eq!(cache.parse(&elf).unwrap(), expected_image());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cache_that_cannot_be_written_still_loads() {
    let file = std::env::temp_dir().join(format!("rxen-kcache-file-{}", std::process::id()));
    std::fs::write(&file, b"a file where the cache directory should be").unwrap();
    let cache = KernelCache::new(file.join("kernels"));
    let bz = bzimage(&xz_payload(&build_elf(&linux_spec())));
    assert_eq!(cache.parse(&bz).unwrap(), expected_image());
    let _ = std::fs::remove_file(&file);
}
