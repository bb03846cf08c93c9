//! Proves the crate's layouts and constants against Xen's real C headers.
//!
//! The test writes a C program that includes `/usr/include/xen/...`, prints
//! `sizeof`, `_Alignof`, `offsetof` and macro values, compiles it with `gcc`
//! and compares every figure with the Rust side (`size_of`, `align_of`,
//! `offset_of!`, the constants). It also checks on the Rust side that every
//! struct's fields tile it exactly (no implicit padding, which `ByteValued`
//! relies on), and that every macro in a list of header prefixes has a Rust
//! constant.
//!
//! It fails, never skips, when gcc or the headers are missing.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::mem::{align_of, offset_of, size_of, MaybeUninit};
use std::path::{Path, PathBuf};
use std::process::Command;

use xen_abi::*;

const INSTALL_HINT: &str = "apt-get install gcc libxen-dev";

/// The includes, in guest mode at the newest interface version the headers
/// support (xen-compat.h sets that when it sees __XEN_TOOLS__; its include
/// guard then keeps it). memory.h's toolstack-only part is included too, for
/// the XENMEM_* numbers defined there.
const PRELUDE: &str = r#"
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#define __XEN_TOOLS__
#include <xen/xen-compat.h>
#undef __XEN_TOOLS__
#include <xen/xen.h>
#include <xen/errno.h>
#include <xen/vcpu.h>
#include <xen/event_channel.h>
#include <xen/sched.h>
#include <xen/callback.h>
#include <xen/physdev.h>
#define XEN_GUEST_HANDLE_64(n) XEN_GUEST_HANDLE(n)
#define __XEN_TOOLS__
#include <xen/memory.h>
#undef __XEN_TOOLS__
#include <xen/grant_table.h>
#include <xen/version.h>
#include <xen/features.h>
#include <xen/elfnote.h>
#include <xen/arch-x86/xen-mca.h>
#include <xen/io/ring.h>
#include <xen/io/console.h>
#include <xen/io/xs_wire.h>
#include <xen/io/xenbus.h>
#include <xen/io/blkif.h>
#include <xen/io/netif.h>
#include <xen/io/protocols.h>
"#;

enum Expect {
    Num(u64),
    Str(String),
}

struct Check {
    what: String,
    c_expr: String,
    expect: Expect,
}

struct Field {
    rust: String,
    c: String,
    offset: usize,
    size: usize,
}

fn size_of_pointee<F>(_: *const F) -> usize {
    size_of::<F>()
}

/// Optional C name override: `pick!("name", default)` or `pick!(, default)`.
macro_rules! pick {
    ($x:literal, $d:expr) => {
        String::from($x)
    };
    (, $d:expr) => {
        $d
    };
}

/// `fields!(Type; a, b: "c_name", _pad: "", nested.path: "c.path")`.
/// A C name of `""` means the field exists only in Rust (explicit padding).
/// Single-identifier paths are the struct's own fields; dotted paths are
/// extra offset checks into nested fields.
macro_rules! fields {
    ($t:ty; $($($rf:ident).+ $(: $cf:literal)?),* $(,)?) => {{
        let u = MaybeUninit::<$t>::uninit();
        let p = u.as_ptr();
        vec![$({
            let rust = stringify!($($rf).+).replace(' ', "");
            // SAFETY: addr_of! only computes the field's address inside the
            // (uninitialised but allocated) value; nothing is read.
            let fp = unsafe { std::ptr::addr_of!((*p).$($rf).+) };
            Field {
                c: pick!($($cf)?, rust.clone()),
                rust,
                offset: offset_of!($t, $($rf).+),
                size: size_of_pointee(fp),
            }
        }),*]
    }};
}

#[derive(Default)]
struct Checks {
    list: Vec<Check>,
    rust_failures: Vec<String>,
}

impl Checks {
    fn num(&mut self, what: impl Into<String>, c_expr: impl Into<String>, v: i128) {
        self.list.push(Check {
            what: what.into(),
            c_expr: c_expr.into(),
            expect: Expect::Num(v as u64),
        });
    }

    fn str(&mut self, what: impl Into<String>, c_expr: impl Into<String>, v: &str) {
        self.list.push(Check {
            what: what.into(),
            c_expr: c_expr.into(),
            expect: Expect::Str(v.to_string()),
        });
    }

    /// Rust-side check: the struct's own fields tile it with no gaps.
    fn coverage(&mut self, rust_name: &str, size: usize, fields: &[Field]) {
        // Each own field once (a field may be listed again for union members).
        let mut own: Vec<&Field> = Vec::new();
        for f in fields.iter().filter(|f| !f.rust.contains('.')) {
            if !own.iter().any(|o| o.rust == f.rust) {
                own.push(f);
            }
        }
        own.sort_by_key(|f| (f.offset, f.size));
        let mut at = 0;
        for f in own {
            if f.offset != at {
                self.rust_failures.push(format!(
                    "{rust_name}: implicit padding of {} bytes before `{}` (offset {}); spell it out as a _pad field",
                    f.offset as isize - at as isize,
                    f.rust,
                    f.offset
                ));
            }
            at = f.offset + f.size;
        }
        if at != size {
            self.rust_failures.push(format!(
                "{rust_name}: fields end at {at} but the struct is {size} bytes (implicit tail padding, or a field missing from the test)"
            ));
        }
    }

    /// Size, alignment and field offsets of `T` against C type `c_type`.
    fn layout<T>(&mut self, rust_name: &str, c_type: &str, fields: Vec<Field>) {
        let size_expr = format!("sizeof({c_type})");
        self.layout_with_size::<T>(rust_name, c_type, &size_expr, fields);
    }

    fn layout_with_size<T>(
        &mut self,
        rust_name: &str,
        c_type: &str,
        c_size: &str,
        fields: Vec<Field>,
    ) {
        self.coverage(rust_name, size_of::<T>(), &fields);
        self.num(
            format!("size_of::<{rust_name}>()"),
            c_size,
            size_of::<T>() as i128,
        );
        self.num(
            format!("align_of::<{rust_name}>()"),
            format!("_Alignof({c_type})"),
            align_of::<T>() as i128,
        );
        for f in fields.into_iter().filter(|f| !f.c.is_empty()) {
            self.num(
                format!("offset_of!({rust_name}, {})", f.rust),
                format!("offsetof({c_type}, {})", f.c),
                f.offset as i128,
            );
        }
    }

    /// A struct with no C counterpart: only the Rust-side tiling check.
    fn rust_only_layout<T>(&mut self, rust_name: &str, fields: Vec<Field>) {
        self.coverage(rust_name, size_of::<T>(), &fields);
    }
}

/// Numeric constants checked by name: each is matched with the header macro
/// whose name, upper-cased (and with a leading `__` dropped), is the Rust
/// name, unless `c_override` gives the C expression.
macro_rules! num_consts {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), ($name) as i128)),*]
    };
}

