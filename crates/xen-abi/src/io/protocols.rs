//! Ring ABI names a frontend writes to its `protocol` xenstore node
//! (`xen/io/protocols.h`).

pub const XEN_IO_PROTO_ABI_X86_32: &str = "x86_32-abi";
pub const XEN_IO_PROTO_ABI_X86_64: &str = "x86_64-abi";
pub const XEN_IO_PROTO_ABI_ARM: &str = "arm-abi";
/// The native ABI of an x86-64 guest.
pub const XEN_IO_PROTO_ABI_NATIVE: &str = XEN_IO_PROTO_ABI_X86_64;
