//! Callback registration (`xen/callback.h`): `HYPERVISOR_callback_op(cmd, arg)`.

/// Event upcall (event channel delivery).
pub const CALLBACKTYPE_EVENT: u16 = 0;
/// Failsafe: a bad segment was found while returning to the guest.
pub const CALLBACKTYPE_FAILSAFE: u16 = 1;
/// x86-64: 64-bit `syscall` from guest user mode.
pub const CALLBACKTYPE_SYSCALL: u16 = 2;
/// x86-32 only; 32-bit `sysenter` before interface 0x00030207.
pub const CALLBACKTYPE_SYSENTER_DEPRECATED: u16 = 3;
/// NMI.
pub const CALLBACKTYPE_NMI: u16 = 4;
/// x86-64: `sysenter` from 32-bit user mode.
pub const CALLBACKTYPE_SYSENTER: u16 = 5;
/// x86-64: `syscall` from 32-bit user mode.
pub const CALLBACKTYPE_SYSCALL32: u16 = 7;

/// Mask events (set `evtchn_upcall_mask`) when entering the callback.
pub const CALLBACKF_MASK_EVENTS: u16 = 1 << 0;

/// [`CallbackRegister`].
pub const CALLBACKOP_REGISTER: u32 = 0;
/// [`CallbackUnregister`].
pub const CALLBACKOP_UNREGISTER: u32 = 1;

pod!(
    /// `struct callback_register`.
    CallbackRegister, 16, {
        /// `CALLBACKTYPE_*` (`type` in C).
        type_: u16,
        /// `CALLBACKF_*`.
        flags: u16,
        _pad0: u32,
        /// Entry point (`xen_callback_t`: a plain address on x86-64).
        address: u64,
    }
);

pod!(
    /// `struct callback_unregister`.
    CallbackUnregister, 4, {
        /// `CALLBACKTYPE_*` (`type` in C).
        type_: u16,
        _unused: u16,
    }
);