/// Numeric constants: (Rust name, value).
fn numeric_constants() -> Vec<(&'static str, i128)> {
    num_consts!(
        // xen.h
        HYPERVISOR_SET_TRAP_TABLE,
        HYPERVISOR_MMU_UPDATE,
        HYPERVISOR_SET_GDT,
        HYPERVISOR_STACK_SWITCH,
        HYPERVISOR_SET_CALLBACKS,
        HYPERVISOR_FPU_TASKSWITCH,
        HYPERVISOR_SCHED_OP_COMPAT,
        HYPERVISOR_PLATFORM_OP,
        HYPERVISOR_SET_DEBUGREG,
        HYPERVISOR_GET_DEBUGREG,
        HYPERVISOR_UPDATE_DESCRIPTOR,
        HYPERVISOR_MEMORY_OP,
        HYPERVISOR_MULTICALL,
        HYPERVISOR_UPDATE_VA_MAPPING,
        HYPERVISOR_SET_TIMER_OP,
        HYPERVISOR_EVENT_CHANNEL_OP_COMPAT,
        HYPERVISOR_XEN_VERSION,
        HYPERVISOR_CONSOLE_IO,
        HYPERVISOR_PHYSDEV_OP_COMPAT,
        HYPERVISOR_GRANT_TABLE_OP,
        HYPERVISOR_VM_ASSIST,
        HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN,
        HYPERVISOR_IRET,
        HYPERVISOR_VCPU_OP,
        HYPERVISOR_SET_SEGMENT_BASE,
        HYPERVISOR_MMUEXT_OP,
        HYPERVISOR_XSM_OP,
        HYPERVISOR_NMI_OP,
        HYPERVISOR_SCHED_OP,
        HYPERVISOR_CALLBACK_OP,
        HYPERVISOR_XENOPROF_OP,
        HYPERVISOR_EVENT_CHANNEL_OP,
        HYPERVISOR_PHYSDEV_OP,
        HYPERVISOR_HVM_OP,
        HYPERVISOR_SYSCTL,
        HYPERVISOR_DOMCTL,
        HYPERVISOR_KEXEC_OP,
        HYPERVISOR_TMEM_OP,
        HYPERVISOR_ARGO_OP,
        HYPERVISOR_XENPMU_OP,
        HYPERVISOR_DM_OP,
        HYPERVISOR_HYPFS_OP,
        HYPERVISOR_ARCH_0,
        HYPERVISOR_ARCH_1,
        HYPERVISOR_ARCH_2,
        HYPERVISOR_ARCH_3,
        HYPERVISOR_ARCH_4,
        HYPERVISOR_ARCH_5,
        HYPERVISOR_ARCH_6,
        HYPERVISOR_ARCH_7,
        HYPERVISOR_DOM0_OP,
        HYPERVISOR_MCA,
        MMU_NORMAL_PT_UPDATE,
        MMU_MACHPHYS_UPDATE,
        MMU_PT_UPDATE_PRESERVE_AD,
        MMU_PT_UPDATE_NO_TRANSLATE,
        MMUEXT_PIN_L1_TABLE,
        MMUEXT_PIN_L2_TABLE,
        MMUEXT_PIN_L3_TABLE,
        MMUEXT_PIN_L4_TABLE,
        MMUEXT_UNPIN_TABLE,
        MMUEXT_NEW_BASEPTR,
        MMUEXT_TLB_FLUSH_LOCAL,
        MMUEXT_INVLPG_LOCAL,
        MMUEXT_TLB_FLUSH_MULTI,
        MMUEXT_INVLPG_MULTI,
        MMUEXT_TLB_FLUSH_ALL,
        MMUEXT_INVLPG_ALL,
        MMUEXT_FLUSH_CACHE,
        MMUEXT_SET_LDT,
        MMUEXT_NEW_USER_BASEPTR,
        MMUEXT_CLEAR_PAGE,
        MMUEXT_COPY_PAGE,
        MMUEXT_FLUSH_CACHE_GLOBAL,
        MMUEXT_MARK_SUPER,
        MMUEXT_UNMARK_SUPER,
        UVMF_NONE,
        UVMF_TLB_FLUSH,
        UVMF_INVLPG,
        UVMF_FLUSHTYPE_MASK,
        UVMF_MULTI,
        UVMF_LOCAL,
        UVMF_ALL,
        CONSOLEIO_WRITE,
        CONSOLEIO_READ,
        VMASST_CMD_ENABLE,
        VMASST_CMD_DISABLE,
        VMASST_TYPE_4GB_SEGMENTS,
        VMASST_TYPE_4GB_SEGMENTS_NOTIFY,
        VMASST_TYPE_WRITABLE_PAGETABLES,
        VMASST_TYPE_PAE_EXTENDED_CR3,
        VMASST_TYPE_ARCHITECTURAL_IOPL,
        VMASST_TYPE_RUNSTATE_UPDATE_FLAG,
        VMASST_TYPE_M2P_STRICT,
        DOMID_FIRST_RESERVED,
        DOMID_SELF,
        DOMID_IO,
        DOMID_XEN,
        DOMID_COW,
        DOMID_INVALID,
        DOMID_IDLE,
        DOMID_MASK,
        SIF_PRIVILEGED,
        SIF_INITDOMAIN,
        SIF_MULTIBOOT_MOD,
        SIF_MOD_START_PFN,
        SIF_VIRT_P2M_4TOOLS,
        SIF_PM_MASK,
        MAX_GUEST_CMDLINE,
        XEN_PVCLOCK_TSC_STABLE_BIT,
        XEN_PVCLOCK_GUEST_STOPPED,
        EVTCHN_2L_WORDS,
        // errno.h (enum constants)
        XEN_EPERM,
        XEN_ENOENT,
        XEN_ESRCH,
        XEN_EINTR,
        XEN_EIO,
        XEN_ENXIO,
        XEN_E2BIG,
        XEN_ENOEXEC,
        XEN_EBADF,
        XEN_ECHILD,
        XEN_EAGAIN,
        XEN_EWOULDBLOCK,
        XEN_ENOMEM,
        XEN_EACCES,
        XEN_EFAULT,
        XEN_EBUSY,
        XEN_EEXIST,
        XEN_EXDEV,
        XEN_ENODEV,
        XEN_ENOTDIR,
        XEN_EISDIR,
        XEN_EINVAL,
        XEN_ENFILE,
        XEN_EMFILE,
        XEN_ENOSPC,
        XEN_EROFS,
        XEN_EMLINK,
        XEN_EDOM,
        XEN_ERANGE,
        XEN_EDEADLK,
        XEN_EDEADLOCK,
        XEN_ENAMETOOLONG,
        XEN_ENOLCK,
        XEN_ENOSYS,
        XEN_ENOTEMPTY,
        XEN_ENODATA,
        XEN_ETIME,
        XEN_EBADMSG,
        XEN_EOVERFLOW,
        XEN_EILSEQ,
        XEN_ERESTART,
        XEN_ENOTSOCK,
        XEN_EMSGSIZE,
        XEN_EOPNOTSUPP,
        XEN_EADDRINUSE,
        XEN_EADDRNOTAVAIL,
        XEN_ENOBUFS,
        XEN_EISCONN,
        XEN_ENOTCONN,
        XEN_ETIMEDOUT,
        XEN_ECONNREFUSED,
        // arch-x86
        FLAT_RING3_CS32,
        FLAT_RING3_CS64,
        FLAT_RING3_DS32,
        FLAT_RING3_DS64,
        FLAT_RING3_SS32,
        FLAT_RING3_SS64,
        FLAT_KERNEL_DS64,
        FLAT_KERNEL_DS32,
        FLAT_KERNEL_DS,
        FLAT_KERNEL_CS64,
        FLAT_KERNEL_CS32,
        FLAT_KERNEL_CS,
        FLAT_KERNEL_SS64,
        FLAT_KERNEL_SS32,
        FLAT_KERNEL_SS,
        FLAT_USER_DS64,
        FLAT_USER_DS32,
        FLAT_USER_DS,
        FLAT_USER_CS64,
        FLAT_USER_CS32,
        FLAT_USER_CS,
        FLAT_USER_SS64,
        FLAT_USER_SS32,
        FLAT_USER_SS,
        HYPERVISOR_VIRT_START,
        HYPERVISOR_VIRT_END,
        MACH2PHYS_VIRT_START,
        MACH2PHYS_VIRT_END,
        MACH2PHYS_NR_ENTRIES,
        SEGBASE_FS,
        SEGBASE_GS_USER,
        SEGBASE_GS_KERNEL,
        SEGBASE_GS_USER_SEL,
        VGCF_I387_VALID,
        VGCF_IN_KERNEL,
        VGCF_FAILSAFE_DISABLES_EVENTS,
        VGCF_SYSCALL_DISABLES_EVENTS,
        VGCF_ONLINE,
        VGCF_IN_SYSCALL,
        FIRST_RESERVED_GDT_PAGE,
        FIRST_RESERVED_GDT_BYTE,
        FIRST_RESERVED_GDT_ENTRY,
        XEN_LEGACY_MAX_VCPUS,
        XEN_HVM_DEBUGCONS_IOPORT,
        TI_DPL_MASK,
        TI_IF,
        // vcpu.h
        VCPUOP_INITIALISE,
        VCPUOP_UP,
        VCPUOP_DOWN,
        VCPUOP_IS_UP,
        VCPUOP_GET_RUNSTATE_INFO,
        VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
        VCPUOP_SET_PERIODIC_TIMER,
        VCPUOP_STOP_PERIODIC_TIMER,
        VCPUOP_SET_SINGLESHOT_TIMER,
        VCPUOP_STOP_SINGLESHOT_TIMER,
        VCPUOP_REGISTER_VCPU_INFO,
        VCPUOP_SEND_NMI,
        VCPUOP_GET_PHYSID,
        VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA,
        RUNSTATE_RUNNING,
        RUNSTATE_RUNNABLE,
        RUNSTATE_BLOCKED,
        RUNSTATE_OFFLINE,
        XEN_RUNSTATE_UPDATE,
        VCPU_SSHOTTMR_FUTURE,
        // event_channel.h
        EVTCHNOP_BIND_INTERDOMAIN,
        EVTCHNOP_BIND_VIRQ,
        EVTCHNOP_BIND_PIRQ,
        EVTCHNOP_CLOSE,
        EVTCHNOP_SEND,
        EVTCHNOP_STATUS,
        EVTCHNOP_ALLOC_UNBOUND,
        EVTCHNOP_BIND_IPI,
        EVTCHNOP_BIND_VCPU,
        EVTCHNOP_UNMASK,
        EVTCHNOP_RESET,
        EVTCHNOP_INIT_CONTROL,
        EVTCHNOP_EXPAND_ARRAY,
        EVTCHNOP_SET_PRIORITY,
        EVTCHNOP_RESET_CONT,
        VIRQ_TIMER,
        VIRQ_DEBUG,
        VIRQ_CONSOLE,
        VIRQ_DOM_EXC,
        VIRQ_TBUF,
        VIRQ_DEBUGGER,
        VIRQ_XENOPROF,
        VIRQ_CON_RING,
        VIRQ_PCPU_STATE,
        VIRQ_MEM_EVENT,
        VIRQ_ARGO,
        VIRQ_ENOMEM,
        VIRQ_XENPMU,
        VIRQ_ARCH_0,
        VIRQ_ARCH_1,
        VIRQ_ARCH_2,
        VIRQ_ARCH_3,
        VIRQ_ARCH_4,
        VIRQ_ARCH_5,
        VIRQ_ARCH_6,
        VIRQ_ARCH_7,
        VIRQ_MCA,
        NR_VIRQS,
        EVTCHN_2L_NR_CHANNELS,
        NR_EVENT_CHANNELS,
        BIND_PIRQ_WILL_SHARE,
        EVTCHNSTAT_CLOSED,
        EVTCHNSTAT_UNBOUND,
        EVTCHNSTAT_INTERDOMAIN,
        EVTCHNSTAT_PIRQ,
        EVTCHNSTAT_VIRQ,
        EVTCHNSTAT_IPI,
        EVTCHN_FIFO_PRIORITY_MAX,
        EVTCHN_FIFO_PRIORITY_DEFAULT,
        EVTCHN_FIFO_PRIORITY_MIN,
        EVTCHN_FIFO_MAX_QUEUES,
        EVTCHN_FIFO_PENDING,
        EVTCHN_FIFO_MASKED,
        EVTCHN_FIFO_LINKED,
        EVTCHN_FIFO_BUSY,
        EVTCHN_FIFO_LINK_BITS,
        EVTCHN_FIFO_LINK_MASK,
        EVTCHN_FIFO_NR_CHANNELS,
        // sched.h
        SCHEDOP_YIELD,
        SCHEDOP_BLOCK,
        SCHEDOP_SHUTDOWN,
        SCHEDOP_POLL,
        SCHEDOP_REMOTE_SHUTDOWN,
        SCHEDOP_SHUTDOWN_CODE,
        SCHEDOP_WATCHDOG,
        SCHEDOP_PIN_OVERRIDE,
        SHUTDOWN_POWEROFF,
        SHUTDOWN_REBOOT,
        SHUTDOWN_SUSPEND,
        SHUTDOWN_CRASH,
        SHUTDOWN_WATCHDOG,
        SHUTDOWN_SOFT_RESET,
        SHUTDOWN_MAX,
        // callback.h
        CALLBACKTYPE_EVENT,
        CALLBACKTYPE_FAILSAFE,
        CALLBACKTYPE_SYSCALL,
        CALLBACKTYPE_SYSENTER_DEPRECATED,
        CALLBACKTYPE_NMI,
        CALLBACKTYPE_SYSENTER,
        CALLBACKTYPE_SYSCALL32,
        CALLBACKF_MASK_EVENTS,
        CALLBACKOP_REGISTER,
        CALLBACKOP_UNREGISTER,
        // memory.h
        XENMEM_INCREASE_RESERVATION,
        XENMEM_DECREASE_RESERVATION,
        XENMEM_MAXIMUM_RAM_PAGE,
        XENMEM_CURRENT_RESERVATION,
        XENMEM_MAXIMUM_RESERVATION,
        XENMEM_MACHPHYS_MFN_LIST,
        XENMEM_POPULATE_PHYSMAP,
        XENMEM_ADD_TO_PHYSMAP,
        XENMEM_MEMORY_MAP,
        XENMEM_MACHINE_MEMORY_MAP,
        XENMEM_EXCHANGE,
        XENMEM_MACHPHYS_MAPPING,
        XENMEM_SET_MEMORY_MAP,
        XENMEM_MAXIMUM_GPFN,
        XENMEM_REMOVE_FROM_PHYSMAP,
        XENMEM_SET_POD_TARGET,
        XENMEM_GET_POD_TARGET,
        XENMEM_GET_SHARING_FREED_PAGES,
        XENMEM_GET_SHARING_SHARED_PAGES,
        XENMEM_PAGING_OP,
        XENMEM_ACCESS_OP,
        XENMEM_SHARING_OP,
        XENMEM_ADD_TO_PHYSMAP_BATCH,
        XENMEM_CLAIM_PAGES,
        XENMEM_MACHPHYS_COMPAT_MFN_LIST,
        XENMEM_GET_VNUMAINFO,
        XENMEM_RESERVED_DEVICE_MEMORY_MAP,
        XENMEM_ACQUIRE_RESOURCE,
        XENMEMF_POPULATE_ON_DEMAND,
        XENMEMF_EXACT_NODE_REQUEST,
        XENMEMF_VNODE,
        XENMAPSPACE_SHARED_INFO,
        XENMAPSPACE_GRANT_TABLE,
        XENMAPSPACE_GMFN,
        XENMAPSPACE_GMFN_RANGE,
        XENMAPSPACE_GMFN_FOREIGN,
        XENMAPSPACE_DEV_MMIO,
        XENMAPIDX_GRANT_TABLE_STATUS,
        XENMEM_RESOURCE_IOREQ_SERVER,
        XENMEM_RESOURCE_GRANT_TABLE,
        XENMEM_RESOURCE_VMTRACE_BUF,
        XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED,
        XENMEM_RESOURCE_GRANT_TABLE_ID_STATUS,
        E820_RAM,
        E820_RESERVED,
        E820_ACPI,
        E820_NVS,
        E820_UNUSABLE,
        E820_DISABLED,
        E820_PMEM,
        // grant_table.h
        GNTTABOP_MAP_GRANT_REF,
        GNTTABOP_UNMAP_GRANT_REF,
        GNTTABOP_SETUP_TABLE,
        GNTTABOP_DUMP_TABLE,
        GNTTABOP_TRANSFER,
        GNTTABOP_COPY,
        GNTTABOP_QUERY_SIZE,
        GNTTABOP_UNMAP_AND_REPLACE,
        GNTTABOP_SET_VERSION,
        GNTTABOP_GET_STATUS_FRAMES,
        GNTTABOP_GET_VERSION,
        GNTTABOP_SWAP_GRANT_REF,
        GNTTABOP_CACHE_FLUSH,
        GNTTAB_NR_RESERVED_ENTRIES,
        GNTTAB_RESERVED_CONSOLE,
        GNTTAB_RESERVED_XENSTORE,
        GTF_INVALID,
        GTF_PERMIT_ACCESS,
        GTF_ACCEPT_TRANSFER,
        GTF_TRANSITIVE,
        GTF_TYPE_MASK,
        GTF_READONLY,
        GTF_READING,
        GTF_WRITING,
        GTF_PWT,
        GTF_PCD,
        GTF_PAT,
        GTF_SUB_PAGE,
        GTF_TRANSFER_COMMITTED,
        GTF_TRANSFER_COMPLETED,
        GNTMAP_DEVICE_MAP,
        GNTMAP_HOST_MAP,
        GNTMAP_READONLY,
        GNTMAP_APPLICATION_MAP,
        GNTMAP_CONTAINS_PTE,
        GNTMAP_GUEST_AVAIL0,
        GNTMAP_GUEST_AVAIL_MASK,
        GNTCOPY_SOURCE_GREF,
        GNTCOPY_DEST_GREF,
        GNTTAB_CACHE_CLEAN,
        GNTTAB_CACHE_INVAL,
        GNTTAB_CACHE_SOURCE_GREF,
        GNTST_OKAY,
        GNTST_GENERAL_ERROR,
        GNTST_BAD_DOMAIN,
        GNTST_BAD_GNTREF,
        GNTST_BAD_HANDLE,
        GNTST_BAD_VIRT_ADDR,
        GNTST_BAD_DEV_ADDR,
        GNTST_NO_DEVICE_SPACE,
        GNTST_PERMISSION_DENIED,
        GNTST_BAD_PAGE,
        GNTST_BAD_COPY_ARG,
        GNTST_ADDRESS_TOO_BIG,
        GNTST_EAGAIN,
        GNTST_NO_SPACE,
        // version.h, features.h
        XENVER_VERSION,
        XENVER_EXTRAVERSION,
        XENVER_COMPILE_INFO,
        XENVER_CAPABILITIES,
        XENVER_CHANGESET,
        XENVER_PLATFORM_PARAMETERS,
        XENVER_GET_FEATURES,
        XENVER_PAGESIZE,
        XENVER_GUEST_HANDLE,
        XENVER_COMMANDLINE,
        XENVER_BUILD_ID,
        XEN_EXTRAVERSION_LEN,
        XEN_CAPABILITIES_INFO_LEN,
        XEN_CHANGESET_INFO_LEN,
        XEN_COMMANDLINE_LEN,
        XENFEAT_WRITABLE_PAGE_TABLES,
        XENFEAT_WRITABLE_DESCRIPTOR_TABLES,
        XENFEAT_AUTO_TRANSLATED_PHYSMAP,
        XENFEAT_SUPERVISOR_MODE_KERNEL,
        XENFEAT_PAE_PGDIR_ABOVE_4GB,
        XENFEAT_MMU_PT_UPDATE_PRESERVE_AD,
        XENFEAT_HIGHMEM_ASSIST,
        XENFEAT_GNTTAB_MAP_AVAIL_BITS,
        XENFEAT_HVM_CALLBACK_VECTOR,
        XENFEAT_HVM_SAFE_PVCLOCK,
        XENFEAT_HVM_PIRQS,
        XENFEAT_DOM0,
        XENFEAT_MEMORY_OP_VNODE_SUPPORTED,
        XENFEAT_ARM_SMCCC_SUPPORTED,
        XENFEAT_LINUX_RSDP_UNRESTRICTED,
        XENFEAT_NOT_DIRECT_MAPPED,
        XENFEAT_DIRECT_MAPPED,
        XENFEAT_NR_SUBMAPS,
        // physdev.h
        PHYSDEVOP_IRQ_UNMASK_NOTIFY,
        PHYSDEVOP_IRQ_STATUS_QUERY,
        PHYSDEVOP_SET_IOPL,
        PHYSDEVOP_SET_IOBITMAP,
        PHYSDEVOP_APIC_READ,
        PHYSDEVOP_APIC_WRITE,
        PHYSDEVOP_ALLOC_IRQ_VECTOR,
        PHYSDEVOP_FREE_IRQ_VECTOR,
        PHYSDEVOP_EOI,
        PHYSDEVOP_MAP_PIRQ,
        PHYSDEVOP_UNMAP_PIRQ,
        PHYSDEVOP_MANAGE_PCI_ADD,
        PHYSDEVOP_MANAGE_PCI_REMOVE,
        PHYSDEVOP_PIRQ_EOI_GMFN_V1,
        PHYSDEVOP_RESTORE_MSI,
        PHYSDEVOP_MANAGE_PCI_ADD_EXT,
        PHYSDEVOP_SETUP_GSI,
        PHYSDEVOP_GET_FREE_PIRQ,
        PHYSDEVOP_PCI_MMCFG_RESERVED,
        PHYSDEVOP_PCI_DEVICE_ADD,
        PHYSDEVOP_PCI_DEVICE_REMOVE,
        PHYSDEVOP_RESTORE_MSI_EXT,
        PHYSDEVOP_PIRQ_EOI_GMFN_V2,
        PHYSDEVOP_DBGP_OP,
        PHYSDEVOP_PREPARE_MSIX,
        PHYSDEVOP_RELEASE_MSIX,
        PHYSDEVOP_PIRQ_EOI_GMFN,
        XENIRQSTAT_NEEDS_EOI,
        XENIRQSTAT_SHARED,
        MAP_PIRQ_TYPE_MSI,
        MAP_PIRQ_TYPE_GSI,
        MAP_PIRQ_TYPE_UNKNOWN,
        MAP_PIRQ_TYPE_MSI_SEG,
        MAP_PIRQ_TYPE_MULTI_MSI,
        XEN_PCI_MMCFG_RESERVED,
        XEN_PCI_DEV_EXTFN,
        XEN_PCI_DEV_VIRTFN,
        XEN_PCI_DEV_PXM,
        PHYSDEVOP_DBGP_RESET_PREPARE,
        PHYSDEVOP_DBGP_RESET_DONE,
        PHYSDEVOP_DBGP_BUS_UNKNOWN,
        PHYSDEVOP_DBGP_BUS_PCI,
        // elfnote.h
        XEN_ELFNOTE_INFO,
        XEN_ELFNOTE_ENTRY,
        XEN_ELFNOTE_HYPERCALL_PAGE,
        XEN_ELFNOTE_VIRT_BASE,
        XEN_ELFNOTE_PADDR_OFFSET,
        XEN_ELFNOTE_XEN_VERSION,
        XEN_ELFNOTE_GUEST_OS,
        XEN_ELFNOTE_GUEST_VERSION,
        XEN_ELFNOTE_LOADER,
        XEN_ELFNOTE_PAE_MODE,
        XEN_ELFNOTE_FEATURES,
        XEN_ELFNOTE_BSD_SYMTAB,
        XEN_ELFNOTE_HV_START_LOW,
        XEN_ELFNOTE_L1_MFN_VALID,
        XEN_ELFNOTE_SUSPEND_CANCEL,
        XEN_ELFNOTE_INIT_P2M,
        XEN_ELFNOTE_MOD_START_PFN,
        XEN_ELFNOTE_SUPPORTED_FEATURES,
        XEN_ELFNOTE_PHYS32_ENTRY,
        XEN_ELFNOTE_MAX,
        XEN_ELFNOTE_CRASH_INFO,
        XEN_ELFNOTE_CRASH_REGS,
        XEN_ELFNOTE_DUMPCORE_NONE,
        XEN_ELFNOTE_DUMPCORE_HEADER,
        XEN_ELFNOTE_DUMPCORE_XEN_VERSION,
        XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION,
        // io/blkif.h
        BLKIF_OP_READ,
        BLKIF_OP_WRITE,
        BLKIF_OP_WRITE_BARRIER,
        BLKIF_OP_FLUSH_DISKCACHE,
        BLKIF_OP_RESERVED_1,
        BLKIF_OP_DISCARD,
        BLKIF_OP_INDIRECT,
        BLKIF_MAX_SEGMENTS_PER_REQUEST,
        BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
        BLKIF_SEGS_PER_INDIRECT_FRAME,
        BLKIF_DISCARD_SECURE,
        BLKIF_RSP_EOPNOTSUPP,
        BLKIF_RSP_ERROR,
        BLKIF_RSP_OKAY,
        VDISK_CDROM,
        VDISK_REMOVABLE,
        VDISK_READONLY,
        BLKIF_SECTOR_SIZE,
        BLKIF_RING_ENTRY_SIZE,
        BLKIF_RING_SIZE,
        // io/console.h, io/ring.h
        XENCONS_IN_SIZE,
        XENCONS_OUT_SIZE,
        SRING_HEADER_SIZE,
        // io/netif.h
        XEN_NETIF_NR_SLOTS_MIN,
        XEN_NETIF_MAX_TX_SIZE,
        NETTXF_CSUM_BLANK,
        NETTXF_DATA_VALIDATED,
        NETTXF_MORE_DATA,
        NETTXF_EXTRA_INFO,
        NETRXF_DATA_VALIDATED,
        NETRXF_CSUM_BLANK,
        NETRXF_MORE_DATA,
        NETRXF_EXTRA_INFO,
        NETRXF_GSO_PREFIX,
        XEN_NETIF_EXTRA_TYPE_NONE,
        XEN_NETIF_EXTRA_TYPE_GSO,
        XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
        XEN_NETIF_EXTRA_TYPE_MCAST_DEL,
        XEN_NETIF_EXTRA_TYPE_HASH,
        XEN_NETIF_EXTRA_TYPE_MAX,
        XEN_NETIF_EXTRA_FLAG_MORE,
        XEN_NETIF_GSO_TYPE_NONE,
        XEN_NETIF_GSO_TYPE_TCPV4,
        XEN_NETIF_GSO_TYPE_TCPV6,
        NETIF_RSP_DROPPED,
        NETIF_RSP_ERROR,
        NETIF_RSP_OKAY,
        NETIF_RSP_NULL,
        XEN_NETIF_CTRL_TYPE_INVALID,
        XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS,
        XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS,
        XEN_NETIF_CTRL_TYPE_SET_HASH_KEY,
        XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE,
        XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE,
        XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING,
        XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM,
        XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE,
        XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING,
        XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING,
        XEN_NETIF_CTRL_STATUS_SUCCESS,
        XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED,
        XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER,
        XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW,
        XEN_NETIF_CTRL_HASH_TYPE_IPV4,
        XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP,
        XEN_NETIF_CTRL_HASH_TYPE_IPV6,
        XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP,
        XEN_NETIF_CTRL_HASH_ALGORITHM_NONE,
        XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ,
        XEN_NETIF_CTRLF_GREF_READONLY,
        NETIF_TX_RING_ENTRY_SIZE,
        NETIF_RX_RING_ENTRY_SIZE,
        XEN_NETIF_CTRL_RING_ENTRY_SIZE,
        NETIF_TX_RING_SIZE,
        NETIF_RX_RING_SIZE,
        XEN_NETIF_CTRL_RING_SIZE,
        // io/xs_wire.h
        XS_TYPE_COUNT,
        XS_INVALID,
        XS_WATCH_PATH,
        XS_WATCH_TOKEN,
        XENSTORE_RING_SIZE,
        XENSTORE_PAYLOAD_MAX,
        XENSTORE_ABS_PATH_MAX,
        XENSTORE_REL_PATH_MAX,
        XENSTORE_SERVER_FEATURE_RECONNECTION,
        XENSTORE_SERVER_FEATURE_ERROR,
        XENSTORE_CONNECTED,
        XENSTORE_RECONNECT,
        XENSTORE_ERROR_NONE,
        XENSTORE_ERROR_COMM,
        XENSTORE_ERROR_RINGIDX,
        XENSTORE_ERROR_PROTO,
    )
}

