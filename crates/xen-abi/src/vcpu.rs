//! vCPU operations (`xen/vcpu.h`): `HYPERVISOR_vcpu_op(cmd, vcpuid, arg)`.

use crate::xen::GuestHandle;

/// Initialise a vCPU from a [`crate::VcpuGuestContext`]; it stays down.
pub const VCPUOP_INITIALISE: u32 = 0;
/// Bring an initialised vCPU up.
pub const VCPUOP_UP: u32 = 1;
/// Take a vCPU down.
pub const VCPUOP_DOWN: u32 = 2;
/// Returns 1 if the vCPU is up, 0 if down.
pub const VCPUOP_IS_UP: u32 = 3;
/// Copy a [`VcpuRunstateInfo`] to the argument.
pub const VCPUOP_GET_RUNSTATE_INFO: u32 = 4;
/// Register a guest area the hypervisor keeps updated with
/// [`VcpuRunstateInfo`] ([`VcpuRegisterRunstateMemoryArea`]).
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
/// [`VcpuSetPeriodicTimer`].
pub const VCPUOP_SET_PERIODIC_TIMER: u32 = 6;
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
/// [`VcpuSetSingleshotTimer`].
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
/// Move `vcpu_info` out of `shared_info` ([`VcpuRegisterVcpuInfo`]).
pub const VCPUOP_REGISTER_VCPU_INFO: u32 = 10;
pub const VCPUOP_SEND_NMI: u32 = 11;
/// [`VcpuGetPhysid`].
pub const VCPUOP_GET_PHYSID: u32 = 12;
/// Register a second [`crate::VcpuTimeInfo`] copy, for user-space vDSO use
/// ([`VcpuRegisterTimeMemoryArea`]).
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u32 = 13;

/// Runstate: running on a physical CPU.
pub const RUNSTATE_RUNNING: i32 = 0;
/// Runstate: runnable, waiting for a physical CPU.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// Runstate: blocked (waiting for an event).
pub const RUNSTATE_BLOCKED: i32 = 2;
/// Runstate: offline (down, or paused by the toolstack).
pub const RUNSTATE_OFFLINE: i32 = 3;

/// Set in `state_entry_time` while the hypervisor updates the runstate area
/// (with `VMASST_TYPE_RUNSTATE_UPDATE_FLAG`).
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

/// Only fire the single-shot timer if the timeout is in the future (else
/// fail with `-XEN_ETIME`).
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

/// `struct vcpu_runstate_info` (48 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRunstateInfo {
    /// `RUNSTATE_*`.
    pub state: i32,
    pub _pad0: u32,
    /// System time (ns) when `state` was entered.
    pub state_entry_time: u64,
    /// Nanoseconds spent in each `RUNSTATE_*`.
    pub time: [u64; 4],
}
const _: () = assert!(size_of::<VcpuRunstateInfo>() == 48);
// SAFETY: plain-old-data: integers with explicit padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for VcpuRunstateInfo {}

/// `struct vcpu_register_runstate_memory_area`: a guest virtual address
/// (the C union of handle, pointer and `uint64_t p`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterRunstateMemoryArea {
    pub addr: GuestHandle,
}
const _: () = assert!(size_of::<VcpuRegisterRunstateMemoryArea>() == 8);
// SAFETY: plain-old-data: one u64, every bit pattern valid.
unsafe impl vm_memory::ByteValued for VcpuRegisterRunstateMemoryArea {}

/// `struct vcpu_set_periodic_timer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetPeriodicTimer {
    pub period_ns: u64,
}
const _: () = assert!(size_of::<VcpuSetPeriodicTimer>() == 8);
// SAFETY: plain-old-data: one u64, every bit pattern valid.
unsafe impl vm_memory::ByteValued for VcpuSetPeriodicTimer {}

/// `struct vcpu_set_singleshot_timer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time (ns) of the timeout.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
    pub _pad0: u32,
}
const _: () = assert!(size_of::<VcpuSetSingleshotTimer>() == 16);
// SAFETY: plain-old-data: integers with explicit padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for VcpuSetSingleshotTimer {}

/// `struct vcpu_register_vcpu_info`: place this vCPU's [`crate::VcpuInfo`]
/// at `offset` within machine frame `mfn` (must not cross a page).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterVcpuInfo {
    pub mfn: u64,
    pub offset: u32,
    pub rsvd: u32,
}
const _: () = assert!(size_of::<VcpuRegisterVcpuInfo>() == 16);
// SAFETY: plain-old-data: integers, no padding, every bit pattern valid.
unsafe impl vm_memory::ByteValued for VcpuRegisterVcpuInfo {}

/// `struct vcpu_get_physid`: low 32 bits APIC id, high 32 bits ACPI id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuGetPhysid {
    pub phys_id: u64,
}
const _: () = assert!(size_of::<VcpuGetPhysid>() == 8);
// SAFETY: plain-old-data: one u64, every bit pattern valid.
unsafe impl vm_memory::ByteValued for VcpuGetPhysid {}

/// `struct vcpu_register_time_memory_area`: a guest virtual address of a
/// [`crate::VcpuTimeInfo`] (the C union of handle, pointer and `uint64_t p`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterTimeMemoryArea {
    pub addr: GuestHandle,
}
const _: () = assert!(size_of::<VcpuRegisterTimeMemoryArea>() == 8);
// SAFETY: plain-old-data: one u64, every bit pattern valid.
unsafe impl vm_memory::ByteValued for VcpuRegisterTimeMemoryArea {}
