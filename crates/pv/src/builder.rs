//! The domain builder: lays out a PV guest's start-of-day memory the way
//! Xen's builder does for a 64-bit guest, and returns the initial vCPU
//! context.
//!
//! Virtual layout from the kernel's VIRT_BASE, in order: kernel image,
//! initrd, p2m list, start_info, xenstore ring, console ring, bootstrap page
//! tables (mapped read-only), boot stack; the region ends 4 MiB aligned with
//! at least 512 KiB to spare. Virtual page `va` maps frame `(va - VIRT_BASE)/4K`.

use pv_image::KernelImage;
use xen_abi::{SharedInfo, StartInfo, MAX_GUEST_CMDLINE};

use crate::layout::{hv, PAGE_SIZE};
use crate::machine::Machine;
use crate::mem::BadGpa;
use crate::paging::{index, PTE_A, PTE_D, PTE_P, PTE_RW, PTE_US};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0} MiB of memory is too little for this kernel and initrd: they need {1} MiB before the kernel even starts; give the domain more `memory`")]
    TooLittleMemory(u64, u64),
    #[error("the kernel's start-of-day area ({0} MiB) does not fit in the 1 GiB the kernel maps at boot; use a smaller initrd")]
    TooLarge(u64),
    #[error("the command line is {0} bytes; Xen PV allows at most {max}", max = MAX_GUEST_CMDLINE - 1)]
    CmdlineTooLong(usize),
    #[error("kernel segment at {0:#x} lies below the kernel's VIRT_BASE")]
    SegmentBelowBase(u64),
    #[error("writing guest memory failed: {0}")]
    Memory(#[from] BadGpa),
}

/// What the builder leaves for the vCPU and the device models.
#[derive(Debug, Clone)]
pub struct BootInfo {
    pub entry: u64,
    pub stack_top: u64,
    pub start_info_va: u64,
    /// Guest-physical address of the bootstrap L4 (initial CR3).
    pub l4_gpa: u64,
    /// Frames of the bootstrap page tables (L4 first).
    pub pt_frames: Vec<u64>,
    pub console_pfn: u64,
    pub xenstore_pfn: u64,
    pub console_evtchn: u32,
    pub xenstore_evtchn: u32,
    pub hypercall_page: Option<u64>,
}

pub const XENSTORE_EVTCHN: u32 = 1;
pub const CONSOLE_EVTCHN: u32 = 2;