/// C expressions for constants that are not a same-named macro.
fn c_override(rust: &str) -> Option<&'static str> {
    Some(match rust {
        "EVTCHN_2L_WORDS" => {
            "sizeof(((struct shared_info *)0)->evtchn_pending) / sizeof(xen_ulong_t)"
        }
        "NR_EVENT_CHANNELS" => "EVTCHN_2L_NR_CHANNELS",
        "HYPERVISOR_DOM0_OP" => "__HYPERVISOR_platform_op",
        "BIND_PIRQ_WILL_SHARE" => "BIND_PIRQ__WILL_SHARE",
        "GNTMAP_GUEST_AVAIL0" => "_GNTMAP_guest_avail0",
        "TI_DPL_MASK" => "({ struct trap_info t = { .flags = 0xff }; TI_GET_DPL(&t); })",
        "TI_IF" => "({ struct trap_info t = { .flags = 0xff }; TI_GET_IF(&t); })",
        "XEN_COMMANDLINE_LEN" => "sizeof(xen_commandline_t)",
        "BLKIF_SEGS_PER_INDIRECT_FRAME" => "4096 / sizeof(struct blkif_request_segment)",
        "BLKIF_RING_ENTRY_SIZE" => "sizeof(union blkif_sring_entry)",
        "BLKIF_RING_SIZE" => "__CONST_RING_SIZE(blkif, 4096)",
        "XENCONS_IN_SIZE" => "sizeof(((struct xencons_interface *)0)->in)",
        "XENCONS_OUT_SIZE" => "sizeof(((struct xencons_interface *)0)->out)",
        "SRING_HEADER_SIZE" => "offsetof(struct blkif_sring, ring)",
        "NETIF_TX_RING_ENTRY_SIZE" => "sizeof(union netif_tx_sring_entry)",
        "NETIF_RX_RING_ENTRY_SIZE" => "sizeof(union netif_rx_sring_entry)",
        "XEN_NETIF_CTRL_RING_ENTRY_SIZE" => "sizeof(union xen_netif_ctrl_sring_entry)",
        "NETIF_TX_RING_SIZE" => "__CONST_RING_SIZE(netif_tx, 4096)",
        "NETIF_RX_RING_SIZE" => "__CONST_RING_SIZE(netif_rx, 4096)",
        "XEN_NETIF_CTRL_RING_SIZE" => "__CONST_RING_SIZE(xen_netif_ctrl, 4096)",
        _ => return None,
    })
}

