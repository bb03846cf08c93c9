//! Where everything lives: guest-physical frames above RAM for rxen's own
//! pages (the "hypervisor area") and the virtual addresses the shim and the
//! M2P table use inside every guest address space.
//!
//! Guest RAM is frames `0..nr_pages`; MFN equals the guest-physical frame
//! because each domain is its own KVM VM. The hypervisor area follows RAM,
//! 2 MiB aligned. Virtually, rxen owns L4 slot 257 (shim pages and the M2P
//! table) and slot 258 (a supervisor-only direct map of all guest-physical
//! memory, used by the shim to write page tables). Slot 259 is present only
//! in the guest kernel's address spaces: the SYSCALL entry that finishes a
//! single `mmu_update` at CPL3 and its user-accessible alias of guest RAM
//! (see `shim.rs`, "kernel stub"). Slot 256, where Xen keeps the M2P, is
//! reserved by this host and cannot be mapped (DESIGN.md).

pub const PAGE_SIZE: u64 = 4096;
pub const PAGE_SHIFT: u64 = 12;

/// L4 slot holding the shim and the M2P table.
pub const SHIM_L4_SLOT: usize = 257;
/// L4 slot holding the shim's direct map of guest-physical memory.
pub const DIRECTMAP_L4_SLOT: usize = 258;

/// L4 slot present only in guest-kernel top-level tables: the kernel stub
/// (SYSCALL entry) and its alias of guest RAM.
pub const KSTUB_L4_SLOT: usize = 259;

/// Canonical virtual address of the first byte of an L4 slot (upper half).
pub const fn l4_slot_va(slot: usize) -> u64 {
    0xffff_0000_0000_0000 | ((slot as u64) << 39)
}

/// Virtual base of the shim pages (hypervisor area page N is at `SHIM_VA + N*4K`).
pub const SHIM_VA: u64 = l4_slot_va(SHIM_L4_SLOT);
/// Virtual base of the read-only M2P table the guest reads at CPL3.
pub const M2P_VA: u64 = SHIM_VA + (1 << 30);
/// Virtual base of the direct map (guest-physical address 0).
pub const DIRECTMAP_VA: u64 = l4_slot_va(DIRECTMAP_L4_SLOT);

/// The kernel stub's code page (LSTAR), then its data page.
pub const KSTUB_VA: u64 = l4_slot_va(KSTUB_L4_SLOT);
/// The kernel stub's writable alias of guest RAM (guest-physical 0).
pub const KSTUB_ALIAS_VA: u64 = KSTUB_VA + (1 << 30);

/// Page offsets inside the hypervisor area.
pub mod hv {
    /// Shim code (vector stubs, SYSCALL entry, resume paths).
    pub const CODE: u64 = 0;
    pub const CODE_PAGES: u64 = 2;
    /// Shim data: resume parameters and the page-table write list.
    pub const DATA: u64 = 2;
    pub const DATA_PAGES: u64 = 4;
    pub const IDT: u64 = 6;
    pub const TSS: u64 = 7;
    /// Hardware GDT: guest entries from 0, rxen's reserved entries at 0xe000.
    pub const GDT: u64 = 8;
    pub const GDT_PAGES: u64 = 15;
    /// CPL0 stack used for every trap from CPL3 (TSS.RSP0).
    pub const STACK: u64 = 24;
    pub const STACK_PAGES: u64 = 4;
    /// Separate stack (IST1) for double faults and NMIs.
    pub const IST_STACK: u64 = 28;
    pub const IST_PAGES: u64 = 2;
    /// The domain's shared_info page.
    pub const SHARED_INFO: u64 = 30;
    /// Console and xenstore rings live in guest RAM (start-of-day area),
    /// not here. Page tables mapping slots 257 and 258 follow.
    pub const SHIM_L3: u64 = 31;
    pub const SHIM_L2: u64 = 32;
    pub const SHIM_L1: u64 = 33;
    pub const DIRECT_L3: u64 = 34;
    /// Slot 259: the kernel stub's tables, code page and data page.
    pub const KSTUB_L3: u64 = 35;
    pub const KSTUB_L2: u64 = 36;
    pub const KSTUB_L1: u64 = 37;
    pub const KSTUB_CODE: u64 = 38;
    pub const KSTUB_DATA: u64 = 39;
    /// First of the variable-sized parts (direct-map L2s, alias L2s, M2P
    /// tables, grant frames).
    pub const VARIABLE: u64 = 40;
    /// Pages of the area mapped at `SHIM_VA` by the single shim L1.
    pub const SHIM_MAPPED_PAGES: u64 = 512;
}

/// Selectors in rxen's hardware GDT. Guest selectors (FLAT_RING3_*) are Xen's.
pub mod sel {
    pub const SHIM_CS: u16 = 0xe008;
    pub const SHIM_SS: u16 = 0xe010;
    pub const RING3_CS32: u16 = 0xe023;
    pub const RING3_DS: u16 = 0xe02b;
    pub const RING3_CS64: u16 = 0xe033;
    pub const TSS: u16 = 0xe040;
    /// GDT limit: covers the TSS descriptor (16 bytes at 0xe040).
    pub const GDT_LIMIT: u16 = 0xe04f;
}

// The fixed pages of the area do not overlap.
const _: () = assert!(hv::CODE + hv::CODE_PAGES <= hv::DATA);
const _: () = assert!(hv::DATA + hv::DATA_PAGES <= hv::IDT);
const _: () = assert!(hv::GDT + hv::GDT_PAGES <= hv::STACK);
const _: () = assert!(hv::STACK + hv::STACK_PAGES <= hv::IST_STACK);
const _: () = assert!(hv::IST_STACK + hv::IST_PAGES <= hv::SHARED_INFO);
const _: () = assert!(hv::SHARED_INFO < hv::SHIM_L3 && hv::DIRECT_L3 < hv::VARIABLE);

