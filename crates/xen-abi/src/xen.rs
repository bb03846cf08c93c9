//! Core hypervisor interface (`xen/xen.h`, `xen/errno.h`).
//!
//! Hypercall numbers, MMU update commands, `mmuext_op` commands, TLB flush
//! flags, VM assists, console I/O, reserved domain ids, and the start-of-day
//! structures `start_info` and `shared_info` with their per-vCPU parts.

use crate::arch_x86_64::ArchVcpuInfo;
use crate::arch_x86_64::{ArchSharedInfo, XEN_LEGACY_MAX_VCPUS};

/// A domain id (`domid_t`).
pub type DomId = u16;

/// A guest handle on x86-64: a guest virtual address (`XEN_GUEST_HANDLE(x)`
/// is a struct holding one pointer).
pub type GuestHandle = u64;

/// A machine or guest frame number (`xen_pfn_t`, `unsigned long`).
pub type XenPfn = u64;

/// `xen_ulong_t` on x86-64.
pub type XenUlong = u64;

// ---------------------------------------------------------------------------
// Hypercall numbers (loaded into eax/rax).
// ---------------------------------------------------------------------------

pub const HYPERVISOR_SET_TRAP_TABLE: u64 = 0;
pub const HYPERVISOR_MMU_UPDATE: u64 = 1;
pub const HYPERVISOR_SET_GDT: u64 = 2;
pub const HYPERVISOR_STACK_SWITCH: u64 = 3;
pub const HYPERVISOR_SET_CALLBACKS: u64 = 4;
pub const HYPERVISOR_FPU_TASKSWITCH: u64 = 5;
/// Old `sched_op` taking a bare command (compat since interface 0x00030101).
pub const HYPERVISOR_SCHED_OP_COMPAT: u64 = 6;
pub const HYPERVISOR_PLATFORM_OP: u64 = 7;
pub const HYPERVISOR_SET_DEBUGREG: u64 = 8;
pub const HYPERVISOR_GET_DEBUGREG: u64 = 9;
pub const HYPERVISOR_UPDATE_DESCRIPTOR: u64 = 10;
pub const HYPERVISOR_MEMORY_OP: u64 = 12;
pub const HYPERVISOR_MULTICALL: u64 = 13;
pub const HYPERVISOR_UPDATE_VA_MAPPING: u64 = 14;
pub const HYPERVISOR_SET_TIMER_OP: u64 = 15;
/// Old event-channel op taking a `struct evtchn_op` (cmd + union).
pub const HYPERVISOR_EVENT_CHANNEL_OP_COMPAT: u64 = 16;
pub const HYPERVISOR_XEN_VERSION: u64 = 17;
pub const HYPERVISOR_CONSOLE_IO: u64 = 18;
/// Old physdev op taking a `struct physdev_op` (cmd + union).
pub const HYPERVISOR_PHYSDEV_OP_COMPAT: u64 = 19;
pub const HYPERVISOR_GRANT_TABLE_OP: u64 = 20;
pub const HYPERVISOR_VM_ASSIST: u64 = 21;
pub const HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN: u64 = 22;
/// x86 only. Arguments are on the guest kernel stack ([`crate::IretContext`]).
pub const HYPERVISOR_IRET: u64 = 23;
pub const HYPERVISOR_VCPU_OP: u64 = 24;
/// x86-64 only.
pub const HYPERVISOR_SET_SEGMENT_BASE: u64 = 25;
pub const HYPERVISOR_MMUEXT_OP: u64 = 26;
pub const HYPERVISOR_XSM_OP: u64 = 27;
pub const HYPERVISOR_NMI_OP: u64 = 28;
pub const HYPERVISOR_SCHED_OP: u64 = 29;
pub const HYPERVISOR_CALLBACK_OP: u64 = 30;
pub const HYPERVISOR_XENOPROF_OP: u64 = 31;
pub const HYPERVISOR_EVENT_CHANNEL_OP: u64 = 32;
pub const HYPERVISOR_PHYSDEV_OP: u64 = 33;
pub const HYPERVISOR_HVM_OP: u64 = 34;
pub const HYPERVISOR_SYSCTL: u64 = 35;
pub const HYPERVISOR_DOMCTL: u64 = 36;
pub const HYPERVISOR_KEXEC_OP: u64 = 37;
pub const HYPERVISOR_TMEM_OP: u64 = 38;
pub const HYPERVISOR_ARGO_OP: u64 = 39;
pub const HYPERVISOR_XENPMU_OP: u64 = 40;
pub const HYPERVISOR_DM_OP: u64 = 41;
pub const HYPERVISOR_HYPFS_OP: u64 = 42;
/// Architecture-specific hypercalls 48..=55.
pub const HYPERVISOR_ARCH_0: u64 = 48;
pub const HYPERVISOR_ARCH_1: u64 = 49;
pub const HYPERVISOR_ARCH_2: u64 = 50;
pub const HYPERVISOR_ARCH_3: u64 = 51;
pub const HYPERVISOR_ARCH_4: u64 = 52;
pub const HYPERVISOR_ARCH_5: u64 = 53;
pub const HYPERVISOR_ARCH_6: u64 = 54;
pub const HYPERVISOR_ARCH_7: u64 = 55;
/// Old name of [`HYPERVISOR_PLATFORM_OP`] (interfaces before 0x00030204).
pub const HYPERVISOR_DOM0_OP: u64 = HYPERVISOR_PLATFORM_OP;
/// x86: machine check hypercall (`arch-x86/xen-mca.h`), the first
/// architecture-specific number.
pub const HYPERVISOR_MCA: u64 = HYPERVISOR_ARCH_0;