/// Enum constants (not macros) whose C name is the Rust name.
const C_ENUM_CONSTANTS: &[&str] = &[
    "XS_TYPE_COUNT",
    "XS_INVALID",
    "XS_WATCH_PATH",
    "XS_WATCH_TOKEN",
];

/// Constants with no counterpart in the guest-visible headers, and why.
const RUST_ONLY: &[(&str, &str)] = &[
    (
        "XEN_EINTR",
        "errno.h defines it only for the hypervisor (__XEN__)",
    ),
    (
        "XEN_ERESTART",
        "errno.h defines it only for the hypervisor (__XEN__)",
    ),
    (
        "EVTCHNOP_RESET_CONT",
        "event_channel.h defines it only for the hypervisor (__XEN__)",
    ),
    ("E820_RAM", "E820 types are not in the public headers"),
    ("E820_RESERVED", "E820 types are not in the public headers"),
    ("E820_ACPI", "E820 types are not in the public headers"),
    ("E820_NVS", "E820 types are not in the public headers"),
    ("E820_UNUSABLE", "E820 types are not in the public headers"),
    ("E820_DISABLED", "E820 types are not in the public headers"),
    ("E820_PMEM", "E820 types are not in the public headers"),
    (
        "BLKIF_SECTOR_SIZE",
        "the 512-byte sector is prose in blkif.h",
    ),
];