pub const fn align_up(x: u64, a: u64) -> u64 {
    (x + a - 1) & !(a - 1)
}

/// Physical placement of one domain's memory.
#[derive(Debug, Clone, Copy)]
pub struct PhysLayout {
    /// Guest RAM pages (start_info.nr_pages).
    pub ram_pages: u64,
    /// First frame of the hypervisor area.
    pub hv_base_pfn: u64,
    /// Frames of the hypervisor area in total.
    pub hv_pages: u64,
    /// Direct-map L2 tables (one per GiB of guest-physical space).
    pub direct_l2: u64,
    pub direct_l2_count: u64,
    /// The kernel stub's alias L2 tables (one per GiB of RAM).
    pub alias_l2: u64,
    pub alias_l2_count: u64,
    /// M2P: one L2, `m2p_l1_count` L1s, then `m2p_frames` data frames.
    pub m2p_l2: u64,
    pub m2p_l1: u64,
    pub m2p_l1_count: u64,
    pub m2p_frames_start: u64,
    pub m2p_frames: u64,
    /// Grant-table frames handed to the guest by GNTTABOP_setup_table.
    pub grant_frames_start: u64,
    pub grant_frames: u64,
}

/// Xen's default `max_grant_frames`: 32 768 v1 entries, room for blkfront's
/// 256-segment requests on several disks (a full ring of 32 requests takes
/// ~8 300 references).
pub const MAX_GRANT_FRAMES: u64 = 64;

impl PhysLayout {
    pub fn new(ram_bytes: u64) -> PhysLayout {
        let ram_pages = ram_bytes / PAGE_SIZE;
        let hv_base_pfn = align_up(ram_pages, 512);
        // Size the M2P for every frame the guest might name (RAM + area); the
        // area is at most a few MiB more than its fixed part, so over-provision
        // by a fixed 16 MiB of frames.
        let max_frames = hv_base_pfn + 4096;
        let m2p_frames = align_up(max_frames * 8, PAGE_SIZE) / PAGE_SIZE;
        let m2p_l1_count = m2p_frames.div_ceil(512);
        let mut next = hv::VARIABLE;
        let total_guess = (hv_base_pfn + 4096) * PAGE_SIZE;
        let direct_l2_count = total_guess.div_ceil(1 << 30);
        let direct_l2 = next;
        next += direct_l2_count;
        let alias_l2 = next;
        let alias_l2_count = (ram_pages * PAGE_SIZE).div_ceil(1 << 30);
        next += alias_l2_count;
        let m2p_l2 = next;
        next += 1;
        let m2p_l1 = next;
        next += m2p_l1_count;
        let m2p_frames_start = next;
        next += m2p_frames;
        let grant_frames_start = next;
        next += MAX_GRANT_FRAMES;
        PhysLayout {
            ram_pages,
            hv_base_pfn,
            hv_pages: next,
            direct_l2,
            direct_l2_count,
            alias_l2,
            alias_l2_count,
            m2p_l2,
            m2p_l1,
            m2p_l1_count,
            m2p_frames_start,
            m2p_frames,
            grant_frames_start,
            grant_frames: MAX_GRANT_FRAMES,
        }
    }

    /// Guest-physical address of hypervisor-area page `page`.
    pub fn hv_gpa(&self, page: u64) -> u64 {
        (self.hv_base_pfn + page) * PAGE_SIZE
    }

    /// Guest-physical frame of hypervisor-area page `page`.
    pub fn hv_pfn(&self, page: u64) -> u64 {
        self.hv_base_pfn + page
    }

    /// Bytes of guest-physical memory in total (RAM, gap, area).
    pub fn total_bytes(&self) -> u64 {
        (self.hv_base_pfn + self.hv_pages) * PAGE_SIZE
    }

    /// Number of M2P entries (max_mfn + 1 as the guest sees it).
    pub fn m2p_entries(&self) -> u64 {
        self.m2p_frames * PAGE_SIZE / 8
    }

    /// Virtual address of hypervisor-area page `page` in the shim mapping.
    pub fn hv_va(page: u64) -> u64 {
        SHIM_VA + page * PAGE_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_addresses() {
        assert_eq!(SHIM_VA, 0xffff_8080_0000_0000);
        assert_eq!(DIRECTMAP_VA, 0xffff_8100_0000_0000);
        assert_eq!(M2P_VA, 0xffff_8080_4000_0000);
        assert_eq!(KSTUB_VA, 0xffff_8180_0000_0000);
    }

    #[test]
    fn area_follows_ram_and_fits() {
        let l = PhysLayout::new(256 << 20);
        assert_eq!(l.ram_pages, 65536);
        assert_eq!(l.hv_base_pfn, 65536);
        assert!(l.hv_pages <= hv::SHIM_MAPPED_PAGES || l.hv_pages > hv::VARIABLE);
        assert!(l.m2p_entries() >= l.hv_base_pfn + l.hv_pages);
        assert!(l.direct_l2_count * (1 << 30) >= l.total_bytes());
        // The alias covers RAM and never reaches rxen's own frames.
        assert_eq!(l.alias_l2_count, 1);
        assert!(align_up(l.ram_pages * PAGE_SIZE, 2 << 20) <= l.hv_gpa(0));
    }
}
