//! The Xen PV machine on KVM: domain builder, CPL0 shim, trap paths,
//! hypercalls, MMU, event channels, grants and time.

/// Guest-physical and virtual placement of rxen's own pages.
pub mod layout;
/// The CPL0 shim copied into every domain.
pub mod shim;
/// Bounds-checked access to guest-physical memory.
pub mod mem;
/// Walking the guest's page tables.
pub mod paging;
/// CPUID as the guest sees it.
pub mod cpuid;
/// KVM VM, memory slot, hypervisor area and vCPU base state.
pub mod machine;
/// Start-of-day memory layout and start_info.
pub mod builder;
/// Two-level event channels.
pub mod events;
/// pvclock and wallclock.
pub mod time;
/// State shared by a domain's threads.
pub mod domain;
/// The vCPU loop and resume paths.
pub mod vcpu;
/// Exception, syscall and iret paths.
pub mod traps;
/// MMU hypercalls and page-table invariants.
pub mod mmu;
/// Emulation of faulting guest instructions.
pub mod emulate;
/// Hypercall dispatch.
pub mod hypercall;
/// Event channel and grant table hypercalls.
pub mod evtchn_op;
/// Building and running a domain.
pub mod launch;