fn page_up(x: u64) -> u64 {
    (x + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

pub fn build(
    m: &Machine,
    kernel: &KernelImage,
    initrd: Option<&[u8]>,
    cmdline: &str,
) -> Result<BootInfo, BuildError> {
    if cmdline.len() >= MAX_GUEST_CMDLINE {
        return Err(BuildError::CmdlineTooLong(cmdline.len()));
    }
    let base = kernel.notes.virt_base;
    let ram = &m.ram;
    let nr_pages = m.layout.ram_pages;
    let gpa_of = |va: u64| va - base;

    // Kernel segments.
    for seg in &kernel.segments {
        if seg.vaddr < base {
            return Err(BuildError::SegmentBelowBase(seg.vaddr));
        }
        let gpa = gpa_of(seg.vaddr);
        if gpa + seg.memsz > nr_pages * PAGE_SIZE {
            return Err(BuildError::TooLittleMemory(
                nr_pages >> 8,
                (gpa + seg.memsz) >> 20,
            ));
        }
        // A new domain's RAM is all zero (every boot, restarts included,
        // gets a new Machine): the segment's zero pages and its bss need
        // no writing.
        ram.write_to_zeroed(gpa, &seg.data)?;
    }

    // Allocate the rest of the region page by page after the kernel.
    let mut next = page_up(kernel.virt_end);
    let alloc = |next: &mut u64, bytes: u64| {
        let va = *next;
        *next += page_up(bytes.max(1));
        va
    };
    let (mod_start, mod_len) = match initrd {
        Some(data) => (alloc(&mut next, data.len() as u64), data.len() as u64),
        None => (0, 0),
    };
    let p2m_va = alloc(&mut next, nr_pages * 8);
    let start_info_va = alloc(&mut next, PAGE_SIZE);
    let xenstore_va = alloc(&mut next, PAGE_SIZE);
    let console_va = alloc(&mut next, PAGE_SIZE);

    // Page tables: L4, L3, L2 for the 1 GiB at L4[511]/L3[510], L1s for the
    // region, which includes the tables themselves and the stack.
    let pt_start = next;
    let mut l1_count = 1u64;
    let region_end = loop {
        let end = pt_start + (3 + l1_count) * PAGE_SIZE + PAGE_SIZE; // + stack
        let end = (end + (512 << 10) + (4 << 20) - 1) & !((4 << 20) - 1);
        let needed = (end - base).div_ceil(2 << 20);
        if needed <= l1_count {
            break end;
        }
        l1_count = needed;
    };
    if region_end - base > (1 << 30) {
        return Err(BuildError::TooLarge((region_end - base) >> 20));
    }
    if gpa_of(region_end) > nr_pages * PAGE_SIZE {
        return Err(BuildError::TooLittleMemory(
            nr_pages >> 8,
            gpa_of(region_end) >> 20,
        ));
    }
    let nr_pt = 3 + l1_count;
    let l4_va = alloc(&mut next, PAGE_SIZE);
    let l3_va = alloc(&mut next, PAGE_SIZE);
    let l2_va = alloc(&mut next, PAGE_SIZE);
    let l1_va = alloc(&mut next, l1_count * PAGE_SIZE);
    let stack_va = alloc(&mut next, PAGE_SIZE);
    debug_assert!(next <= region_end);

    if let (Some(data), true) = (initrd, mod_len > 0) {
        ram.write(gpa_of(mod_start), data)?;
    }
    // p2m: identity.
    let mut p2m = Vec::with_capacity(nr_pages as usize * 8);
    for pfn in 0..nr_pages {
        p2m.extend_from_slice(&pfn.to_le_bytes());
    }
    ram.write(gpa_of(p2m_va), &p2m)?;

    // Page tables. They are built before any vCPU runs, so direct writes are fine.
    let l4 = gpa_of(l4_va);
    let l3 = gpa_of(l3_va);
    let l2 = gpa_of(l2_va);
    let l1 = gpa_of(l1_va);
    for t in 0..nr_pt {
        ram.zero(l4 + t * PAGE_SIZE, PAGE_SIZE as usize)?;
    }
    let upper = PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D;
    ram.write_u64(l4 + index(base, 4) as u64 * 8, l3 | upper)?;
    ram.write_u64(l3 + index(base, 3) as u64 * 8, l2 | upper)?;
    // The start-of-day table is the guest kernel's: it carries the kernel
    // stub's slot too.
    for (slot, val) in m.hv_l4_entries().into_iter().chain([m.kernel_l4_entry()]) {
        ram.write_u64(l4 + slot as u64 * 8, val)?;
    }
    let pt_range = l4_va..l4_va + nr_pt * PAGE_SIZE;
    let mut va = base;
    while va < region_end {
        let n = (va - base) / PAGE_SIZE;
        let l1_page = n / 512;
        if n.is_multiple_of(512) {
            ram.write_u64(
                l2 + index(va, 2) as u64 * 8,
                (l1 + l1_page * PAGE_SIZE) | upper,
            )?;
        }
        let rw = if pt_range.contains(&va) { 0 } else { PTE_RW };
        ram.write_u64(l1 + n * 8, gpa_of(va) | PTE_P | PTE_US | PTE_A | PTE_D | rw)?;
        va += PAGE_SIZE;
    }

    // Rings start zeroed.
    ram.zero(gpa_of(xenstore_va), PAGE_SIZE as usize)?;
    ram.zero(gpa_of(console_va), PAGE_SIZE as usize)?;

    // start_info.
    let mut si = StartInfo::default();
    let magic = b"xen-3.0-x86_64";
    si.magic[..magic.len()].copy_from_slice(magic);
    si.nr_pages = nr_pages;
    si.shared_info = m.layout.hv_gpa(hv::SHARED_INFO);
    si.flags = 0;
    si.store_mfn = gpa_of(xenstore_va) / PAGE_SIZE;
    si.store_evtchn = XENSTORE_EVTCHN;
    si.console.mfn = gpa_of(console_va) / PAGE_SIZE;
    si.console.evtchn = CONSOLE_EVTCHN;
    si.pt_base = l4_va;
    si.nr_pt_frames = nr_pt;
    si.mfn_list = p2m_va;
    si.mod_start = mod_start;
    si.mod_len = mod_len;
    si.cmd_line[..cmdline.len()].copy_from_slice(cmdline.as_bytes());
    ram.zero(gpa_of(start_info_va), PAGE_SIZE as usize)?;
    ram.write_obj(gpa_of(start_info_va), si)?;

    // shared_info: every vCPU starts with events masked.
    let mut sh = SharedInfo::default();
    for v in sh.vcpu_info.iter_mut() {
        v.evtchn_upcall_mask = 1;
    }
    sh.arch.max_pfn = nr_pages;
    ram.zero(m.layout.hv_gpa(hv::SHARED_INFO), PAGE_SIZE as usize)?;
    ram.write_obj(m.layout.hv_gpa(hv::SHARED_INFO), sh)?;

    // Older kernels want a hypercall page of 32-byte `syscall` stubs.
    if let Some(hp) = kernel.notes.hypercall_page {
        if hp >= base && hp < kernel.virt_end {
            write_hypercall_page(m, gpa_of(hp))?;
        }
    }

    Ok(BootInfo {
        entry: kernel.notes.entry,
        stack_top: stack_va + PAGE_SIZE,
        start_info_va,
        l4_gpa: l4,
        pt_frames: (0..nr_pt).map(|t| l4 / PAGE_SIZE + t).collect(),
        console_pfn: gpa_of(console_va) / PAGE_SIZE,
        xenstore_pfn: gpa_of(xenstore_va) / PAGE_SIZE,
        console_evtchn: CONSOLE_EVTCHN,
        xenstore_evtchn: XENSTORE_EVTCHN,
        hypercall_page: kernel.notes.hypercall_page,
    })
}

/// Fill a hypercall page: stub `n` at offset 32n is
/// `push %rcx; push %r11; mov $n,%eax; syscall; pop %r11; pop %rcx; ret`,
/// except iret (23): `push %rcx; push %r11; push %rax; mov $23,%eax; syscall`.
fn write_hypercall_page(m: &Machine, gpa: u64) -> Result<(), BadGpa> {
    let mut page = vec![0xccu8; PAGE_SIZE as usize];
    for n in 0..(PAGE_SIZE / 32) as u32 {
        let s = &mut page[n as usize * 32..][..32];
        let nb = n.to_le_bytes();
        let stub: Vec<u8> = if n == xen_abi::HYPERVISOR_IRET as u32 {
            [&[0x51, 0x41, 0x53, 0x50, 0xb8][..], &nb, &[0x0f, 0x05]].concat()
        } else {
            [
                &[0x51, 0x41, 0x53, 0xb8][..],
                &nb,
                &[0x0f, 0x05, 0x41, 0x5b, 0x59, 0xc3],
            ]
            .concat()
        };
        s[..stub.len()].copy_from_slice(&stub);
    }
    m.ram.write(gpa, &page)
}
