//! x86-64 specifics (`xen/arch-x86/xen.h`, `xen/arch-x86/xen-x86_64.h`).
//!
//! Flat segment selectors, the hypervisor's reserved virtual range, the
//! virtual IDT entry (`trap_info`), the `iret` frame, segment-base commands,
//! and the vCPU context used by `VCPUOP_initialise`.

// ---------------------------------------------------------------------------
// Flat selectors. A 64-bit PV guest runs its kernel and user code at ring 3.
// ---------------------------------------------------------------------------

/// GDT index 260.
pub const FLAT_RING3_CS32: u16 = 0xe023;
/// GDT index 262.
pub const FLAT_RING3_CS64: u16 = 0xe033;
/// GDT index 261.
pub const FLAT_RING3_DS32: u16 = 0xe02b;
/// The null selector.
pub const FLAT_RING3_DS64: u16 = 0x0000;
/// GDT index 261.
pub const FLAT_RING3_SS32: u16 = 0xe02b;
/// GDT index 261.
pub const FLAT_RING3_SS64: u16 = 0xe02b;

pub const FLAT_KERNEL_DS64: u16 = FLAT_RING3_DS64;
pub const FLAT_KERNEL_DS32: u16 = FLAT_RING3_DS32;
pub const FLAT_KERNEL_DS: u16 = FLAT_KERNEL_DS64;
pub const FLAT_KERNEL_CS64: u16 = FLAT_RING3_CS64;
pub const FLAT_KERNEL_CS32: u16 = FLAT_RING3_CS32;
pub const FLAT_KERNEL_CS: u16 = FLAT_KERNEL_CS64;
pub const FLAT_KERNEL_SS64: u16 = FLAT_RING3_SS64;
pub const FLAT_KERNEL_SS32: u16 = FLAT_RING3_SS32;
pub const FLAT_KERNEL_SS: u16 = FLAT_KERNEL_SS64;

pub const FLAT_USER_DS64: u16 = FLAT_RING3_DS64;
pub const FLAT_USER_DS32: u16 = FLAT_RING3_DS32;
pub const FLAT_USER_DS: u16 = FLAT_USER_DS64;
pub const FLAT_USER_CS64: u16 = FLAT_RING3_CS64;
pub const FLAT_USER_CS32: u16 = FLAT_RING3_CS32;
pub const FLAT_USER_CS: u16 = FLAT_USER_CS64;
pub const FLAT_USER_SS64: u16 = FLAT_RING3_SS64;
pub const FLAT_USER_SS32: u16 = FLAT_RING3_SS32;
pub const FLAT_USER_SS: u16 = FLAT_USER_SS64;

// ---------------------------------------------------------------------------
// Hypervisor-reserved virtual range (L4 slots 256..=271) and the M2P table.
// ---------------------------------------------------------------------------

pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
pub const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;
/// The read-only machine-to-physical table, one `u64` PFN per MFN.
pub const MACH2PHYS_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
pub const MACH2PHYS_VIRT_END: u64 = 0xFFFF_8040_0000_0000;
pub const MACH2PHYS_NR_ENTRIES: u64 = (MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) >> 3;

// ---------------------------------------------------------------------------
// set_segment_base.
// ---------------------------------------------------------------------------

pub const SEGBASE_FS: u32 = 0;
pub const SEGBASE_GS_USER: u32 = 1;
pub const SEGBASE_GS_KERNEL: u32 = 2;
/// Load the user `%gs` selector given in `base[15:0]`.
pub const SEGBASE_GS_USER_SEL: u32 = 3;

// ---------------------------------------------------------------------------
// vCPU context flags (`vcpu_guest_context.flags`, `iret_context.flags`).
// ---------------------------------------------------------------------------

pub const VGCF_I387_VALID: u64 = 1 << 0;
pub const VGCF_IN_KERNEL: u64 = 1 << 2;
pub const VGCF_FAILSAFE_DISABLES_EVENTS: u64 = 1 << 3;
pub const VGCF_SYSCALL_DISABLES_EVENTS: u64 = 1 << 4;
pub const VGCF_ONLINE: u64 = 1 << 5;
/// `iret_context.flags`: the guest exited in SYSCALL context; return
/// SYSRET-style (restore RAX, RIP, RFLAGS, RSP; discard R11, RCX, CS, SS).
pub const VGCF_IN_SYSCALL: u64 = 1 << 8;