/// Header macro prefixes for which every object-like macro must have a Rust
/// constant (macro name upper-cased, a leading `__` dropped).
const COMPLETE_PREFIXES: &[&str] = &[
    "__HYPERVISOR_",
    "MMU_",
    "MMUEXT_",
    "UVMF_",
    "VMASST_",
    "CONSOLEIO_",
    "DOMID_",
    "SIF_",
    "VIRQ_",
    "EVTCHNOP_",
    "EVTCHNSTAT_",
    "EVTCHN_FIFO_",
    "VCPUOP_",
    "RUNSTATE_",
    "SCHEDOP_",
    "SHUTDOWN_",
    "CALLBACKOP_",
    "CALLBACKTYPE_",
    "CALLBACKF_",
    "XENMAPSPACE_",
    "GNTTABOP_",
    "GTF_",
    "GNTST_",
    "GNTMAP_",
    "GNTCOPY_",
    "XENVER_",
    "XENFEAT_",
    "PHYSDEVOP_",
    "XEN_ELFNOTE_",
    "FLAT_",
    "SEGBASE_",
    "VGCF_",
    "BLKIF_",
    "VDISK_",
    "NETTXF_",
    "NETRXF_",
    "NETIF_RSP_",
    "XEN_NETIF_",
    "XENSTORE_",
    "XS_",
    "XEN_IO_PROTO_",
];

/// Macros under those prefixes that deliberately have no Rust constant.
const NOT_MIRRORED: &[&str] = &[
    // A brace-enclosed string list, mirrored as GNTTABOP_ERROR_MSGS.
    "GNTTABOP_error_msgs",
];

fn rust_name_of_macro(m: &str) -> String {
    m.strip_prefix("__").unwrap_or(m).to_uppercase()
}

/// The single field of a newtype over a byte array.
fn whole<T>() -> Vec<Field> {
    vec![Field {
        rust: "0".into(),
        c: String::new(),
        offset: 0,
        size: size_of::<T>(),
    }]
}

