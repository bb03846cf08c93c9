//! A small ELF64 little-endian reader: header, program headers, note sections
//! and note records. Only what the loader needs; every offset is bounds-checked.

use crate::ImageError;

pub(crate) const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const SHDR_SIZE: usize = 64;

pub(crate) const PT_LOAD: u32 = 1;
pub(crate) const PT_NOTE: u32 = 4;
const SHT_NOTE: u32 = 7;
const ET_REL: u16 = 1;
const EM_X86_64: u16 = 62;

/// One program header, as in the file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phdr {
    pub p_type: u32,
    pub offset: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

/// A parsed ELF64 image.
pub(crate) struct Elf<'a> {
    pub bytes: &'a [u8],
    pub phdrs: Vec<Phdr>,
    /// (file offset, size, alignment) of each SHT_NOTE section that lies within
    /// the file. Empty if the section header table is absent or out of range
    /// (the loader needs sections only as a fallback for notes).
    pub note_sections: Vec<(u64, u64, u64)>,
}

/// One note record.
pub(crate) struct Note<'a> {
    pub name: &'a [u8],
    pub n_type: u32,
    pub desc: &'a [u8],
}

pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn arch_name(machine: u16) -> String {
    match machine {
        3 => "i386".into(),
        8 => "MIPS".into(),
        20 => "PowerPC".into(),
        21 => "PowerPC64".into(),
        22 => "s390".into(),
        40 => "ARM".into(),
        183 => "AArch64".into(),
        243 => "RISC-V".into(),
        m => format!("machine type {m}"),
    }
}

/// `true` if `off + len` lies within `total`.
pub(crate) fn fits(off: u64, len: u64, total: usize) -> bool {
    off.checked_add(len).is_some_and(|end| end <= total as u64)
}

impl<'a> Elf<'a> {
    /// Parses the headers of an image that starts with the ELF magic.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ImageError> {
        if bytes.len() < 16 {
            return Err(ImageError::Truncated {
                part: "ELF identification".into(),
                needed: 16,
                available: bytes.len() as u64,
            });
        }
        match bytes[4] {
            1 => return Err(ImageError::Elf32),
            2 => {}
            c => {
                return Err(ImageError::MalformedElf {
                    detail: format!("unknown ELF class {c} (expected 2, ELFCLASS64)"),
                })
            }
        }
        match bytes[5] {
            1 => {}
            2 => {
                return Err(ImageError::WrongArch {
                    arch: "a big-endian machine".into(),
                })
            }
            d => {
                return Err(ImageError::MalformedElf {
                    detail: format!("unknown ELF data encoding {d} (expected 1, little-endian)"),
                })
            }
        }
        if bytes.len() < EHDR_SIZE {
            return Err(ImageError::Truncated {
                part: "ELF header".into(),
                needed: EHDR_SIZE as u64,
                available: bytes.len() as u64,
            });
        }
        let e_type = u16_at(bytes, 16);
        let e_machine = u16_at(bytes, 18);
        if e_machine != EM_X86_64 {
            return Err(ImageError::WrongArch {
                arch: arch_name(e_machine),
            });
        }
        if e_type == ET_REL {
            return Err(ImageError::MalformedElf {
                detail: "it is a relocatable object (ET_REL, e.g. a kernel module), not a \
                         linked kernel"
                    .into(),
            });
        }
        let phoff = u64_at(bytes, 32);
        let shoff = u64_at(bytes, 40);
        let phentsize = u16_at(bytes, 54) as usize;
        let phnum = u16_at(bytes, 56) as usize;
        let shentsize = u16_at(bytes, 58) as usize;
        let shnum = u16_at(bytes, 60) as usize;