/// Size of one stub in a hypercall page: stub `n` sits at `n * 32`.
pub const HYPERCALL_STUB_SIZE: usize = 32;

/// Every hypercall number defined by `xen.h` with its header name, in
/// numeric order (useful for tracing and for filling a hypercall page).
/// On x86 number 48 (`arch_0`) is `mca`.
pub const HYPERCALL_NAMES: &[(u64, &str)] = &[
    (0, "set_trap_table"),
    (1, "mmu_update"),
    (2, "set_gdt"),
    (3, "stack_switch"),
    (4, "set_callbacks"),
    (5, "fpu_taskswitch"),
    (6, "sched_op_compat"),
    (7, "platform_op"),
    (8, "set_debugreg"),
    (9, "get_debugreg"),
    (10, "update_descriptor"),
    (12, "memory_op"),
    (13, "multicall"),
    (14, "update_va_mapping"),
    (15, "set_timer_op"),
    (16, "event_channel_op_compat"),
    (17, "xen_version"),
    (18, "console_io"),
    (19, "physdev_op_compat"),
    (20, "grant_table_op"),
    (21, "vm_assist"),
    (22, "update_va_mapping_otherdomain"),
    (23, "iret"),
    (24, "vcpu_op"),
    (25, "set_segment_base"),
    (26, "mmuext_op"),
    (27, "xsm_op"),
    (28, "nmi_op"),
    (29, "sched_op"),
    (30, "callback_op"),
    (31, "xenoprof_op"),
    (32, "event_channel_op"),
    (33, "physdev_op"),
    (34, "hvm_op"),
    (35, "sysctl"),
    (36, "domctl"),
    (37, "kexec_op"),
    (38, "tmem_op"),
    (39, "argo_op"),
    (40, "xenpmu_op"),
    (41, "dm_op"),
    (42, "hypfs_op"),
    (48, "mca"),
    (49, "arch_1"),
    (50, "arch_2"),
    (51, "arch_3"),
    (52, "arch_4"),
    (53, "arch_5"),
    (54, "arch_6"),
    (55, "arch_7"),
];

// ---------------------------------------------------------------------------
// mmu_update: the command is in the low 2 bits of `MmuUpdate::ptr`.
// ---------------------------------------------------------------------------

/// `*ptr = val`, checked; `ptr` is the machine address of a PTE.
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// `ptr` = machine address of the frame whose M2P entry becomes `val` (a PFN).
pub const MMU_MACHPHYS_UPDATE: u64 = 1;
/// Atomically `*ptr = val | (*ptr & (A|D))`.
pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;
/// Like [`MMU_NORMAL_PT_UPDATE`] but `val` is not translated (PVH/HVM use).
pub const MMU_PT_UPDATE_NO_TRANSLATE: u64 = 3;
/// Mask of the command bits in `MmuUpdate::ptr`.
pub const MMU_UPDATE_CMD_MASK: u64 = 3;