fn add_structs(c: &mut Checks) {
    // xen.h
    c.layout::<MmuUpdate>(
        "MmuUpdate",
        "struct mmu_update",
        fields!(MmuUpdate; ptr, val),
    );
    c.layout::<MmuextOp>(
        "MmuextOp",
        "struct mmuext_op",
        fields!(MmuextOp; cmd, _pad0: "", arg1, arg2, arg1: "arg1.mfn", arg1: "arg1.linear_addr",
            arg2: "arg2.nr_ents", arg2: "arg2.vcpumask", arg2: "arg2.src_mfn"),
    );
    c.num(
        "size_of_val(&MmuextOp::arg1)",
        "sizeof(((struct mmuext_op *)0)->arg1)",
        8,
    );
    c.num(
        "size_of_val(&MmuextOp::arg2)",
        "sizeof(((struct mmuext_op *)0)->arg2)",
        8,
    );
    c.layout::<MulticallEntry>(
        "MulticallEntry",
        "struct multicall_entry",
        fields!(MulticallEntry; op, result, args),
    );
    c.layout::<VcpuTimeInfo>(
        "VcpuTimeInfo",
        "struct vcpu_time_info",
        fields!(VcpuTimeInfo; version, pad0, tsc_timestamp, system_time, tsc_to_system_mul,
            tsc_shift, flags, pad1),
    );
    c.layout::<VcpuInfo>(
        "VcpuInfo",
        "struct vcpu_info",
        fields!(VcpuInfo; evtchn_upcall_pending, evtchn_upcall_mask, _pad0: "",
            evtchn_pending_sel, arch, time, arch.cr2, time.system_time),
    );
    c.layout::<SharedInfo>(
        "SharedInfo",
        "struct shared_info",
        fields!(SharedInfo; vcpu_info, evtchn_pending, evtchn_mask, wc_version, wc_sec,
            wc_nsec, wc_sec_hi, arch, arch.max_pfn, arch.p2m_generation),
    );
    c.layout::<StartInfoConsole>(
        "StartInfoConsole",
        "__typeof__(((struct start_info *)0)->console.domU)",
        fields!(StartInfoConsole; mfn, evtchn, _pad0: ""),
    );
    c.layout::<StartInfo>(
        "StartInfo",
        "struct start_info",
        fields!(StartInfo; magic, nr_pages, shared_info, flags, _pad0: "", store_mfn,
            store_evtchn, _pad1: "", console, pt_base, nr_pt_frames, mfn_list, mod_start,
            mod_len, cmd_line, first_p2m_pfn, nr_p2m_frames,
            console.mfn: "console.domU.mfn", console.evtchn: "console.domU.evtchn",
            console.mfn: "console.dom0.info_off"),
    );
    c.num(
        "offset_of!(StartInfo, console.mfn) + 4",
        "offsetof(struct start_info, console.dom0.info_size)",
        offset_of!(StartInfo, console.mfn) as i128 + 4,
    );
    c.layout::<XenMultibootModList>(
        "XenMultibootModList",
        "struct xen_multiboot_mod_list",
        fields!(XenMultibootModList; mod_start, mod_end, cmdline, pad),
    );

    // arch-x86
    c.layout::<TrapInfo>(
        "TrapInfo",
        "struct trap_info",
        fields!(TrapInfo; vector, flags, cs, _pad0: "", address),
    );
    c.layout::<IretContext>(
        "IretContext",
        "struct iret_context",
        fields!(IretContext; rax, r11, rcx, flags, rip, cs, rflags, rsp, ss),
    );
    c.layout::<ArchVcpuInfo>(
        "ArchVcpuInfo",
        "struct arch_vcpu_info",
        fields!(ArchVcpuInfo; cr2, pad),
    );
    c.layout::<ArchSharedInfo>(
        "ArchSharedInfo",
        "struct arch_shared_info",
        fields!(ArchSharedInfo; max_pfn, pfn_to_mfn_frame_list_list, nmi_reason, p2m_cr3,
            p2m_vaddr, p2m_generation),
    );
    c.layout::<CpuUserRegs>(
        "CpuUserRegs",
        "struct cpu_user_regs",
        fields!(CpuUserRegs; r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx,
            rsi, rdi, error_code, entry_vector, rip, cs, _pad0, saved_upcall_mask, _pad1,
            rflags, rsp, ss, _pad2, es, _pad3, ds, _pad4, fs, _pad5, gs, _pad6),
    );
    c.layout::<VcpuGuestContext>(
        "VcpuGuestContext",
        "struct vcpu_guest_context",
        fields!(VcpuGuestContext; fpu_ctxt, flags, user_regs, trap_ctxt, ldt_base, ldt_ents,
            gdt_frames, gdt_ents, kernel_ss, kernel_sp, ctrlreg, debugreg, event_callback_eip,
            failsafe_callback_eip, syscall_callback_eip, vm_assist, fs_base, gs_base_kernel,
            gs_base_user, user_regs.rip, user_regs.saved_upcall_mask),
    );

    // vcpu.h
    c.layout::<VcpuRunstateInfo>(
        "VcpuRunstateInfo",
        "struct vcpu_runstate_info",
        fields!(VcpuRunstateInfo; state, _pad0: "", state_entry_time, time),
    );
    c.layout::<VcpuRegisterRunstateMemoryArea>(
        "VcpuRegisterRunstateMemoryArea",
        "struct vcpu_register_runstate_memory_area",
        fields!(VcpuRegisterRunstateMemoryArea; addr, addr: "addr.p", addr: "addr.h", addr: "addr.v"),
    );
    c.layout::<VcpuSetPeriodicTimer>(
        "VcpuSetPeriodicTimer",
        "struct vcpu_set_periodic_timer",
        fields!(VcpuSetPeriodicTimer; period_ns),
    );
    c.layout::<VcpuSetSingleshotTimer>(
        "VcpuSetSingleshotTimer",
        "struct vcpu_set_singleshot_timer",
        fields!(VcpuSetSingleshotTimer; timeout_abs_ns, flags, _pad0: ""),
    );
    c.layout::<VcpuRegisterVcpuInfo>(
        "VcpuRegisterVcpuInfo",
        "struct vcpu_register_vcpu_info",
        fields!(VcpuRegisterVcpuInfo; mfn, offset, rsvd),
    );
    c.layout::<VcpuGetPhysid>(
        "VcpuGetPhysid",
        "struct vcpu_get_physid",
        fields!(VcpuGetPhysid; phys_id),
    );
    c.layout::<VcpuRegisterTimeMemoryArea>(
        "VcpuRegisterTimeMemoryArea",
        "struct vcpu_register_time_memory_area",
        fields!(VcpuRegisterTimeMemoryArea; addr, addr: "addr.p"),
    );

    // event_channel.h
    c.layout::<EvtchnAllocUnbound>(
        "EvtchnAllocUnbound",
        "struct evtchn_alloc_unbound",
        fields!(EvtchnAllocUnbound; dom, remote_dom, port),
    );
    c.layout::<EvtchnBindInterdomain>(
        "EvtchnBindInterdomain",
        "struct evtchn_bind_interdomain",
        fields!(EvtchnBindInterdomain; remote_dom, _pad0: "", remote_port, local_port),
    );
    c.layout::<EvtchnBindVirq>(
        "EvtchnBindVirq",
        "struct evtchn_bind_virq",
        fields!(EvtchnBindVirq; virq, vcpu, port),
    );
    c.layout::<EvtchnBindPirq>(
        "EvtchnBindPirq",
        "struct evtchn_bind_pirq",
        fields!(EvtchnBindPirq; pirq, flags, port),
    );
    c.layout::<EvtchnBindIpi>(
        "EvtchnBindIpi",
        "struct evtchn_bind_ipi",
        fields!(EvtchnBindIpi; vcpu, port),
    );
    c.layout::<EvtchnClose>(
        "EvtchnClose",
        "struct evtchn_close",
        fields!(EvtchnClose; port),
    );
    c.layout::<EvtchnSend>(
        "EvtchnSend",
        "struct evtchn_send",
        fields!(EvtchnSend; port),
    );
    c.layout::<EvtchnStatus>(
        "EvtchnStatus",
        "struct evtchn_status",
        fields!(EvtchnStatus; dom, _pad0: "", port, status, vcpu, u, u: "u.unbound.dom",
            u: "u.interdomain.dom", u: "u.pirq", u: "u.virq"),
    );
    c.num(
        "offset_of!(EvtchnStatus, u) + 4",
        "offsetof(struct evtchn_status, u.interdomain.port)",
        offset_of!(EvtchnStatus, u) as i128 + 4,
    );
    c.layout::<EvtchnBindVcpu>(
        "EvtchnBindVcpu",
        "struct evtchn_bind_vcpu",
        fields!(EvtchnBindVcpu; port, vcpu),
    );
    c.layout::<EvtchnUnmask>(
        "EvtchnUnmask",
        "struct evtchn_unmask",
        fields!(EvtchnUnmask; port),
    );
    c.layout::<EvtchnReset>(
        "EvtchnReset",
        "struct evtchn_reset",
        fields!(EvtchnReset; dom),
    );
    c.layout::<EvtchnInitControl>(
        "EvtchnInitControl",
        "struct evtchn_init_control",
        fields!(EvtchnInitControl; control_gfn, offset, vcpu, link_bits, _pad),
    );
    c.layout::<EvtchnExpandArray>(
        "EvtchnExpandArray",
        "struct evtchn_expand_array",
        fields!(EvtchnExpandArray; array_gfn),
    );
    c.layout::<EvtchnSetPriority>(
        "EvtchnSetPriority",
        "struct evtchn_set_priority",
        fields!(EvtchnSetPriority; port, priority),
    );
    c.layout::<EvtchnFifoControlBlock>(
        "EvtchnFifoControlBlock",
        "struct evtchn_fifo_control_block",
        fields!(EvtchnFifoControlBlock; ready, _rsvd, head),
    );

    // sched.h
    c.layout::<SchedShutdown>(
        "SchedShutdown",
        "struct sched_shutdown",
        fields!(SchedShutdown; reason),
    );
    c.layout::<SchedPoll>(
        "SchedPoll",
        "struct sched_poll",
        fields!(SchedPoll; ports, nr_ports, _pad0: "", timeout),
    );
    c.layout::<SchedRemoteShutdown>(
        "SchedRemoteShutdown",
        "struct sched_remote_shutdown",
        fields!(SchedRemoteShutdown; domain_id, _pad0: "", reason),
    );
    c.layout::<SchedWatchdog>(
        "SchedWatchdog",
        "struct sched_watchdog",
        fields!(SchedWatchdog; id, timeout),
    );
    c.layout::<SchedPinOverride>(
        "SchedPinOverride",
        "struct sched_pin_override",
        fields!(SchedPinOverride; pcpu),
    );

    // callback.h
    c.layout::<CallbackRegister>(
        "CallbackRegister",
        "struct callback_register",
        fields!(CallbackRegister; type_: "type", flags, _pad0: "", address),
    );
    c.layout::<CallbackUnregister>(
        "CallbackUnregister",
        "struct callback_unregister",
        fields!(CallbackUnregister; type_: "type", _unused),
    );

    // memory.h
    c.layout::<XenMemoryReservation>(
        "XenMemoryReservation",
        "struct xen_memory_reservation",
        fields!(XenMemoryReservation; extent_start, nr_extents, extent_order, mem_flags, domid,
            _pad0: ""),
    );
    c.layout::<XenMemoryExchange>(
        "XenMemoryExchange",
        "struct xen_memory_exchange",
        fields!(XenMemoryExchange; in_: "in", out, nr_exchanged),
    );
    c.layout::<XenMachphysMfnList>(
        "XenMachphysMfnList",
        "struct xen_machphys_mfn_list",
        fields!(XenMachphysMfnList; max_extents, _pad0: "", extent_start, nr_extents, _pad1: ""),
    );
    c.layout::<XenMachphysMapping>(
        "XenMachphysMapping",
        "struct xen_machphys_mapping",
        fields!(XenMachphysMapping; v_start, v_end, max_mfn),
    );
    c.layout::<XenAddToPhysmap>(
        "XenAddToPhysmap",
        "struct xen_add_to_physmap",
        fields!(XenAddToPhysmap; domid, size, space, idx, gpfn),
    );
    c.layout::<XenRemoveFromPhysmap>(
        "XenRemoveFromPhysmap",
        "struct xen_remove_from_physmap",
        fields!(XenRemoveFromPhysmap; domid, _pad0: "", gpfn),
    );
    c.layout::<XenMemoryMap>(
        "XenMemoryMap",
        "struct xen_memory_map",
        fields!(XenMemoryMap; nr_entries, _pad0: "", buffer),
    );
    c.layout::<XenForeignMemoryMap>(
        "XenForeignMemoryMap",
        "struct xen_foreign_memory_map",
        fields!(XenForeignMemoryMap; domid, _pad0: "", map),
    );
    c.layout::<XenMemAcquireResource>(
        "XenMemAcquireResource",
        "struct xen_mem_acquire_resource",
        fields!(XenMemAcquireResource; domid, type_: "type", id, nr_frames, pad, frame, frame_list),
    );
    c.rust_only_layout::<E820Entry>("E820Entry", fields!(E820Entry; addr, size, type_));

    // grant_table.h
    c.layout::<GrantEntryV1>(
        "GrantEntryV1",
        "struct grant_entry_v1",
        fields!(GrantEntryV1; flags, domid, frame),
    );
    c.layout::<GrantEntryHeader>(
        "GrantEntryHeader",
        "struct grant_entry_header",
        fields!(GrantEntryHeader; flags, domid),
    );
    c.layout::<GrantEntryV2>(
        "GrantEntryV2",
        "union grant_entry_v2",
        fields!(GrantEntryV2; hdr, word1: "", frame: "", hdr.flags: "hdr.flags",
            word1: "full_page.pad0", frame: "full_page.frame", word1: "sub_page.page_off",
            frame: "sub_page.frame", word1: "transitive.trans_domid", frame: "transitive.gref"),
    );
    c.num(
        "offset_of!(GrantEntryV2, word1) + 2",
        "offsetof(union grant_entry_v2, sub_page.length)",
        offset_of!(GrantEntryV2, word1) as i128 + 2,
    );
    c.layout::<GntTabMapGrantRef>(
        "GntTabMapGrantRef",
        "struct gnttab_map_grant_ref",
        fields!(GntTabMapGrantRef; host_addr, flags, ref_: "ref", dom, status, handle, dev_bus_addr),
    );
    c.layout::<GntTabUnmapGrantRef>(
        "GntTabUnmapGrantRef",
        "struct gnttab_unmap_grant_ref",
        fields!(GntTabUnmapGrantRef; host_addr, dev_bus_addr, handle, status, _pad0: ""),
    );
    c.layout::<GntTabSetupTable>(
        "GntTabSetupTable",
        "struct gnttab_setup_table",
        fields!(GntTabSetupTable; dom, _pad0: "", nr_frames, status, _pad1: "", frame_list),
    );
    c.layout::<GntTabDumpTable>(
        "GntTabDumpTable",
        "struct gnttab_dump_table",
        fields!(GntTabDumpTable; dom, status),
    );
    c.layout::<GntTabTransfer>(
        "GntTabTransfer",
        "struct gnttab_transfer",
        fields!(GntTabTransfer; mfn, domid, _pad0: "", ref_: "ref", status, _pad1: ""),
    );
    c.layout::<GntTabCopyPtr>(
        "GntTabCopyPtr",
        "struct gnttab_copy_ptr",
        fields!(GntTabCopyPtr; u, u: "u.ref", u: "u.gmfn", domid, offset, _pad0: ""),
    );
    c.layout::<GntTabCopy>(
        "GntTabCopy",
        "struct gnttab_copy",
        fields!(GntTabCopy; source, dest, len, flags, status, _pad0: ""),
    );
    c.layout::<GntTabQuerySize>(
        "GntTabQuerySize",
        "struct gnttab_query_size",
        fields!(GntTabQuerySize; dom, _pad0: "", nr_frames, max_nr_frames, status, _pad1: ""),
    );
    c.layout::<GntTabUnmapAndReplace>(
        "GntTabUnmapAndReplace",
        "struct gnttab_unmap_and_replace",
        fields!(GntTabUnmapAndReplace; host_addr, new_addr, handle, status, _pad0: ""),
    );
    c.layout::<GntTabSetVersion>(
        "GntTabSetVersion",
        "struct gnttab_set_version",
        fields!(GntTabSetVersion; version),
    );
    c.layout::<GntTabGetStatusFrames>(
        "GntTabGetStatusFrames",
        "struct gnttab_get_status_frames",
        fields!(GntTabGetStatusFrames; nr_frames, dom, status, frame_list),
    );
    c.layout::<GntTabGetVersion>(
        "GntTabGetVersion",
        "struct gnttab_get_version",
        fields!(GntTabGetVersion; dom, pad, version),
    );
    c.layout::<GntTabSwapGrantRef>(
        "GntTabSwapGrantRef",
        "struct gnttab_swap_grant_ref",
        fields!(GntTabSwapGrantRef; ref_a, ref_b, status, _pad0: ""),
    );
    c.layout::<GntTabCacheFlush>(
        "GntTabCacheFlush",
        "struct gnttab_cache_flush",
        fields!(GntTabCacheFlush; a, a: "a.dev_bus_addr", a: "a.ref", offset, length, op),
    );

    // version.h
    c.layout::<XenFeatureInfo>(
        "XenFeatureInfo",
        "struct xen_feature_info",
        fields!(XenFeatureInfo; submap_idx, submap),
    );
    c.layout::<XenPlatformParameters>(
        "XenPlatformParameters",
        "struct xen_platform_parameters",
        fields!(XenPlatformParameters; virt_start),
    );
    c.layout::<XenBuildId>(
        "XenBuildId",
        "struct xen_build_id",
        fields!(XenBuildId; len),
    );
    c.layout::<XenExtraversion>(
        "XenExtraversion",
        "xen_extraversion_t",
        whole::<XenExtraversion>(),
    );
    c.layout::<XenCapabilitiesInfo>(
        "XenCapabilitiesInfo",
        "xen_capabilities_info_t",
        whole::<XenCapabilitiesInfo>(),
    );
    c.layout::<XenChangesetInfo>(
        "XenChangesetInfo",
        "xen_changeset_info_t",
        whole::<XenChangesetInfo>(),
    );
    c.layout::<XenCommandline>(
        "XenCommandline",
        "xen_commandline_t",
        whole::<XenCommandline>(),
    );
    c.layout::<XenCompileInfo>(
        "XenCompileInfo",
        "struct xen_compile_info",
        fields!(XenCompileInfo; compiler, compile_by, compile_domain, compile_date),
    );

    // physdev.h
    c.layout::<PhysdevEoi>("PhysdevEoi", "struct physdev_eoi", fields!(PhysdevEoi; irq));
    c.layout::<PhysdevPirqEoiGmfn>(
        "PhysdevPirqEoiGmfn",
        "struct physdev_pirq_eoi_gmfn",
        fields!(PhysdevPirqEoiGmfn; gmfn),
    );
    c.layout::<PhysdevIrqStatusQuery>(
        "PhysdevIrqStatusQuery",
        "struct physdev_irq_status_query",
        fields!(PhysdevIrqStatusQuery; irq, flags),
    );
    c.layout::<PhysdevSetIopl>(
        "PhysdevSetIopl",
        "struct physdev_set_iopl",
        fields!(PhysdevSetIopl; iopl),
    );
    c.layout::<PhysdevSetIobitmap>(
        "PhysdevSetIobitmap",
        "struct physdev_set_iobitmap",
        fields!(PhysdevSetIobitmap; bitmap, nr_ports, _pad0: ""),
    );
    c.layout::<PhysdevApic>(
        "PhysdevApic",
        "struct physdev_apic",
        fields!(PhysdevApic; apic_physbase, reg, value),
    );
    c.layout::<PhysdevIrq>(
        "PhysdevIrq",
        "struct physdev_irq",
        fields!(PhysdevIrq; irq, vector),
    );
    c.layout::<PhysdevMapPirq>(
        "PhysdevMapPirq",
        "struct physdev_map_pirq",
        fields!(PhysdevMapPirq; domid, _pad0: "", type_: "type", index, pirq, bus, devfn,
            entry_nr, _pad1: "", table_base),
    );
    c.layout::<PhysdevUnmapPirq>(
        "PhysdevUnmapPirq",
        "struct physdev_unmap_pirq",
        fields!(PhysdevUnmapPirq; domid, _pad0: "", pirq),
    );
    c.layout::<PhysdevManagePci>(
        "PhysdevManagePci",
        "struct physdev_manage_pci",
        fields!(PhysdevManagePci; bus, devfn),
    );
    c.layout::<PhysdevManagePci>(
        "PhysdevManagePci (as physdev_restore_msi)",
        "struct physdev_restore_msi",
        fields!(PhysdevManagePci; bus, devfn),
    );
    c.layout::<PhysdevPhysfn>(
        "PhysdevPhysfn",
        "__typeof__(((struct physdev_manage_pci_ext *)0)->physfn)",
        fields!(PhysdevPhysfn; bus, devfn),
    );
    c.layout::<PhysdevManagePciExt>(
        "PhysdevManagePciExt",
        "struct physdev_manage_pci_ext",
        fields!(PhysdevManagePciExt; bus, devfn, _pad0: "", is_extfn, is_virtfn, physfn,
            _pad1: ""),
    );
    c.layout::<PhysdevSetupGsi>(
        "PhysdevSetupGsi",
        "struct physdev_setup_gsi",
        fields!(PhysdevSetupGsi; gsi, triggering, polarity, _pad0: ""),
    );
    c.layout::<PhysdevGetFreePirq>(
        "PhysdevGetFreePirq",
        "struct physdev_get_free_pirq",
        fields!(PhysdevGetFreePirq; type_: "type", pirq),
    );
    c.layout::<PhysdevPciMmcfgReserved>(
        "PhysdevPciMmcfgReserved",
        "struct physdev_pci_mmcfg_reserved",
        fields!(PhysdevPciMmcfgReserved; address, segment, start_bus, end_bus, flags),
    );
    c.layout::<PhysdevPciDeviceAdd>(
        "PhysdevPciDeviceAdd",
        "struct physdev_pci_device_add",
        fields!(PhysdevPciDeviceAdd; seg, bus, devfn, flags, physfn, _pad0: ""),
    );
    c.num(
        "size_of::<PhysdevPciDeviceAdd>()",
        "offsetof(struct physdev_pci_device_add, optarr)",
        size_of::<PhysdevPciDeviceAdd>() as i128,
    );
    c.layout::<PhysdevPciDevice>(
        "PhysdevPciDevice",
        "struct physdev_pci_device",
        fields!(PhysdevPciDevice; seg, bus, devfn),
    );
    c.layout::<PhysdevDbgpOp>(
        "PhysdevDbgpOp",
        "struct physdev_dbgp_op",
        fields!(PhysdevDbgpOp; op, bus, pci: "u.pci"),
    );

    // io/ring.h
    c.layout_with_size::<SringHeader>(
        "SringHeader",
        "struct netif_rx_sring",
        "offsetof(struct netif_rx_sring, ring)",
        fields!(SringHeader; req_prod, req_event, rsp_prod, rsp_event, pvt, pad: "__pad",
            pvt: "pvt.pvt_pad", pvt: "pvt.netif.smartpoll_active"),
    );

    // io/console.h
    c.layout::<XenconsInterface>(
        "XenconsInterface",
        "struct xencons_interface",
        fields!(XenconsInterface; in_: "in", out, in_cons, in_prod, out_cons, out_prod),
    );

    // io/xs_wire.h: evtchn_port is newer than some installed headers; when
    // the header lacks it, the C struct must end exactly where it starts.
    c.layout::<XsdSockmsg>(
        "XsdSockmsg",
        "struct xsd_sockmsg",
        fields!(XsdSockmsg; type_: "type", req_id, tx_id, len),
    );
    c.layout_with_size::<XenstoreDomainInterface>(
        "XenstoreDomainInterface",
        "struct xenstore_domain_interface",
        "sizeof(struct xenstore_domain_interface) + \
         (sizeof(struct xenstore_domain_interface) == 2076 ? 4 : 0)",
        fields!(XenstoreDomainInterface; req, rsp, req_cons, req_prod, rsp_cons, rsp_prod,
            server_features, connection, error, evtchn_port: ""),
    );
    c.num(
        "offset_of!(XenstoreDomainInterface, evtchn_port)",
        "offsetof(struct xenstore_domain_interface, error) + 4",
        offset_of!(XenstoreDomainInterface, evtchn_port) as i128,
    );

    // io/blkif.h
    c.layout::<BlkifRequestSegment>(
        "BlkifRequestSegment",
        "struct blkif_request_segment",
        fields!(BlkifRequestSegment; gref, first_sect, last_sect, _pad0: ""),
    );
    c.layout::<BlkifRequest>(
        "BlkifRequest",
        "struct blkif_request",
        fields!(BlkifRequest; operation, nr_segments, handle, _pad0: "", id, sector_number, seg),
    );
    c.layout::<BlkifRequestDiscard>(
        "BlkifRequestDiscard",
        "struct blkif_request_discard",
        fields!(BlkifRequestDiscard; operation, flag, handle, _pad0: "", id, sector_number,
            nr_sectors),
    );
    c.layout::<BlkifRequestIndirect>(
        "BlkifRequestIndirect",
        "struct blkif_request_indirect",
        fields!(BlkifRequestIndirect; operation, indirect_op, nr_segments, _pad0: "", id,
            sector_number, handle, _pad1: "", indirect_grefs, _pad2: ""),
    );
    c.layout::<BlkifResponse>(
        "BlkifResponse",
        "struct blkif_response",
        fields!(BlkifResponse; id, operation, _pad0: "", status, _pad1: ""),
    );

    // io/netif.h
    c.layout::<NetifTxRequest>(
        "NetifTxRequest",
        "struct netif_tx_request",
        fields!(NetifTxRequest; gref, offset, flags, id, size),
    );
    c.layout::<NetifExtraInfo>(
        "NetifExtraInfo",
        "struct netif_extra_info",
        fields!(NetifExtraInfo; _align: "", type_: "type", flags, u, u: "u.gso.size",
            u: "u.mcast.addr", u: "u.hash.type", u: "u.pad"),
    );
    c.num(
        "offset_of!(NetifExtraInfo, u) + 4",
        "offsetof(struct netif_extra_info, u.gso.features)",
        offset_of!(NetifExtraInfo, u) as i128 + 4,
    );
    c.layout::<NetifTxResponse>(
        "NetifTxResponse",
        "struct netif_tx_response",
        fields!(NetifTxResponse; id, status),
    );
    c.layout::<NetifRxRequest>(
        "NetifRxRequest",
        "struct netif_rx_request",
        fields!(NetifRxRequest; id, pad, gref),
    );
    c.layout::<NetifRxResponse>(
        "NetifRxResponse",
        "struct netif_rx_response",
        fields!(NetifRxResponse; id, offset, flags, status),
    );
    c.layout::<XenNetifCtrlRequest>(
        "XenNetifCtrlRequest",
        "struct xen_netif_ctrl_request",
        fields!(XenNetifCtrlRequest; id, type_: "type", data),
    );
    c.layout::<XenNetifCtrlResponse>(
        "XenNetifCtrlResponse",
        "struct xen_netif_ctrl_response",
        fields!(XenNetifCtrlResponse; id, type_: "type", status, data),
    );
    c.layout::<XenNetifGref>(
        "XenNetifGref",
        "struct xen_netif_gref",
        fields!(XenNetifGref; ref_: "ref", flags, status),
    );
}

