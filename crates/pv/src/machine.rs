//! The KVM side of a domain: the VM, its memory slot, rxen's hypervisor
//! area (shim, IDT, GDT, TSS, stacks, shim page tables, M2P) and the base
//! state every vCPU starts from.

use kvm_bindings::{kvm_msr_entry, kvm_segment, kvm_userspace_memory_region, Msrs};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};

use crate::layout::{self, hv, sel, PhysLayout, PAGE_SIZE};
use crate::mem::{BadGpa, GuestRam};
use crate::paging::{PTE_A, PTE_ADDR, PTE_D, PTE_NX, PTE_P, PTE_PS, PTE_RW, PTE_US};
use crate::shim;

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("cannot open /dev/kvm: {0} (rxen needs KVM; run as root on a host with /dev/kvm)")]
    Kvm(kvm_ioctls::Error),
    #[error("KVM refused to {what}: {err}")]
    Ioctl {
        what: &'static str,
        err: kvm_ioctls::Error,
    },
    #[error("cannot allocate {0} MiB of guest memory: {1}")]
    Memory(u64, std::io::Error),
    #[error("setting up the hypervisor area failed: {0}")]
    Layout(#[from] BadGpa),
}

fn ioctl_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> MachineError {
    move |err| MachineError::Ioctl { what, err }
}

pub const MSR_EFER: u32 = 0xc000_0080;
pub const MSR_STAR: u32 = 0xc000_0081;
pub const MSR_LSTAR: u32 = 0xc000_0082;
pub const MSR_CSTAR: u32 = 0xc000_0083;
pub const MSR_SFMASK: u32 = 0xc000_0084;
pub const MSR_FS_BASE: u32 = 0xc000_0100;
pub const MSR_GS_BASE: u32 = 0xc000_0101;
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
pub const MSR_TSC: u32 = 0x10;

/// RFLAGS bits cleared on SYSCALL entry: TF, IF, DF, AC, NT.
const SFMASK: u64 = (1 << 8) | (1 << 9) | (1 << 10) | (1 << 18) | (1 << 14);

pub struct Machine {
    pub kvm: Kvm,
    pub vm: VmFd,
    pub ram: GuestRam,
    pub layout: PhysLayout,
    pub shim: shim::ShimOffsets,
}

