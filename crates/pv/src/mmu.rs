//! The guest's MMU: access to guest-virtual memory, `mmu_update`,
//! `update_va_mapping`, `mmuext_op`, and the page-table invariants Xen keeps
//! for x86-64 PV guests (every present entry has `_PAGE_USER`, rxen's L4
//! slots are present in every top-level table).
//!
//! Page-table writes are done twice on purpose: directly, so the VMM's own
//! walks see them at once, and again through the shim on resume, so the
//! host's shadow MMU notices the change.

use std::collections::HashSet;

use vm_memory::ByteValued;
use xen_abi::{
    MmuUpdate, MmuextOp, HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START, XEN_EFAULT, XEN_EINVAL,
    XEN_ENOSYS, XEN_EPERM,
};

use crate::layout::PAGE_SIZE;
use crate::machine::Machine;
use crate::paging::{self, walk, PTE_ADDR, PTE_P, PTE_PS, PTE_RW, PTE_US};
use crate::vcpu::Vcpu;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestFault {
    pub va: u64,
}

/// Frames known to be page tables (pinned, or reached from a pinned table).
#[derive(Default)]
pub struct PageTables {
    pub frames: HashSet<u64>,
    /// Frames pinned as top-level tables (until unpinned): their slots
    /// 256..272 are rxen's and refuse guest writes.
    pub l4: HashSet<u64>,
}

/// rxen's part of every address space (Xen's hypervisor range, L4 slots
/// 256..272): the host-reserved slot, the shim, the M2P and the direct map.
pub const RXEN_VA: std::ops::Range<u64> = HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END;
/// The same range as L4 slot numbers.
const RXEN_L4_SLOTS: std::ops::Range<u64> = 256..272;

/// Is guest code at `rip` (CPL3) rxen's rather than the guest's: the shim's
/// trampoline, or the kernel stub's entry in guest user mode (a SYSCALL
/// about to fault into the shim)? In guest kernel mode the kernel stub
/// counts as guest kernel code: it runs at CPL3 with the guest's registers
/// and stack, and an event may interrupt it like any kernel code (the
/// upcall's iret resumes it, RCX and R11 included).
pub fn rip_in_rxen(rip: u64, kernel_mode: bool) -> bool {
    let stub = crate::layout::KSTUB_VA + u64::from(!kernel_mode);
    RXEN_VA.contains(&rip)
        && !(stub..crate::layout::KSTUB_VA + crate::layout::PAGE_SIZE).contains(&rip)
}

/// Is `va` in rxen's range? Guest pointers there are refused like unmapped
/// ones (-EFAULT): the direct map would otherwise let a hypercall write the
/// guest's page tables behind rxen's back.
fn in_rxen_range(va: u64) -> bool {
    RXEN_VA.contains(&va)
}

impl Vcpu {
    pub fn copy_from_guest(&self, va: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        let mut done = 0;
        while done < buf.len() {
            let cur = va.wrapping_add(done as u64);
            if in_rxen_range(cur) {
                return Err(GuestFault { va: cur });
            }
            let w = walk(self.ram(), self.cr3(), cur, false).map_err(|_| GuestFault { va: cur })?;
            let n = ((PAGE_SIZE - (cur & (PAGE_SIZE - 1))) as usize).min(buf.len() - done);
            if !self.dom.machine.guest_may_map(w.gpa >> 12, false) {
                return Err(GuestFault { va: cur });
            }
            self.ram()
                .read(w.gpa, &mut buf[done..done + n])
                .map_err(|_| GuestFault { va: cur })?;
            done += n;
        }
        Ok(())
    }

    pub fn copy_to_guest(&self, va: u64, buf: &[u8]) -> Result<(), GuestFault> {
        let mut done = 0;
        while done < buf.len() {
            let cur = va.wrapping_add(done as u64);
            if in_rxen_range(cur) {
                return Err(GuestFault { va: cur });
            }
            let w = walk(self.ram(), self.cr3(), cur, true).map_err(|_| GuestFault { va: cur })?;
            let n = ((PAGE_SIZE - (cur & (PAGE_SIZE - 1))) as usize).min(buf.len() - done);
            if !self.dom.machine.guest_may_map(w.gpa >> 12, true) {
                return Err(GuestFault { va: cur });
            }
            self.ram()
                .write(w.gpa, &buf[done..done + n])
                .map_err(|_| GuestFault { va: cur })?;
            done += n;
        }
        Ok(())
    }