// ---------------------------------------------------------------------------
// mmuext_op commands (`MmuextOp::cmd`).
// ---------------------------------------------------------------------------

pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
pub const MMUEXT_PIN_L2_TABLE: u32 = 1;
pub const MMUEXT_PIN_L3_TABLE: u32 = 2;
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
pub const MMUEXT_TLB_FLUSH_MULTI: u32 = 8;
pub const MMUEXT_INVLPG_MULTI: u32 = 9;
pub const MMUEXT_TLB_FLUSH_ALL: u32 = 10;
pub const MMUEXT_INVLPG_ALL: u32 = 11;
pub const MMUEXT_FLUSH_CACHE: u32 = 12;
pub const MMUEXT_SET_LDT: u32 = 13;
pub const MMUEXT_NEW_USER_BASEPTR: u32 = 15;
pub const MMUEXT_CLEAR_PAGE: u32 = 16;
pub const MMUEXT_COPY_PAGE: u32 = 17;
pub const MMUEXT_FLUSH_CACHE_GLOBAL: u32 = 18;
pub const MMUEXT_MARK_SUPER: u32 = 19;
pub const MMUEXT_UNMARK_SUPER: u32 = 20;

// ---------------------------------------------------------------------------
// update_va_mapping flags (third argument).
// ---------------------------------------------------------------------------

/// No flushing at all.
pub const UVMF_NONE: u64 = 0;
/// Flush entire TLB(s).
pub const UVMF_TLB_FLUSH: u64 = 1;
/// Flush only the one entry.
pub const UVMF_INVLPG: u64 = 2;
pub const UVMF_FLUSHTYPE_MASK: u64 = 3;
/// Flush a subset of TLBs: OR in a guest pointer to a vCPU bitmap.
pub const UVMF_MULTI: u64 = 0;
/// Flush the local TLB (`UVMF_MULTI` with a null bitmap pointer).
pub const UVMF_LOCAL: u64 = 0;
/// Flush all TLBs.
pub const UVMF_ALL: u64 = 1 << 2;

// ---------------------------------------------------------------------------
// console_io commands.
// ---------------------------------------------------------------------------

pub const CONSOLEIO_WRITE: u32 = 0;
pub const CONSOLEIO_READ: u32 = 1;

// ---------------------------------------------------------------------------
// vm_assist.
// ---------------------------------------------------------------------------

pub const VMASST_CMD_ENABLE: u32 = 0;
pub const VMASST_CMD_DISABLE: u32 = 1;
/// x86/32 only.
pub const VMASST_TYPE_4GB_SEGMENTS: u32 = 0;
/// x86/32 only.
pub const VMASST_TYPE_4GB_SEGMENTS_NOTIFY: u32 = 1;
/// Direct writes to page tables are trapped and emulated.
pub const VMASST_TYPE_WRITABLE_PAGETABLES: u32 = 2;
/// x86/32 PAE only.
pub const VMASST_TYPE_PAE_EXTENDED_CR3: u32 = 3;
/// IOPL semantics follow the architecture (EFLAGS.IOPL) rather than
/// `PHYSDEVOP_set_iopl`.
pub const VMASST_TYPE_ARCHITECTURAL_IOPL: u32 = 4;
/// Runstate area updates set `XEN_RUNSTATE_UPDATE` in `state_entry_time`.
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u32 = 5;
/// x86-64: hide the M2P from user mode strictly (the L4 slot is zapped
/// whenever a table is used as a user page table).
pub const VMASST_TYPE_M2P_STRICT: u32 = 32;

// ---------------------------------------------------------------------------
// Reserved domain ids.
// ---------------------------------------------------------------------------

pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;
/// The calling domain.
pub const DOMID_SELF: DomId = 0x7FF0;
/// I/O space (privileged mappings of device memory).
pub const DOMID_IO: DomId = 0x7FF1;
/// The hypervisor's own pages.
pub const DOMID_XEN: DomId = 0x7FF2;
/// Copy-on-write (shared) pages.
pub const DOMID_COW: DomId = 0x7FF3;
pub const DOMID_INVALID: DomId = 0x7FF4;
pub const DOMID_IDLE: DomId = 0x7FFF;
pub const DOMID_MASK: DomId = 0x7FFF;