// ---------------------------------------------------------------------------
// GDT: entries the hypervisor reserves for itself.
// ---------------------------------------------------------------------------

/// First GDT frame the hypervisor owns (guests may use frames 0..14).
pub const FIRST_RESERVED_GDT_PAGE: u64 = 14;
pub const FIRST_RESERVED_GDT_BYTE: u64 = FIRST_RESERVED_GDT_PAGE * 4096;
/// First reserved 8-byte descriptor (= 7168).
pub const FIRST_RESERVED_GDT_ENTRY: u64 = FIRST_RESERVED_GDT_BYTE / 8;

/// `XEN_LEGACY_MAX_VCPUS`: `vcpu_info` slots in `shared_info`.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

/// The forced-emulation prefix (`ud2; .ascii "xen"`): `XEN_CPUID` is this
/// followed by `cpuid`.
pub const XEN_EMULATE_PREFIX: [u8; 5] = [0x0f, 0x0b, 0x78, 0x65, 0x6e];

/// I/O port of the HVM debug console.
pub const XEN_HVM_DEBUGCONS_IOPORT: u16 = 0xe9;

/// Convert a page-table frame number to a `cr3` value (`xen_pfn_to_cr3`).
pub const fn xen_pfn_to_cr3(pfn: u64) -> u64 {
    pfn << 12
}

/// Convert a `cr3` value to a page-table frame number (`xen_cr3_to_pfn`).
pub const fn xen_cr3_to_pfn(cr3: u64) -> u64 {
    cr3 >> 12
}

// ---------------------------------------------------------------------------
// trap_info.
// ---------------------------------------------------------------------------

/// `trap_info.flags` bits 0..=1: the DPL (who may raise the vector with
/// `int n`; 1 and 2 mean the kernel, 3 everyone, 0 nobody).
pub const TI_DPL_MASK: u8 = 3;
/// `trap_info.flags` bit 2: mask events (set `evtchn_upcall_mask`) on entry,
/// like an interrupt gate.
pub const TI_IF: u8 = 4;

/// `TI_GET_DPL`.
pub const fn ti_get_dpl(flags: u8) -> u8 {
    flags & TI_DPL_MASK
}

/// `TI_GET_IF`: non-zero when delivery masks events.
pub const fn ti_get_if(flags: u8) -> u8 {
    flags & TI_IF
}

/// `struct trap_info`: one virtual IDT entry for `HYPERVISOR_set_trap_table`.
/// An array is terminated by an entry with `address == 0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapInfo {
    /// Exception vector.
    pub vector: u8,
    /// Bits 0..=1: DPL; bit 2: mask events on entry (`TI_*`).
    pub flags: u8,
    /// Code selector.
    pub cs: u16,
    pub _pad0: u32,
    /// Handler address.
    pub address: u64,
}
const _: () = assert!(size_of::<TrapInfo>() == 16);
// SAFETY: plain-old-data: integers with explicit padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for TrapInfo {}

/// `struct iret_context`: what `HYPERVISOR_iret` pops from the guest kernel
/// stack (`rax` at the stack pointer of the hypercall).
///
/// `cs & 3 == 3` returns to user mode. With `VGCF_IN_SYSCALL` in `flags`,
/// only RAX, RIP, RFLAGS, RSP are restored.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IretContext {
    pub rax: u64,
    pub r11: u64,
    pub rcx: u64,
    /// `VGCF_IN_SYSCALL` or 0.
    pub flags: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}
const _: () = assert!(size_of::<IretContext>() == 72);
// SAFETY: plain-old-data: u64 words only, every bit pattern valid.
unsafe impl vm_memory::ByteValued for IretContext {}

/// `struct arch_vcpu_info` (x86-64): the fault address of the last
/// page fault delivered to the guest.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchVcpuInfo {
    pub cr2: u64,
    pub pad: u64,
}
const _: () = assert!(size_of::<ArchVcpuInfo>() == 16);
// SAFETY: plain-old-data: two u64, every bit pattern valid.
unsafe impl vm_memory::ByteValued for ArchVcpuInfo {}