    pub fn read_guest_obj<T: ByteValued>(&self, va: u64) -> Result<T, GuestFault> {
        // SAFETY: ByteValued types are plain data for which all-zero bytes
        // are a valid value.
        let mut v: T = unsafe { std::mem::zeroed() };
        self.copy_from_guest(va, v.as_mut_slice())?;
        Ok(v)
    }

    pub fn write_guest_obj<T: ByteValued>(&self, va: u64, v: &T) -> Result<(), GuestFault> {
        self.copy_to_guest(va, v.as_slice())
    }

    /// Write one page-table entry at guest-physical `pte_gpa`.
    pub fn write_pte(&mut self, pte_gpa: u64, val: u64) -> Result<(), GuestFault> {
        if self.ram().write_u64(pte_gpa, val).is_err() {
            return Err(GuestFault { va: pte_gpa });
        }
        self.ptw.push((Machine::direct_va(pte_gpa), val));
        Ok(())
    }

    /// Queue an `invlpg` of guest-virtual `va` for the next resume.
    pub fn invlpg(&mut self, va: u64) {
        if paging::is_canonical(va) {
            self.ptw.push(((va & !0xfff) | 1, 0));
        }
    }

    /// Check a new entry and apply Xen's adjustments (force `_PAGE_USER`).
    fn adjust_entry(&self, val: u64) -> Result<u64, i64> {
        if val & PTE_P == 0 {
            return Ok(val);
        }
        let pfn = (val & PTE_ADDR) >> 12;
        if !self.dom.machine.guest_may_map(pfn, val & PTE_RW != 0) {
            return Err(-XEN_EPERM);
        }
        Ok(val | PTE_US)
    }

    /// One `mmu_update` request.
    pub fn mmu_update_one(&mut self, req: MmuUpdate) -> Result<(), i64> {
        let cmd = req.ptr & 3;
        let ptr = req.ptr & !3;
        match cmd {
            0 | 2 => {
                // NORMAL_PT_UPDATE / PT_UPDATE_PRESERVE_AD: ptr is the entry's machine address.
                if ptr & 7 != 0 || ptr >> 12 >= self.dom.machine.layout.ram_pages {
                    return Err(-XEN_EINVAL);
                }
                if self.is_rxen_l4_slot(ptr) {
                    // Xen: "Illegal L4 update attempt in Xen-private area".
                    return Err(-XEN_EINVAL);
                }
                let mut val = self.adjust_entry(req.val)?;
                if cmd == 2 {
                    let old = self.ram().read_u64(ptr).map_err(|_| -XEN_EFAULT)?;
                    val |= old & (paging::PTE_A | paging::PTE_D);
                }
                self.write_pte(ptr, val).map_err(|_| -XEN_EFAULT)
            }
            1 => {
                // MACHPHYS_UPDATE: M2P[mfn] = val.
                let mfn = ptr >> 12;
                let l = &self.dom.machine.layout;
                if mfn >= l.m2p_entries() {
                    return Err(-XEN_EINVAL);
                }
                let gpa = l.hv_gpa(l.m2p_frames_start) + mfn * 8;
                self.ram().write_u64(gpa, req.val).map_err(|_| -XEN_EFAULT)
            }
            _ => Err(-XEN_ENOSYS),
        }
    }

    /// Is `pte_gpa` one of rxen's slots (256..272) in a top-level table?
    pub fn is_rxen_l4_slot(&self, pte_gpa: u64) -> bool {
        self.pt.l4.contains(&(pte_gpa >> 12)) && RXEN_L4_SLOTS.contains(&((pte_gpa & 0xfff) / 8))
    }

    /// Guest-physical address of the L1 entry mapping `va` in the kernel
    /// tables. None for rxen's range (its tables are not the guest's) and
    /// for tables outside guest RAM.
    pub fn l1_entry_for(&self, va: u64) -> Option<u64> {
        if !paging::is_canonical(va) || in_rxen_range(va) {
            return None;
        }
        let mut table = self.kernel_cr3 & PTE_ADDR;
        for level in (2..=4u32).rev() {
            let e = self
                .ram()
                .read_u64(table + paging::index(va, level) as u64 * 8)
                .ok()?;
            if e & PTE_P == 0 || (level < 4 && e & PTE_PS != 0) {
                return None;
            }
            table = e & PTE_ADDR;
        }
        if table >> 12 >= self.dom.machine.layout.ram_pages {
            return None;
        }
        Some(table + paging::index(va, 1) as u64 * 8)
    }