// ---------------------------------------------------------------------------
// start_info flags and limits.
// ---------------------------------------------------------------------------

/// The domain is privileged.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// This is the initial control domain.
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// `mod_start` is a multiboot module list.
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// `mod_start` is a PFN, not a virtual address.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// The tools understand a virtually mapped P2M (3-level tree obsolete).
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// Reserved for xen-pm options.
pub const SIF_PM_MASK: u32 = 0xFF << 8;

/// `start_info.cmd_line` length.
pub const MAX_GUEST_CMDLINE: usize = 1024;

/// `vcpu_time_info.flags`: the TSC is stable across vCPUs.
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// `vcpu_time_info.flags`: the guest was stopped.
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

// ---------------------------------------------------------------------------
// Error codes (`xen/errno.h`). Positive values: hypercalls return the
// negation, e.g. `-XEN_ENOSYS`.
// ---------------------------------------------------------------------------

pub const XEN_EPERM: i64 = 1;
pub const XEN_ENOENT: i64 = 2;
pub const XEN_ESRCH: i64 = 3;
/// Hypervisor-internal only (not in the guest-visible header).
pub const XEN_EINTR: i64 = 4;
pub const XEN_EIO: i64 = 5;
pub const XEN_ENXIO: i64 = 6;
pub const XEN_E2BIG: i64 = 7;
pub const XEN_ENOEXEC: i64 = 8;
pub const XEN_EBADF: i64 = 9;
pub const XEN_ECHILD: i64 = 10;
pub const XEN_EAGAIN: i64 = 11;
pub const XEN_EWOULDBLOCK: i64 = 11;
pub const XEN_ENOMEM: i64 = 12;
pub const XEN_EACCES: i64 = 13;
pub const XEN_EFAULT: i64 = 14;
pub const XEN_EBUSY: i64 = 16;
pub const XEN_EEXIST: i64 = 17;
pub const XEN_EXDEV: i64 = 18;
pub const XEN_ENODEV: i64 = 19;
pub const XEN_ENOTDIR: i64 = 20;
pub const XEN_EISDIR: i64 = 21;
pub const XEN_EINVAL: i64 = 22;
pub const XEN_ENFILE: i64 = 23;
pub const XEN_EMFILE: i64 = 24;
pub const XEN_ENOSPC: i64 = 28;
pub const XEN_EROFS: i64 = 30;
pub const XEN_EMLINK: i64 = 31;
pub const XEN_EDOM: i64 = 33;
pub const XEN_ERANGE: i64 = 34;
pub const XEN_EDEADLK: i64 = 35;
pub const XEN_EDEADLOCK: i64 = 35;
pub const XEN_ENAMETOOLONG: i64 = 36;
pub const XEN_ENOLCK: i64 = 37;
pub const XEN_ENOSYS: i64 = 38;
pub const XEN_ENOTEMPTY: i64 = 39;
pub const XEN_ENODATA: i64 = 61;
pub const XEN_ETIME: i64 = 62;
pub const XEN_EBADMSG: i64 = 74;
pub const XEN_EOVERFLOW: i64 = 75;
pub const XEN_EILSEQ: i64 = 84;
/// Hypervisor-internal only: "restart this hypercall" (continuations).
pub const XEN_ERESTART: i64 = 85;
pub const XEN_ENOTSOCK: i64 = 88;
pub const XEN_EMSGSIZE: i64 = 90;
pub const XEN_EOPNOTSUPP: i64 = 95;
pub const XEN_EADDRINUSE: i64 = 98;
pub const XEN_EADDRNOTAVAIL: i64 = 99;
pub const XEN_ENOBUFS: i64 = 105;
pub const XEN_EISCONN: i64 = 106;
pub const XEN_ENOTCONN: i64 = 107;
pub const XEN_ETIMEDOUT: i64 = 110;
pub const XEN_ECONNREFUSED: i64 = 111;

// ---------------------------------------------------------------------------
// Structures.
// ---------------------------------------------------------------------------

