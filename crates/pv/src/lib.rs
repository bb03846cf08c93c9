//! The Xen PV machine on KVM: domain builder, CPL0 shim, trap paths,
//! hypercalls, MMU, event channels, grants and time.

/// Kernel parameters rxen adds to a guest's command line, and why.
pub mod boot_params;
/// Start-of-day memory layout and start_info.
pub mod builder;
/// CPUID as the guest sees it.
pub mod cpuid;
/// State shared by a domain's threads.
pub mod domain;
/// Emulation of faulting guest instructions.
pub mod emulate;
/// Two-level event channels.
pub mod events;
/// The event channel hypercall.
pub mod evtchn_op;
/// Grant tables v1 and checked backend access to granted pages.
pub mod grant;
/// The grant table hypercall.
pub mod grant_op;
/// How the host schedules a vCPU thread (a Xen-like time slice).
pub mod host_sched;
/// Hypercall dispatch.
pub mod hypercall;
/// KVM's own per-vCPU counters (binary stats fd).
pub mod kvm_stats;
/// Building and running a domain.
pub mod launch;
/// Guest-physical and virtual placement of rxen's own pages.
pub mod layout;
/// KVM VM, memory slot, hypervisor area and vCPU base state.
pub mod machine;
/// Bounds-checked access to guest-physical memory.
pub mod mem;
/// MMU hypercalls and page-table invariants.
pub mod mmu;
/// Walking the guest's page tables.
pub mod paging;
/// The CPL0 shim copied into every domain.
pub mod shim;
/// pvclock and wallclock.
pub mod time;
/// Exception, syscall and iret paths.
pub mod traps;
/// The vCPU loop and resume paths.
pub mod vcpu;
/// The single-shot timer, signalling the vCPU thread itself.
pub mod vcpu_timer;
