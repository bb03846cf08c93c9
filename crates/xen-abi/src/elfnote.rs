//! ELF note types in the `"Xen"` namespace (`xen/elfnote.h`), read from a
//! PV kernel's `PT_NOTE` segments by the domain builder.

/// Name of the note namespace (`namesz` 4, including the NUL).
pub const XEN_ELFNOTE_NAME: &str = "Xen";

/// Obsolete `__xen_guest` string.
pub const XEN_ELFNOTE_INFO: u32 = 0;
/// Virtual address of the entry point (numeric).
pub const XEN_ELFNOTE_ENTRY: u32 = 1;
/// Virtual address of the hypercall page (numeric).
pub const XEN_ELFNOTE_HYPERCALL_PAGE: u32 = 2;
/// Virtual base address of the kernel image (numeric).
pub const XEN_ELFNOTE_VIRT_BASE: u32 = 3;
/// `VIRT_BASE - physical load address` (numeric).
pub const XEN_ELFNOTE_PADDR_OFFSET: u32 = 4;
/// Xen version the kernel expects, e.g. `"xen-3.0"` (string).
pub const XEN_ELFNOTE_XEN_VERSION: u32 = 5;
/// Guest OS name, e.g. `"linux"` (string).
pub const XEN_ELFNOTE_GUEST_OS: u32 = 6;
/// Guest OS version (string).
pub const XEN_ELFNOTE_GUEST_VERSION: u32 = 7;
/// Loader type, `"generic"` (string).
pub const XEN_ELFNOTE_LOADER: u32 = 8;
/// `"yes"`, `"no"`, `"bimodal"`, `"yes,bimodal"` (string).
pub const XEN_ELFNOTE_PAE_MODE: u32 = 9;
/// `|`-separated feature names; `!` marks a required one (string).
pub const XEN_ELFNOTE_FEATURES: u32 = 10;
/// `"yes"` or `"no"`: the kernel needs its symbol table loaded (string).
pub const XEN_ELFNOTE_BSD_SYMTAB: u32 = 11;
/// Lowest address the hypervisor hole may start at (numeric).
pub const XEN_ELFNOTE_HV_START_LOW: u32 = 12;
/// Mask/value pairs recognising non-present L1 entries that still carry
/// valid MFNs (numeric).
pub const XEN_ELFNOTE_L1_MFN_VALID: u32 = 13;
/// Non-zero: the kernel supports a cancelled suspend (numeric).
pub const XEN_ELFNOTE_SUSPEND_CANCEL: u32 = 14;
/// Virtual address at which to map the initial P2M list instead of after
/// the kernel; large pages may be used (numeric).
pub const XEN_ELFNOTE_INIT_P2M: u32 = 15;
/// Non-zero: the kernel accepts an initrd not mapped by its initial page
/// tables, passed by PFN with `SIF_MOD_START_PFN` (numeric).
pub const XEN_ELFNOTE_MOD_START_PFN: u32 = 16;
/// Bitmap of `XENFEAT_*` the kernel supports (numeric, 32-bit).
pub const XEN_ELFNOTE_SUPPORTED_FEATURES: u32 = 17;
/// 32-bit physical entry point for PVH (numeric, 32-bit).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// Highest note type in the `"Xen"` namespace.
pub const XEN_ELFNOTE_MAX: u32 = XEN_ELFNOTE_PHYS32_ENTRY;

/// Crash dumps: `"Xen"` namespace notes written by the hypervisor.
pub const XEN_ELFNOTE_CRASH_INFO: u32 = 0x100_0001;
pub const XEN_ELFNOTE_CRASH_REGS: u32 = 0x100_0002;
/// Core dumps written by the toolstack (`xc_core`).
pub const XEN_ELFNOTE_DUMPCORE_NONE: u32 = 0x200_0000;
pub const XEN_ELFNOTE_DUMPCORE_HEADER: u32 = 0x200_0001;
pub const XEN_ELFNOTE_DUMPCORE_XEN_VERSION: u32 = 0x200_0002;
pub const XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION: u32 = 0x200_0003;