        if phnum == 0 {
            return Err(ImageError::MalformedElf {
                detail: "no program headers".into(),
            });
        }
        if phentsize != PHDR_SIZE {
            return Err(ImageError::MalformedElf {
                detail: format!("program header size {phentsize} (expected {PHDR_SIZE})"),
            });
        }
        let ph_len = (phnum * PHDR_SIZE) as u64;
        if !fits(phoff, ph_len, bytes.len()) {
            return Err(ImageError::Truncated {
                part: format!("program header table ({phnum} entries at offset {phoff:#x})"),
                needed: phoff.saturating_add(ph_len),
                available: bytes.len() as u64,
            });
        }
        let phdrs = (0..phnum)
            .map(|i| {
                let o = phoff as usize + i * PHDR_SIZE;
                Phdr {
                    p_type: u32_at(bytes, o),
                    offset: u64_at(bytes, o + 8),
                    paddr: u64_at(bytes, o + 24),
                    filesz: u64_at(bytes, o + 32),
                    memsz: u64_at(bytes, o + 40),
                    align: u64_at(bytes, o + 48),
                }
            })
            .collect();

        let mut note_sections = Vec::new();
        let sh_len = (shnum * SHDR_SIZE) as u64;
        if shnum > 0 && shentsize == SHDR_SIZE && fits(shoff, sh_len, bytes.len()) {
            for i in 0..shnum {
                let o = shoff as usize + i * SHDR_SIZE;
                if u32_at(bytes, o + 4) == SHT_NOTE {
                    let (off, size) = (u64_at(bytes, o + 24), u64_at(bytes, o + 32));
                    if fits(off, size, bytes.len()) {
                        note_sections.push((off, size, u64_at(bytes, o + 48)));
                    }
                }
            }
        }
        Ok(Elf {
            bytes,
            phdrs,
            note_sections,
        })
    }
}

/// Splits a note area into records. `align` is the area's alignment: 8 means
/// 8-byte padding (as for `.note.gnu.property`), anything else 4 (the usual,
/// and what Linux's `ELFNOTE` macro emits).
pub(crate) fn parse_notes<'a>(
    area: &'a [u8],
    align: u64,
    what: &str,
) -> Result<Vec<Note<'a>>, ImageError> {
    let pad = if align == 8 { 8usize } else { 4 };
    let round = |n: usize| n.div_ceil(pad) * pad;
    let mut notes = Vec::new();
    let mut off = 0usize;
    while off < area.len() {
        let rest = area.len() - off;
        if rest < 12 {
            // Tail padding shorter than a note header.
            if area[off..].iter().all(|&b| b == 0) {
                break;
            }
            return Err(ImageError::MalformedElf {
                detail: format!("{what}: {rest} stray bytes at offset {off:#x}"),
            });
        }
        let namesz = u32_at(area, off) as usize;
        let descsz = u32_at(area, off + 4) as usize;
        let n_type = u32_at(area, off + 8);
        let name_off = off + 12;
        // The desc and the next note start at the next multiple of the
        // alignment (binutils' ELF_NOTE_DESC_OFFSET): with 8-byte notes
        // (.note.gnu.property) the 12-byte header and the name are padded
        // together, not the name alone.
        let desc_off = name_off.checked_add(namesz).map(round);
        let end = desc_off.and_then(|d| d.checked_add(descsz)).map(round);
        // The last record's desc may lack its padding.
        let desc_end = desc_off.and_then(|d| d.checked_add(descsz));
        match (desc_off, desc_end) {
            (Some(d), Some(de)) if de <= area.len() => {
                let mut name = &area[name_off..name_off + namesz];
                while let [rest @ .., 0] = name {
                    name = rest;
                }
                notes.push(Note {
                    name,
                    n_type,
                    desc: &area[d..de],
                });
            }
            _ => {
                return Err(ImageError::MalformedElf {
                    detail: format!(
                        "{what}: note at offset {off:#x} (namesz {namesz}, descsz {descsz}) \
                         runs past the end of the area ({} bytes)",
                        area.len()
                    ),
                })
            }
        }
        off = end.unwrap_or(usize::MAX).min(area.len());
    }
    Ok(notes)
}