fn add_tables(c: &mut Checks) {
    // Enumerations.
    for t in XsSockmsgType::ALL {
        c.num(format!("XsSockmsgType::{t:?}"), t.name(), t as i128);
    }
    c.num("XS_DEBUG", "XS_DEBUG", XS_DEBUG as i128);
    for s in XenbusState::ALL {
        c.num(
            format!("XenbusState::{s:?}"),
            format!("XenbusState{s:?}"),
            s as i128,
        );
    }

    // Strings.
    let strs: &[(&str, &str)] = &[
        ("XS_WRITE_NONE", XS_WRITE_NONE),
        ("XS_WRITE_CREATE", XS_WRITE_CREATE),
        ("XS_WRITE_CREATE_EXCL", XS_WRITE_CREATE_EXCL),
        ("XEN_IO_PROTO_ABI_X86_32", XEN_IO_PROTO_ABI_X86_32),
        ("XEN_IO_PROTO_ABI_X86_64", XEN_IO_PROTO_ABI_X86_64),
        ("XEN_IO_PROTO_ABI_ARM", XEN_IO_PROTO_ABI_ARM),
        ("XEN_IO_PROTO_ABI_NATIVE", XEN_IO_PROTO_ABI_NATIVE),
    ];
    for (name, v) in strs {
        c.str(*name, *name, v);
    }
    let prefix: Vec<String> = XEN_EMULATE_PREFIX
        .iter()
        .map(|b| format!("0x{b:02x}"))
        .collect();
    c.str(
        "XEN_EMULATE_PREFIX",
        "XEN_EMULATE_PREFIX",
        &format!(".byte {} ; ", prefix.join(",")),
    );

    // The xsd_errors table.
    c.num(
        "XSD_ERRORS.len()",
        "sizeof(xsd_errors) / sizeof(xsd_errors[0])",
        XSD_ERRORS.len() as i128,
    );
    for (i, (num, name)) in XSD_ERRORS.iter().enumerate() {
        c.num(
            format!("XSD_ERRORS[{i}].0"),
            format!("xsd_errors[{i}].errnum"),
            *num as i128,
        );
        c.str(
            format!("XSD_ERRORS[{i}].1"),
            format!("xsd_errors[{i}].errstring"),
            name,
        );
    }

    // The grant status messages.
    let msgs = "((const char *[])GNTTABOP_error_msgs)";
    c.num(
        "GNTTABOP_ERROR_MSGS.len()",
        format!("sizeof({msgs}) / sizeof(char *)"),
        GNTTABOP_ERROR_MSGS.len() as i128,
    );
    for (i, m) in GNTTABOP_ERROR_MSGS.iter().enumerate() {
        c.str(
            format!("GNTTABOP_ERROR_MSGS[{i}]"),
            format!("{msgs}[{i}]"),
            m,
        );
    }

    // The ring size rule, for one- and two-page rings and many entry sizes.
    for bytes in [4096usize, 8192] {
        for entry in 1..=200usize {
            c.num(
                format!("ring_size({bytes}, {entry})"),
                format!("__RD32(({bytes} - 64) / {entry})"),
                ring_size(bytes, entry) as i128,
            );
        }
    }

    // Hypercall name table agrees with the numbers.
    for (nr, name) in HYPERCALL_NAMES {
        c.num(
            format!("HYPERCALL_NAMES[{name}]"),
            format!("__HYPERVISOR_{name}"),
            *nr as i128,
        );
    }
}