impl Machine {
    /// Create the VM with `ram_bytes` of RAM and install the hypervisor area.
    pub fn new(ram_bytes: u64) -> Result<Machine, MachineError> {
        let layout = PhysLayout::new(ram_bytes);
        let kvm = Kvm::new().map_err(MachineError::Kvm)?;
        let vm = kvm.create_vm().map_err(ioctl_err("create a VM"))?;
        let ram = GuestRam::new(layout.total_bytes())
            .map_err(|e| MachineError::Memory(ram_bytes >> 20, e))?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: layout.total_bytes(),
            userspace_addr: ram.host_base(),
        };
        // SAFETY: the region is our own anonymous mapping of exactly
        // `memory_size` bytes, which lives as long as `ram` (owned by the
        // Machine, which also owns the VM fd).
        unsafe { vm.set_user_memory_region(region) }.map_err(ioctl_err("add guest memory"))?;
        let m = Machine {
            kvm,
            vm,
            ram,
            layout,
            shim: shim::offsets(),
        };
        m.install_hv_area()?;
        Ok(m)
    }

    /// Write the shim, descriptor tables, TSS and the page tables that map
    /// slots 257 and 258 into the hypervisor area.
    fn install_hv_area(&self) -> Result<(), BadGpa> {
        let l = &self.layout;
        let ram = &self.ram;
        ram.write(l.hv_gpa(hv::CODE), shim::blob())?;

        // IDT: interrupt gates to the vector stubs; int3/into reachable from CPL3.
        for v in 0..256u64 {
            let handler = PhysLayout::hv_va(hv::CODE) + shim::vector_stub(v as u8);
            let dpl: u64 = if v == 3 || v == 4 { 3 } else { 0 };
            let ist: u64 = if v == 2 || v == 8 { 1 } else { 0 };
            let lo = (handler & 0xffff)
                | ((sel::SHIM_CS as u64) << 16)
                | (ist << 32)
                | ((0x8e | (dpl << 5)) << 40)
                | (((handler >> 16) & 0xffff) << 48);
            let hi = handler >> 32;
            ram.write_u64(l.hv_gpa(hv::IDT) + v * 16, lo)?;
            ram.write_u64(l.hv_gpa(hv::IDT) + v * 16 + 8, hi)?;
        }

        // TSS: RSP0 = top of the CPL0 stack, IST1 = top of the IST stack, no I/O bitmap.
        let tss = l.hv_gpa(hv::TSS);
        ram.write_u64(tss + 4, self.stack_top())?;
        ram.write_u64(tss + 0x24, PhysLayout::hv_va(hv::IST_STACK + hv::IST_PAGES))?;
        ram.write_obj::<u16>(tss + 0x66, 0x68)?;

        // GDT reserved entries.
        let gdt = l.hv_gpa(hv::GDT);
        let put = |s: u16, d: u64| ram.write_u64(gdt + (s as u64 & !7), d);
        put(sel::SHIM_CS, 0x00af_9b00_0000_ffff)?; // 64-bit code, DPL0
        put(sel::SHIM_SS, 0x00cf_9300_0000_ffff)?; // data, DPL0
        put(sel::RING3_CS32, 0x00cf_fb00_0000_ffff)?; // 32-bit code, DPL3
        put(sel::RING3_DS, 0x00cf_f300_0000_ffff)?; // data, DPL3
        put(sel::RING3_CS64, 0x00af_fb00_0000_ffff)?; // 64-bit code, DPL3
        let tss_va = PhysLayout::hv_va(hv::TSS);
        let tss_lo =
            0x67 | ((tss_va & 0xff_ffff) << 16) | (0x89u64 << 40) | (((tss_va >> 24) & 0xff) << 56);
        put(sel::TSS, tss_lo)?;
        ram.write_u64(gdt + sel::TSS as u64 + 8, tss_va >> 32)?;

        // Slot 257: shim pages (supervisor only) and the M2P (user, read-only).
        let upper = PTE_P | PTE_RW | PTE_A | PTE_D;
        // Upper levels allow user access; every leaf is supervisor-only, so
        // a SYSCALL (which stays at CPL3 here and jumps to LSTAR, the
        // trampoline page) faults into the shim at once.
        ram.write_u64(
            l.hv_gpa(hv::SHIM_L3),
            l.hv_gpa(hv::SHIM_L2) | upper | PTE_US,
        )?;
        ram.write_u64(
            l.hv_gpa(hv::SHIM_L2),
            l.hv_gpa(hv::SHIM_L1) | upper | PTE_US,
        )?;
        let tramp = hv::CODE + shim::SYSCALL_TRAMP / PAGE_SIZE;
        for p in 0..hv::SHIM_MAPPED_PAGES.min(l.hv_pages) {
            let leaf = if p < hv::CODE + hv::CODE_PAGES || p == tramp {
                PTE_P | PTE_A
            } else {
                PTE_P | PTE_RW | PTE_A | PTE_D | PTE_NX
            };
            ram.write_u64(l.hv_gpa(hv::SHIM_L1) + p * 8, l.hv_gpa(p) | leaf)?;
        }
        ram.write_u64(
            l.hv_gpa(hv::SHIM_L3) + 8,
            l.hv_gpa(l.m2p_l2) | upper | PTE_US,
        )?;
        for i in 0..l.m2p_l1_count {
            ram.write_u64(
                l.hv_gpa(l.m2p_l2) + i * 8,
                l.hv_gpa(l.m2p_l1 + i) | upper | PTE_US,
            )?;
        }
        for f in 0..l.m2p_frames {
            ram.write_u64(
                l.hv_gpa(l.m2p_l1) + f * 8,
                l.hv_gpa(l.m2p_frames_start + f) | PTE_P | PTE_US | PTE_A | PTE_NX,
            )?;
        }
        // The M2P itself: identity, since MFN = PFN.
        let base = l.hv_gpa(l.m2p_frames_start);
        let n = l.m2p_entries();
        let mut buf = Vec::with_capacity(n as usize * 8);
        for mfn in 0..n {
            buf.extend_from_slice(&mfn.to_le_bytes());
        }
        ram.write(base, &buf)?;

        // Slot 259 (kernel tables only): the kernel stub's code page
        // (user, read-only), its data page (user, writable) and, from
        // 1 GiB on, a user-writable alias of guest RAM in 2 MiB pages. It
        // covers RAM rounded up to 2 MiB, which stays below rxen's frames
        // (the area starts 2 MiB aligned after RAM).
        let user_upper = upper | PTE_US;
        ram.write(l.hv_gpa(hv::KSTUB_CODE), shim::kstub_blob())?;
        ram.write_u64(l.hv_gpa(hv::KSTUB_L3), l.hv_gpa(hv::KSTUB_L2) | user_upper)?;
        ram.write_u64(l.hv_gpa(hv::KSTUB_L2), l.hv_gpa(hv::KSTUB_L1) | user_upper)?;
        ram.write_u64(
            l.hv_gpa(hv::KSTUB_L1),
            l.hv_gpa(hv::KSTUB_CODE) | PTE_P | PTE_US | PTE_A,
        )?;
        ram.write_u64(
            l.hv_gpa(hv::KSTUB_L1) + 8,
            l.hv_gpa(hv::KSTUB_DATA) | user_upper | PTE_NX,
        )?;
        self.map_2m_pages(
            l.hv_gpa(hv::KSTUB_L3) + 8,
            l.alias_l2,
            l.alias_l2_count.min(511),
            layout::align_up(l.ram_pages * PAGE_SIZE, 2 << 20),
            user_upper,
        )?;
        let kd = |off| self.kstub_data_gpa(off);
        ram.write_u64(kd(shim::kdata::RAM_PAGES), l.ram_pages)?;
        ram.write_u64(kd(shim::kdata::ALIAS), layout::KSTUB_ALIAS_VA)?;
        ram.write_u64(kd(shim::kdata::TRAMP), self.shim_va(shim::SYSCALL_TRAMP))?;
        ram.write_u64(
            self.shim_data_gpa(shim::data::KSTUB_ENTRY),
            layout::KSTUB_VA,
        )?;

        // Slot 258: 2 MiB pages over all guest-physical memory.
        self.map_2m_pages(
            l.hv_gpa(hv::DIRECT_L3),
            l.direct_l2,
            l.direct_l2_count,
            l.total_bytes(),
            upper,
        )
    }

    /// Maps guest-physical 0..`end` in 2 MiB pages (`flags` on every level,
    /// no-execute leaves): `l2_count` L2 tables from hypervisor-area page
    /// `first_l2`, hung from the L3 entries starting at `l3_entries`.
    fn map_2m_pages(
        &self,
        l3_entries: u64,
        first_l2: u64,
        l2_count: u64,
        end: u64,
        flags: u64,
    ) -> Result<(), BadGpa> {
        let (l, ram) = (&self.layout, &self.ram);
        for g in 0..l2_count {
            ram.write_u64(l3_entries + g * 8, l.hv_gpa(first_l2 + g) | flags)?;
            for i in 0..512u64 {
                let pa = (g << 30) | (i << 21);
                if pa >= end {
                    break;
                }
                ram.write_u64(l.hv_gpa(first_l2 + g) + i * 8, pa | flags | PTE_PS | PTE_NX)?;
            }
        }
        Ok(())
    }

    /// L4 entries rxen owns in every guest address space (slot, value).
    pub fn hv_l4_entries(&self) -> [(usize, u64); 2] {
        let l = &self.layout;
        [
            (
                layout::SHIM_L4_SLOT,
                l.hv_gpa(hv::SHIM_L3) | PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D,
            ),
            (
                layout::DIRECTMAP_L4_SLOT,
                l.hv_gpa(hv::DIRECT_L3) | PTE_P | PTE_RW | PTE_A | PTE_D,
            ),
        ]
    }

    /// The L4 entry of slot 259 (the kernel stub and its RAM alias), which
    /// only top-level tables in use as guest kernel page tables carry.
    pub fn kernel_l4_entry(&self) -> (usize, u64) {
        (
            layout::KSTUB_L4_SLOT,
            self.layout.hv_gpa(hv::KSTUB_L3) | PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D,
        )
    }

    /// Top of the CPL0 stack (TSS.RSP0).
    pub fn stack_top(&self) -> u64 {
        PhysLayout::hv_va(hv::STACK + hv::STACK_PAGES)
    }

    pub fn shim_va(&self, offset: u64) -> u64 {
        PhysLayout::hv_va(hv::CODE) + offset
    }

    pub fn shim_data_gpa(&self, offset: u64) -> u64 {
        self.layout.hv_gpa(hv::DATA) + offset
    }

    /// Guest-physical address of `offset` in the kernel stub's data page.
    pub fn kstub_data_gpa(&self, offset: u64) -> u64 {
        self.layout.hv_gpa(hv::KSTUB_DATA) + offset
    }

    /// Virtual address of guest-physical `gpa` in the shim's direct map.
    pub fn direct_va(gpa: u64) -> u64 {
        layout::DIRECTMAP_VA + gpa
    }

    /// Is `pfn` a frame the guest may map (RAM, shared_info, grant frames)?
    pub fn guest_may_map(&self, pfn: u64, writable: bool) -> bool {
        let l = &self.layout;
        if pfn < l.ram_pages {
            return true;
        }
        if pfn == l.hv_pfn(hv::SHARED_INFO) {
            return true;
        }
        let g0 = l.hv_pfn(l.grant_frames_start);
        if pfn >= g0 && pfn < g0 + l.grant_frames {
            return true;
        }
        let m0 = l.hv_pfn(l.m2p_frames_start);
        !writable && pfn >= m0 && pfn < m0 + l.m2p_frames
    }

    /// Create vCPU `id` in the CPL0 state rxen's resume paths expect.
    pub fn create_vcpu(&self, id: u64, cr3: u64) -> Result<VcpuFd, MachineError> {
        let vcpu = self
            .vm
            .create_vcpu(id)
            .map_err(ioctl_err("create a vCPU"))?;
        let cpuid = crate::cpuid::guest_cpuid(&self.kvm).map_err(ioctl_err("report CPUID"))?;
        vcpu.set_cpuid2(&cpuid)
            .map_err(ioctl_err("set the vCPU's CPUID"))?;

        let mut s = vcpu.get_sregs().map_err(ioctl_err("read sregs"))?;
        s.cr0 = 0x8005_0033; // PG, AM, WP, NE, ET, MP, PE
        s.cr4 = (1 << 5) | (1 << 9) | (1 << 10); // PAE, OSFXSR, OSXMMEXCPT
        if crate::cpuid::xsave_available() {
            // OSXSAVE: the guest kernel uses XSAVE at CPL3 (see cpuid.rs).
            s.cr4 |= 1 << 18;
        }
        s.efer = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11); // SCE, LME, LMA, NXE
        s.cr3 = cr3 & PTE_ADDR;
        s.gdt.base = PhysLayout::hv_va(hv::GDT);
        s.gdt.limit = sel::GDT_LIMIT;
        s.idt.base = PhysLayout::hv_va(hv::IDT);
        s.idt.limit = 0xfff;
        let code = kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector: sel::SHIM_CS,
            type_: 11,
            present: 1,
            dpl: 0,
            db: 0,
            s: 1,
            l: 1,
            g: 1,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        let data = kvm_segment {
            selector: sel::SHIM_SS,
            type_: 3,
            l: 0,
            db: 1,
            ..code
        };
        let null = kvm_segment {
            selector: 0,
            unusable: 1,
            present: 0,
            ..data
        };
        s.cs = code;
        s.ss = data;
        s.ds = null;
        s.es = null;
        s.fs = null;
        s.gs = null;
        s.tr = kvm_segment {
            base: PhysLayout::hv_va(hv::TSS),
            limit: 0x67,
            selector: sel::TSS,
            type_: 11,
            present: 1,
            dpl: 0,
            db: 0,
            s: 0,
            l: 0,
            g: 0,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        s.ldt = kvm_segment {
            unusable: 1,
            type_: 2,
            s: 0,
            ..null
        };
        vcpu.set_sregs(&s).map_err(ioctl_err("set sregs"))?;

        let star = (sel::SHIM_CS as u64) << 32;
        // 64-bit SYSCALL: the kernel stub; compat-mode SYSCALL (only guest
        // user programs run 32-bit code): the shim's trampoline.
        let lstar = layout::KSTUB_VA;
        let cstar = self.shim_va(shim::SYSCALL_TRAMP);
        let msrs = Msrs::from_entries(&[
            msr(MSR_STAR, star),
            msr(MSR_LSTAR, lstar),
            msr(MSR_CSTAR, cstar),
            msr(MSR_SFMASK, SFMASK),
            msr(MSR_KERNEL_GS_BASE, 0),
        ])
        .expect("five entries fit");
        let n = vcpu.set_msrs(&msrs).map_err(ioctl_err("set MSRs"))?;
        if n != 5 {
            return Err(MachineError::Ioctl {
                what: "set the SYSCALL MSRs",
                err: kvm_ioctls::Error::new(libc::EINVAL),
            });
        }
        Ok(vcpu)
    }

    pub fn page_gpa(pfn: u64) -> u64 {
        pfn * PAGE_SIZE
    }
}

pub fn msr(index: u32, data: u64) -> kvm_msr_entry {
    kvm_msr_entry {
        index,
        data,
        ..Default::default()
    }
}