/// `struct mmu_update`: one request to `HYPERVISOR_mmu_update`.
///
/// The low 2 bits of `ptr` hold the command (`MMU_*`); the rest is the
/// machine address of the PTE (or of the frame, for `MMU_MACHPHYS_UPDATE`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmuUpdate {
    pub ptr: u64,
    pub val: u64,
}
const _: () = assert!(size_of::<MmuUpdate>() == 16);
// SAFETY: plain-old-data: two u64, no padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for MmuUpdate {}

/// `struct mmuext_op`: one request to `HYPERVISOR_mmuext_op`.
///
/// The two C unions are kept as raw 64-bit words:
/// - `arg1`: the MFN (`mfn`) for `[UN]PIN_*`, `NEW_BASEPTR`,
///   `NEW_USER_BASEPTR`, `CLEAR_PAGE`, `COPY_PAGE`, `[UN]MARK_SUPER`; or the
///   linear address (`linear_addr`) for `INVLPG_LOCAL`, `INVLPG_ALL`, `SET_LDT`.
/// - `arg2`: the entry count (`nr_ents`, low 32 bits) for `SET_LDT`; a guest
///   pointer to a vCPU bitmap (`vcpumask`) for `TLB_FLUSH_MULTI`,
///   `INVLPG_MULTI`; or the source MFN (`src_mfn`) for `COPY_PAGE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmuextOp {
    /// `MMUEXT_*`.
    pub cmd: u32,
    pub _pad0: u32,
    pub arg1: u64,
    pub arg2: u64,
}
const _: () = assert!(size_of::<MmuextOp>() == 24);
// SAFETY: plain-old-data: integers with explicit padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for MmuextOp {}

/// `struct multicall_entry`: one call in a `HYPERVISOR_multicall` batch.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MulticallEntry {
    /// Hypercall number.
    pub op: u64,
    /// Written back: the hypercall's return value.
    pub result: u64,
    pub args: [u64; 6],
}
const _: () = assert!(size_of::<MulticallEntry>() == 64);
// SAFETY: plain-old-data: u64 words only, every bit pattern valid.
unsafe impl vm_memory::ByteValued for MulticallEntry {}

/// `struct vcpu_time_info`: the pvclock record (32 bytes).
///
/// System time (ns) = `system_time +
/// ((((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32)`,
/// where a negative `tsc_shift` shifts right. `version` is odd while an
/// update is in progress.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimeInfo {
    pub version: u32,
    pub pad0: u32,
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*`.
    pub flags: u8,
    pub pad1: [u8; 2],
}
const _: () = assert!(size_of::<VcpuTimeInfo>() == 32);
// SAFETY: plain-old-data: integers with explicit padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for VcpuTimeInfo {}

/// `struct vcpu_info`: per-vCPU event state and time (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Non-zero: an event upcall is pending.
    pub evtchn_upcall_pending: u8,
    /// Non-zero: upcalls are masked (the PV "interrupt flag", inverted).
    pub evtchn_upcall_mask: u8,
    pub _pad0: [u8; 6],
    /// Selector: bit `i` set means word `i` of `evtchn_pending` may have work.
    pub evtchn_pending_sel: u64,
    pub arch: ArchVcpuInfo,
    pub time: VcpuTimeInfo,
}
const _: () = assert!(size_of::<VcpuInfo>() == 64);
// SAFETY: plain-old-data: integers with explicit padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for VcpuInfo {}

/// Number of `xen_ulong_t` words in each 2-level event bitmap.
pub const EVTCHN_2L_WORDS: usize = 64;

/// `struct shared_info`: the page shared between the hypervisor and a domain
/// (3136 bytes used of the 4096-byte page).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    pub evtchn_pending: [u64; EVTCHN_2L_WORDS],
    pub evtchn_mask: [u64; EVTCHN_2L_WORDS],
    /// Wallclock version counter (odd while updating, as in `VcpuTimeInfo`).
    pub wc_version: u32,
    pub wc_sec: u32,
    pub wc_nsec: u32,
    /// Upper 32 bits of the wallclock seconds (x86-64 keeps it here, not in
    /// `arch`).
    pub wc_sec_hi: u32,
    pub arch: ArchSharedInfo,
}
const _: () = assert!(size_of::<SharedInfo>() == 3136);
// SAFETY: plain-old-data: arrays of integers and POD structs, no implicit
// padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for SharedInfo {}

impl Default for SharedInfo {
    fn default() -> Self {
        Self {
            vcpu_info: [VcpuInfo::default(); XEN_LEGACY_MAX_VCPUS],
            evtchn_pending: [0; EVTCHN_2L_WORDS],
            evtchn_mask: [0; EVTCHN_2L_WORDS],
            wc_version: 0,
            wc_sec: 0,
            wc_nsec: 0,
            wc_sec_hi: 0,
            arch: ArchSharedInfo::default(),
        }
    }
}

/// The `console` union of `start_info`, in its domU form `{mfn, evtchn}`.
///
/// For dom0 the same bytes are `{info_off: u32, info_size: u32}` (the low
/// and high halves of `mfn`), locating a `dom0_vga_console_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartInfoConsole {
    /// Machine frame of the console ring page (`XenconsInterface`).
    pub mfn: u64,
    /// Event channel of the console ring.
    pub evtchn: u32,
    pub _pad0: u32,
}
const _: () = assert!(size_of::<StartInfoConsole>() == 16);
// SAFETY: plain-old-data: integers with explicit padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for StartInfoConsole {}