fn require_toolchain() {
    let xen_h = Path::new("/usr/include/xen/xen.h");
    assert!(
        xen_h.exists(),
        "Xen public headers not found at {} -- install them: {INSTALL_HINT}",
        xen_h.display()
    );
    match Command::new("gcc").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("`gcc --version` failed ({}) -- {INSTALL_HINT}", o.status),
        Err(e) => panic!("cannot run gcc ({e}) -- install it: {INSTALL_HINT}"),
    }
}

fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("xen-abi-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn header_macros(dir: &Path) -> BTreeSet<String> {
    let src = dir.join("macros.c");
    std::fs::write(&src, PRELUDE).unwrap();
    let out = Command::new("gcc")
        .args(["-dM", "-E"])
        .arg(&src)
        .output()
        .expect("run gcc -dM -E");
    assert!(
        out.status.success(),
        "gcc could not preprocess the Xen headers ({INSTALL_HINT}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .filter_map(|l| {
            let name: String = l
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // Skip function-like macros.
            (l[name.len()..].starts_with(' ') || l.len() == name.len()).then_some(name)
        })
        .collect()
}

fn c_literal(s: &str) -> String {
    format!("{s:?}")
}

#[test]
fn layouts_and_constants_match_xen_headers() {
    require_toolchain();
    let dir = work_dir();
    let macros = header_macros(&dir);

    let mut c = Checks::default();
    let mut failures = Vec::new();

    // Constants by name.
    let by_rust: HashMap<String, Vec<&String>> =
        macros.iter().fold(HashMap::new(), |mut m, name| {
            m.entry(rust_name_of_macro(name)).or_default().push(name);
            m
        });
    let consts = numeric_constants();
    let rust_names: BTreeSet<&str> = consts.iter().map(|(n, _)| *n).collect();
    for (rust, value) in &consts {
        if let Some(expr) = c_override(rust) {
            c.num(*rust, expr, *value);
        } else if C_ENUM_CONSTANTS.contains(rust) {
            c.num(*rust, *rust, *value);
        } else if let Some(names) = by_rust.get(*rust) {
            for name in names {
                c.num(format!("{rust} (C {name})"), name.as_str(), *value);
            }
        } else if rust.starts_with("XEN_E") && !RUST_ONLY.iter().any(|(n, _)| n == rust) {
            // errno.h values are enum constants with the same name.
            c.num(*rust, *rust, *value);
        } else if !RUST_ONLY.iter().any(|(n, _)| n == rust) {
            failures.push(format!(
                "{rust}: no header macro of that name; add a c_override or a RUST_ONLY entry"
            ));
        }
    }

    // Completeness: header macros under checked prefixes must exist in Rust.
    let str_names = [
        "XS_WRITE_NONE",
        "XS_WRITE_CREATE",
        "XS_WRITE_CREATE_EXCL",
        "XS_DEBUG",
        "XEN_IO_PROTO_ABI_X86_32",
        "XEN_IO_PROTO_ABI_X86_64",
        "XEN_IO_PROTO_ABI_ARM",
        "XEN_IO_PROTO_ABI_NATIVE",
    ];
    for m in &macros {
        if !COMPLETE_PREFIXES.iter().any(|p| m.starts_with(p)) || NOT_MIRRORED.contains(&m.as_str())
        {
            continue;
        }
        let r = rust_name_of_macro(m);
        if !rust_names.contains(r.as_str()) && !str_names.contains(&r.as_str()) {
            failures.push(format!("header macro {m} has no Rust constant {r}"));
        }
    }

    add_structs(&mut c);
    add_tables(&mut c);
    failures.append(&mut c.rust_failures);

    // Generate, compile and run the C program.
    let mut src = String::from(PRELUDE);
    src.push_str("\nint main(void)\n{\n");
    for (i, chk) in c.list.iter().enumerate() {
        match chk.expect {
            Expect::Num(_) => writeln!(
                src,
                "    printf(\"%d %llu\\n\", {i}, (unsigned long long)({}));",
                chk.c_expr
            ),
            Expect::Str(_) => writeln!(src, "    printf(\"%d %s\\n\", {i}, {});", chk.c_expr),
        }
        .unwrap();
    }
    src.push_str("    return 0;\n}\n");
    let c_file = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&c_file, &src).unwrap();
    let out = Command::new("gcc")
        .args(["-std=gnu11", "-O0", "-o"])
        .arg(&exe)
        .arg(&c_file)
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc failed to compile {} against the Xen headers ({INSTALL_HINT}):\n{}",
        c_file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&exe)
        .output()
        .expect("run the compiled layout program");
    assert!(
        out.status.success(),
        "{} failed: {}",
        exe.display(),
        out.status
    );
    let stdout = String::from_utf8(out.stdout).unwrap();

    let mut seen = vec![false; c.list.len()];
    for line in stdout.lines() {
        let (idx, got) = line.split_once(' ').unwrap_or((line, ""));
        let idx: usize = idx.parse().expect("index from the C program");
        seen[idx] = true;
        let chk = &c.list[idx];
        match &chk.expect {
            Expect::Num(want) => {
                let got: u64 = got.parse().expect("number from the C program");
                if got != *want {
                    failures.push(format!(
                        "{}: Rust {} (0x{:x}) but C `{}` = {} (0x{:x})",
                        chk.what, *want as i64, want, chk.c_expr, got as i64, got
                    ));
                }
            }
            Expect::Str(want) => {
                if got != want {
                    failures.push(format!(
                        "{}: Rust {} but C `{}` = {}",
                        chk.what,
                        c_literal(want),
                        chk.c_expr,
                        c_literal(got)
                    ));
                }
            }
        }
    }
    for (i, s) in seen.iter().enumerate() {
        if !s {
            failures.push(format!("{}: no output from the C program", c.list[i].what));
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {} checks against the Xen headers failed:\n  {}\n(C source: {})",
        failures.len(),
        c.list.len(),
        failures.join("\n  "),
        c_file.display()
    );
    eprintln!("{} checks against /usr/include/xen passed", c.list.len());
    let _ = std::fs::remove_dir_all(&dir);
}
