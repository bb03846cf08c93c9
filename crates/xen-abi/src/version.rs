//! Version and feature queries (`xen/version.h`, `xen/features.h`):
//! `HYPERVISOR_xen_version(cmd, arg)`.

/// Returns `major << 16 | minor`; arg is NULL. Linux also calls it with
/// arg NULL just to get pending events delivered.
pub const XENVER_VERSION: u32 = 0;
/// [`XenExtraversion`].
pub const XENVER_EXTRAVERSION: u32 = 1;
/// [`XenCompileInfo`].
pub const XENVER_COMPILE_INFO: u32 = 2;
/// [`XenCapabilitiesInfo`], e.g. `"xen-3.0-x86_64 xen-3.0-x86_32p"`.
pub const XENVER_CAPABILITIES: u32 = 3;
/// [`XenChangesetInfo`].
pub const XENVER_CHANGESET: u32 = 4;
/// [`XenPlatformParameters`].
pub const XENVER_PLATFORM_PARAMETERS: u32 = 5;
/// [`XenFeatureInfo`].
pub const XENVER_GET_FEATURES: u32 = 6;
/// Returns the page size; arg is NULL.
pub const XENVER_PAGESIZE: u32 = 7;
/// Writes the domain handle (UUID, 16 bytes).
pub const XENVER_GUEST_HANDLE: u32 = 8;
/// [`XenCommandline`] (the hypervisor's command line).
pub const XENVER_COMMANDLINE: u32 = 9;
/// [`XenBuildId`] followed by the id bytes.
pub const XENVER_BUILD_ID: u32 = 10;

pub const XEN_EXTRAVERSION_LEN: usize = 16;
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
pub const XEN_COMMANDLINE_LEN: usize = 1024;

// Feature bits (`xen/features.h`), numbered within submap 0.

/// Guest page tables may be written directly (trapped and emulated).
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// Guest descriptor tables may be written directly.
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// The guest sees pseudo-physical addresses (no P2M needed).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// The guest kernel runs in ring 0.
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// PAE page directories may live above 4 GiB.
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `MMU_PT_UPDATE_PRESERVE_AD` is supported.
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// x86/32 highmem assist.
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// `GNTMAP_guest_avail*` bits are honoured.
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// HVM: events through a callback vector.
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// HVM: safe pvclock.
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// HVM: PIRQs mapped to event channels.
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// The domain is dom0.
pub const XENFEAT_DOM0: u32 = 11;
/// `XENMEMF_vnode` is supported.
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// Arm: SMCCC is supported.
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// The RSDP may be placed anywhere (PVH).
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// Arm: memory is not 1:1 mapped.
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
/// Arm: memory is 1:1 mapped.
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
/// Number of 32-bit feature submaps.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

pod!(
    /// `struct xen_feature_info`: in, `submap_idx`; out, 32 feature bits.
    XenFeatureInfo, 8, {
        submap_idx: u32,
        /// Bit `n` = `XENFEAT_*` number `32 * submap_idx + n`.
        submap: u32,
    }
);

pod!(
    /// `struct xen_platform_parameters`.
    XenPlatformParameters, 8, {
        /// Start of the hypervisor's virtual range (`HYPERVISOR_VIRT_START`).
        virt_start: u64,
    }
);

pod!(
    /// `struct xen_build_id`: header of a variable-length build id
    /// (the `buf[]` bytes follow).
    XenBuildId, 4, {
        /// In: size of the buffer; out: length of the id.
        len: u32,
    }
);

/// Defines a NUL-padded string buffer type (`typedef char name[N]`).
macro_rules! char_array {
    ($(#[$m:meta])* $name:ident, $len:expr) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(pub [u8; $len]);
        const _: () = assert!(size_of::<$name>() == $len);
        // SAFETY: plain-old-data: a byte array, every bit pattern valid.
        unsafe impl vm_memory::ByteValued for $name {}
        impl Default for $name {
            fn default() -> Self {
                Self([0; $len])
            }
        }
    };
}

char_array!(
    /// `xen_extraversion_t`, e.g. `".0"`.
    XenExtraversion,
    XEN_EXTRAVERSION_LEN
);
char_array!(
    /// `xen_capabilities_info_t`: space-separated ABI names.
    XenCapabilitiesInfo,
    XEN_CAPABILITIES_INFO_LEN
);
char_array!(
    /// `xen_changeset_info_t`.
    XenChangesetInfo,
    XEN_CHANGESET_INFO_LEN
);
char_array!(
    /// `xen_commandline_t`.
    XenCommandline,
    XEN_COMMANDLINE_LEN
);

/// `struct xen_compile_info` (144 bytes of NUL-padded strings).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenCompileInfo {
    pub compiler: [u8; 64],
    pub compile_by: [u8; 16],
    pub compile_domain: [u8; 32],
    pub compile_date: [u8; 32],
}
const _: () = assert!(size_of::<XenCompileInfo>() == 144);
// SAFETY: plain-old-data: byte arrays, every bit pattern valid.
unsafe impl vm_memory::ByteValued for XenCompileInfo {}

impl Default for XenCompileInfo {
    fn default() -> Self {
        Self {
            compiler: [0; 64],
            compile_by: [0; 16],
            compile_domain: [0; 32],
            compile_date: [0; 32],
        }
    }
}