/// `struct start_info`: handed to a PV guest in `rsi` at boot (1168 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartInfo {
    /// `"xen-<version>-<platform>"`, e.g. `"xen-3.0-x86_64"`, NUL padded.
    pub magic: [u8; 32],
    /// Total pages allocated to the domain.
    pub nr_pages: u64,
    /// Machine address of the shared info page.
    pub shared_info: u64,
    /// `SIF_*`.
    pub flags: u32,
    pub _pad0: u32,
    /// Machine frame of the xenstore ring page.
    pub store_mfn: u64,
    /// Event channel of the xenstore ring.
    pub store_evtchn: u32,
    pub _pad1: u32,
    pub console: StartInfoConsole,
    /// Virtual address of the top-level bootstrap page table.
    pub pt_base: u64,
    /// Number of bootstrap page-table frames.
    pub nr_pt_frames: u64,
    /// Virtual address of the P2M list (PFN to MFN).
    pub mfn_list: u64,
    /// Virtual address (or PFN with `SIF_MOD_START_PFN`) of the initrd.
    pub mod_start: u64,
    /// Size in bytes of the initrd.
    pub mod_len: u64,
    /// NUL-terminated kernel command line.
    pub cmd_line: [u8; MAX_GUEST_CMDLINE],
    /// First PFN of the initial P2M table frames (with page tables).
    pub first_p2m_pfn: u64,
    /// Number of frames in that range.
    pub nr_p2m_frames: u64,
}
const _: () = assert!(size_of::<StartInfo>() == 1168);
// SAFETY: plain-old-data: integers, byte arrays and a POD struct with explicit
// padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for StartInfo {}

impl Default for StartInfo {
    fn default() -> Self {
        Self {
            magic: [0; 32],
            nr_pages: 0,
            shared_info: 0,
            flags: 0,
            _pad0: 0,
            store_mfn: 0,
            store_evtchn: 0,
            _pad1: 0,
            console: StartInfoConsole::default(),
            pt_base: 0,
            nr_pt_frames: 0,
            mfn_list: 0,
            mod_start: 0,
            mod_len: 0,
            cmd_line: [0; MAX_GUEST_CMDLINE],
            first_p2m_pfn: 0,
            nr_p2m_frames: 0,
        }
    }
}

/// `struct xen_multiboot_mod_list`: one entry when `SIF_MULTIBOOT_MOD` is set.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMultibootModList {
    /// Address of the first byte of the module.
    pub mod_start: u32,
    /// Address of the last byte of the module (inclusive).
    pub mod_end: u32,
    /// Address of the NUL-terminated command line.
    pub cmdline: u32,
    pub pad: u32,
}
const _: () = assert!(size_of::<XenMultibootModList>() == 16);
// SAFETY: plain-old-data: four u32, every bit pattern valid.
unsafe impl vm_memory::ByteValued for XenMultibootModList {}