    pub fn update_va_mapping(&mut self, va: u64, val: u64, flags: u64) -> i64 {
        let Some(pte) = self.l1_entry_for(va) else {
            return -XEN_EINVAL;
        };
        let val = match self.adjust_entry(val) {
            Ok(v) => v,
            Err(e) => return e,
        };
        if self.write_pte(pte, val).is_err() {
            return -XEN_EFAULT;
        }
        match flags & xen_abi::UVMF_FLUSHTYPE_MASK {
            xen_abi::UVMF_INVLPG => self.invlpg(va),
            xen_abi::UVMF_TLB_FLUSH => self.flush = true,
            _ => {}
        }
        0
    }

    /// Make sure rxen's L4 slots are present in top-level table `l4_pfn`,
    /// and the kernel stub's slot exactly when `kernel` (the table is now
    /// the guest kernel's): a table guest user mode runs on must never map
    /// the stub's writable alias of guest RAM.
    /// True when an entry changed.
    fn install_hv_slots(&mut self, l4_pfn: u64, kernel: bool) -> Result<bool, GuestFault> {
        let (kslot, kval) = self.dom.machine.kernel_l4_entry();
        let kval = if kernel { kval } else { 0 };
        let mut changed = false;
        for (slot, val) in self
            .dom
            .machine
            .hv_l4_entries()
            .into_iter()
            .chain([(kslot, kval)])
        {
            let ea = (l4_pfn << 12) + slot as u64 * 8;
            if self.ram().read_u64(ea).ok() != Some(val) {
                self.write_pte(ea, val)?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Validate a newly pinned table: record it as a page table and give
    /// every present entry below it `_PAGE_USER`.
    fn pin(&mut self, pfn: u64, level: u32) -> Result<(), i64> {
        if pfn >= self.dom.machine.layout.ram_pages {
            return Err(-XEN_EINVAL);
        }
        if level == 4 {
            // Not a kernel table until it becomes the kernel base pointer.
            self.install_hv_slots(pfn, false).map_err(|_| -XEN_EFAULT)?;
            self.pt.l4.insert(pfn);
        }
        // Entries fixed below may already be cached by the host's shadow MMU.
        self.flush = true;
        let mut stack = vec![(pfn, level)];
        let mut seen = HashSet::new();
        while let Some((f, lvl)) = stack.pop() {
            if !seen.insert(f) || f >= self.dom.machine.layout.ram_pages {
                continue;
            }
            let newly = self.pt.frames.insert(f);
            let mut page = [0u8; 4096];
            if self.ram().read(f << 12, &mut page).is_err() {
                continue;
            }
            for i in 0..512usize {
                if lvl == 4 && (256..272).contains(&i) {
                    continue;
                }
                let e = u64::from_le_bytes(page[i * 8..i * 8 + 8].try_into().unwrap());
                if e & PTE_P == 0 {
                    continue;
                }
                if e & PTE_US == 0 {
                    let _ = self.write_pte((f << 12) + i as u64 * 8, e | PTE_US);
                }
                let leaf = lvl == 1 || (lvl < 4 && e & PTE_PS != 0);
                // Shared kernel subtrees already validated are not walked again.
                if !leaf && (newly || lvl == 4) {
                    stack.push(((e & PTE_ADDR) >> 12, lvl - 1));
                }
            }
        }
        Ok(())
    }

    pub fn mmuext_one(&mut self, op: MmuextOp) -> Result<(), i64> {
        use xen_abi::*;
        match op.cmd {
            MMUEXT_PIN_L1_TABLE => self.pin(op.arg1, 1),
            MMUEXT_PIN_L2_TABLE => self.pin(op.arg1, 2),
            MMUEXT_PIN_L3_TABLE => self.pin(op.arg1, 3),
            MMUEXT_PIN_L4_TABLE => self.pin(op.arg1, 4),
            MMUEXT_UNPIN_TABLE => {
                // The frame may now be reused as any page (Linux unpins a
                // process's tables while its user base may still name them).
                self.pt.l4.remove(&op.arg1);
                Ok(())
            }
            MMUEXT_NEW_BASEPTR => {
                if op.arg1 >= self.dom.machine.layout.ram_pages {
                    return Err(-XEN_EINVAL);
                }
                if !self.pt.frames.contains(&op.arg1) {
                    self.pin(op.arg1, 4)?;
                }
                // A table that is also the user base pointer stays without
                // the kernel stub (user mode must not reach its alias).
                let kernel_only = self.user_cr3 != op.arg1 << 12;
                self.install_hv_slots(op.arg1, kernel_only)
                    .map_err(|_| -XEN_EFAULT)?;
                self.kernel_cr3 = op.arg1 << 12;
                self.flush = true;
                Ok(())
            }
            MMUEXT_NEW_USER_BASEPTR => {
                if op.arg1 == 0 {
                    self.user_cr3 = 0;
                    return Ok(());
                }
                if op.arg1 >= self.dom.machine.layout.ram_pages {
                    return Err(-XEN_EINVAL);
                }
                if !self.pt.frames.contains(&op.arg1) {
                    self.pin(op.arg1, 4)?;
                }
                // Taking the stub's slot out of a table the host's shadow
                // MMU may still map it from needs a flush.
                if self
                    .install_hv_slots(op.arg1, false)
                    .map_err(|_| -XEN_EFAULT)?
                {
                    self.flush = true;
                }
                self.user_cr3 = op.arg1 << 12;
                Ok(())
            }
            MMUEXT_TLB_FLUSH_LOCAL | MMUEXT_TLB_FLUSH_MULTI | MMUEXT_TLB_FLUSH_ALL => {
                self.flush = true;
                Ok(())
            }
            MMUEXT_INVLPG_LOCAL | MMUEXT_INVLPG_MULTI | MMUEXT_INVLPG_ALL => {
                self.invlpg(op.arg1);
                Ok(())
            }
            MMUEXT_FLUSH_CACHE | MMUEXT_FLUSH_CACHE_GLOBAL => Ok(()),
            MMUEXT_SET_LDT => {
                if op.arg2 == 0 {
                    Ok(())
                } else {
                    tracing::debug!("LDT with {} entries ignored", op.arg2);
                    Ok(())
                }
            }
            MMUEXT_CLEAR_PAGE => {
                if op.arg1 >= self.dom.machine.layout.ram_pages {
                    return Err(-XEN_EINVAL);
                }
                self.ram()
                    .zero(op.arg1 << 12, PAGE_SIZE as usize)
                    .map_err(|_| -XEN_EFAULT)
            }
            MMUEXT_COPY_PAGE => {
                let n = self.dom.machine.layout.ram_pages;
                if op.arg1 >= n || op.arg2 >= n {
                    return Err(-XEN_EINVAL);
                }
                let mut page = vec![0u8; PAGE_SIZE as usize];
                self.ram()
                    .read(op.arg2 << 12, &mut page)
                    .map_err(|_| -XEN_EFAULT)?;
                self.ram()
                    .write(op.arg1 << 12, &page)
                    .map_err(|_| -XEN_EFAULT)
            }
            _ => Err(-XEN_ENOSYS),
        }
    }

    /// A page fault that may be rxen's business: a missing `_PAGE_USER`
    /// somewhere on the path (fixed, and the access retried). Returns true if
    /// it was fixed.
    pub fn fix_user_bits(&mut self, va: u64, write: bool) -> bool {
        // rxen's own slots (256..272) stay supervisor-only.
        if in_rxen_range(va) {
            return false;
        }
        let Ok(w) = walk(self.ram(), self.cr3(), va, write) else {
            return false;
        };
        let mut fixed = false;
        for &ea in &w.entries[..w.levels] {
            let Ok(e) = self.ram().read_u64(ea) else {
                return false;
            };
            if e & PTE_US == 0 {
                if ea >> 12 >= self.dom.machine.layout.ram_pages {
                    return false;
                }
                if self.write_pte(ea, e | PTE_US).is_err() {
                    return false;
                }
                fixed = true;
            }
        }
        // Fix the rest of the leaf table in the same trip.
        if fixed && w.levels == 4 {
            let l1 = w.entries[3] & !0xfff;
            for i in 0..512u64 {
                let ea = l1 + i * 8;
                if let Ok(e) = self.ram().read_u64(ea) {
                    if e & PTE_P != 0 && e & PTE_US == 0 {
                        let _ = self.write_pte(ea, e | PTE_US);
                    }
                }
            }
            self.pt.frames.insert(l1 >> 12);
        }
        if fixed {
            self.invlpg(va);
        }
        fixed
    }

    /// Is the frame holding `gpa` a page table rxen knows of?
    pub fn is_page_table(&self, gpa: u64) -> bool {
        self.pt.frames.contains(&(gpa >> 12))
    }
}
