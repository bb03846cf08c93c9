//! Walking the guest's 4-level page tables from the VMM.
//!
//! Hypercall arguments are guest virtual addresses; the VMM translates them
//! by reading the guest's tables (reads are safe from the VMM; writes to
//! page tables go through the shim). MFN = guest-physical frame.

use crate::mem::GuestRam;

pub const PTE_P: u64 = 1 << 0;
pub const PTE_RW: u64 = 1 << 1;
pub const PTE_US: u64 = 1 << 2;
pub const PTE_A: u64 = 1 << 5;
pub const PTE_D: u64 = 1 << 6;
pub const PTE_PS: u64 = 1 << 7;
pub const PTE_G: u64 = 1 << 8;
pub const PTE_NX: u64 = 1 << 63;
pub const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Why a translation failed, in terms a page fault error code can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkFault {
    pub va: u64,
    /// The fault was a protection violation (the entry was present).
    pub present: bool,
}

/// Result of a successful walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    pub gpa: u64,
    /// Guest-physical addresses of the entries used, L4 first (0 for unused levels).
    pub entries: [u64; 4],
    pub levels: usize,
    pub leaf: u64,
}

pub fn is_canonical(va: u64) -> bool {
    let top = (va as i64) >> 47;
    top == 0 || top == -1
}

/// Index of `va` at `level` (4 = L4 ... 1 = L1).
pub fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 511) as usize
}

/// Translate `va` through the tables at `cr3`. `write` demands writable
/// entries at every level. Large pages (2 MiB at L2, 1 GiB at L3) are honoured.
pub fn walk(ram: &GuestRam, cr3: u64, va: u64, write: bool) -> Result<Walk, WalkFault> {
    if !is_canonical(va) {
        return Err(WalkFault { va, present: false });
    }
    let mut table = cr3 & PTE_ADDR;
    let mut entries = [0u64; 4];
    for (n, level) in (1..=4u32).rev().enumerate() {
        let ea = table + index(va, level) as u64 * 8;
        let e = ram
            .read_u64(ea)
            .map_err(|_| WalkFault { va, present: false })?;
        entries[n] = ea;
        if e & PTE_P == 0 {
            return Err(WalkFault { va, present: false });
        }
        if write && e & PTE_RW == 0 {
            return Err(WalkFault { va, present: true });
        }
        let large = level > 1 && level < 4 && e & PTE_PS != 0;
        if level == 1 || large {
            let page_bits = 12 + 9 * (level - 1);
            let base = (e & PTE_ADDR) & !((1u64 << page_bits) - 1);
            let gpa = base | (va & ((1u64 << page_bits) - 1));
            return Ok(Walk {
                gpa,
                entries,
                levels: n + 1,
                leaf: e,
            });
        }
        table = e & PTE_ADDR;
    }
    unreachable!("the loop returns at level 1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_4k_and_2m() {
        let ram = GuestRam::new(1 << 24).unwrap();
        // L4 at 0x1000, L3 at 0x2000, L2 at 0x3000, L1 at 0x4000.
        let va: u64 = 0xffff_ffff_8020_1000;
        ram.write_u64(0x1000 + index(va, 4) as u64 * 8, 0x2000 | 7)
            .unwrap();
        ram.write_u64(0x2000 + index(va, 3) as u64 * 8, 0x3000 | 7)
            .unwrap();
        ram.write_u64(0x3000 + index(va, 2) as u64 * 8, 0x4000 | 7)
            .unwrap();
        ram.write_u64(0x4000 + index(va, 1) as u64 * 8, 0x9000 | 5)
            .unwrap();
        let w = walk(&ram, 0x1000, va + 0x123, false).unwrap();
        assert_eq!(w.gpa, 0x9123);
        assert_eq!(w.levels, 4);
        assert_eq!(
            walk(&ram, 0x1000, va, true),
            Err(WalkFault { va, present: true })
        );
        // A 2 MiB page one slot up.
        let va2 = va + (2 << 20);
        ram.write_u64(0x3000 + index(va2, 2) as u64 * 8, 0x60_0000 | 0x87)
            .unwrap();
        let w = walk(&ram, 0x1000, va2 + 0x5432, true).unwrap();
        assert_eq!(w.gpa, 0x60_0000 + (va2 & 0x1f_ffff) + 0x5432);
        assert!(walk(&ram, 0x1000, 0x8000_0000_0000, false).is_err());
        assert!(walk(&ram, 0x1000, 0x1000, false).is_err());
    }
}