/// `struct arch_shared_info` (x86-64). Unlike 32-bit x86 it has no
/// `wc_sec_hi`: that lives in `shared_info` itself.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchSharedInfo {
    /// Number of valid P2M entries.
    pub max_pfn: u64,
    /// Frame of the list of frames of the list of P2M frames; 0 = not set
    /// up, `!0` = invalid (use `p2m_vaddr`).
    pub pfn_to_mfn_frame_list_list: u64,
    pub nmi_reason: u64,
    /// When non-zero: `cr3` of the address space where `p2m_vaddr` is valid.
    pub p2m_cr3: u64,
    /// Virtual address of the linear P2M list.
    pub p2m_vaddr: u64,
    /// Odd while the guest updates the P2M mapping.
    pub p2m_generation: u64,
}
const _: () = assert!(size_of::<ArchSharedInfo>() == 48);
// SAFETY: plain-old-data: u64 words only, every bit pattern valid.
unsafe impl vm_memory::ByteValued for ArchSharedInfo {}

/// `struct cpu_user_regs` (x86-64), as embedded in [`VcpuGuestContext`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuUserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// Hypervisor-private.
    pub error_code: u32,
    /// Hypervisor-private.
    pub entry_vector: u32,
    pub rip: u64,
    pub cs: u16,
    pub _pad0: u16,
    /// The event mask saved on a bounce; `rflags.IF == !saved_upcall_mask`.
    pub saved_upcall_mask: u8,
    pub _pad1: [u8; 3],
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u16,
    pub _pad2: [u16; 3],
    pub es: u16,
    pub _pad3: [u16; 3],
    pub ds: u16,
    pub _pad4: [u16; 3],
    pub fs: u16,
    pub _pad5: [u16; 3],
    pub gs: u16,
    pub _pad6: [u16; 3],
}
const _: () = assert!(size_of::<CpuUserRegs>() == 200);
// SAFETY: plain-old-data: integers with explicit padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for CpuUserRegs {}

/// `struct vcpu_guest_context` (x86-64): the initial state of a secondary
/// vCPU for `VCPUOP_initialise` (5168 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuGuestContext {
    /// FXSAVE image (valid with `VGCF_I387_VALID`).
    pub fpu_ctxt: [u8; 512],
    /// `VGCF_*`.
    pub flags: u64,
    pub user_regs: CpuUserRegs,
    /// The virtual IDT.
    pub trap_ctxt: [TrapInfo; 256],
    pub ldt_base: u64,
    pub ldt_ents: u64,
    /// GDT machine frames.
    pub gdt_frames: [u64; 16],
    pub gdt_ents: u64,
    /// Virtual TSS: the kernel stack for user-to-kernel transitions.
    pub kernel_ss: u64,
    pub kernel_sp: u64,
    /// CR0..CR7; `ctrlreg[3]` is the kernel page table (as `xen_pfn_to_cr3`),
    /// `ctrlreg[1]` the user page table on x86-64.
    pub ctrlreg: [u64; 8],
    pub debugreg: [u64; 8],
    pub event_callback_eip: u64,
    pub failsafe_callback_eip: u64,
    pub syscall_callback_eip: u64,
    /// `VMASST_TYPE_*` bitmap.
    pub vm_assist: u64,
    pub fs_base: u64,
    pub gs_base_kernel: u64,
    pub gs_base_user: u64,
}
const _: () = assert!(size_of::<VcpuGuestContext>() == 5168);
// SAFETY: plain-old-data: integers, byte arrays and POD structs with no
// implicit padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for VcpuGuestContext {}

impl Default for VcpuGuestContext {
    fn default() -> Self {
        Self {
            fpu_ctxt: [0; 512],
            flags: 0,
            user_regs: CpuUserRegs::default(),
            trap_ctxt: [TrapInfo::default(); 256],
            ldt_base: 0,
            ldt_ents: 0,
            gdt_frames: [0; 16],
            gdt_ents: 0,
            kernel_ss: 0,
            kernel_sp: 0,
            ctrlreg: [0; 8],
            debugreg: [0; 8],
            event_callback_eip: 0,
            failsafe_callback_eip: 0,
            syscall_callback_eip: 0,
            vm_assist: 0,
            fs_base: 0,
            gs_base_kernel: 0,
            gs_base_user: 0,
        }
    }
}
