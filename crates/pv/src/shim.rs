//! The CPL0 shim: the only code that runs at hardware CPL0 in a PV domain.
//!
//! Every instruction here is emulated by the host (~0.25 µs each, DESIGN.md),
//! so the shim does as little as possible and no decisions at all:
//!
//! * each IDT vector `v` (0..=254) is a 2-byte `out %al, $v`: the exit to the
//!   VMM carries the vector as the port number and clobbers no register; the
//!   hardware frame sits on the CPL0 stack where the VMM reads it;
//! * SYSCALL does not reach CPL0 on this host (the PVM host runs LSTAR's
//!   code at CPL3), so LSTAR points at a supervisor-only trampoline page:
//!   fetching it from CPL3 raises #PF, which enters the shim like any other
//!   vector, with RCX/R11 still holding what SYSCALL put there; the frame's
//!   RIP equal to the trampoline tells it apart from a real #PF. (A `ud2`
//!   in a user-accessible trampoline works too but costs ~8 µs more per
//!   call: docs/trap-paths.md, variants 2 and 4.);
//! * after handling an exit, the VMM points RIP at one of the resume paths
//!   below and RSP at an `iretq` frame it wrote on the CPL0 stack. The resume
//!   paths optionally apply queued page-table writes (through the direct map,
//!   so the host's shadow MMU sees them), swap GS, load CR3, and `iretq`.
//!
//! The blob is position independent: code and data are copied together into
//! the hypervisor area, data addressed RIP-relative.

use std::arch::global_asm;

/// Vector a SYSCALL raises on reaching the trampoline (#PF).
pub const SYSCALL_VECTOR: u8 = 14;
/// Offset of the SYSCALL trampoline (LSTAR; its own supervisor-only page,
/// never executed) from the start of the shim.
pub const SYSCALL_TRAMP: u64 = 4096;

/// Offsets of resume parameters inside the shim data page(s).
pub mod data {
    /// CR3 to load on the `CR3` resume paths.
    pub const NEXT_CR3: u64 = 0x00;
    /// Guest RAX, restored after the shim used RAX as scratch.
    pub const SAVED_RAX: u64 = 0x08;
    pub const SAVED_RCX: u64 = 0x10;
    pub const SAVED_RDX: u64 = 0x18;
    /// Non-zero: the page-table write path ends with `swapgs`.
    pub const SWAPGS: u64 = 0x20;
    /// Non-zero: the page-table write path ends with a CR3 load.
    pub const LOAD_CR3: u64 = 0x28;
    /// Page-table write list: (virtual address, value) pairs, ended by
    /// address 0. An address with bit 0 set means `invlpg (address - 1)`.
    pub const PTW_LIST: u64 = 0x100;
    /// Capacity of the list (the terminator takes one slot).
    pub const PTW_CAPACITY: usize = ((4 * 4096 - 0x100) / 16) - 1;
}

global_asm!(
    r#"
    .pushsection .rodata.rxen_shim, "a"
    .balign 4096
    .globl rxen_shim_start
rxen_shim_start:
    .set vec, 0
    .rept 256
    .balign 8
    out %al, $vec
    ud2
    .set vec, vec + 1
    .endr

    .balign 16
    .globl rxen_shim_resume_iret
rxen_shim_resume_iret:
    iretq

    .balign 16
    .globl rxen_shim_resume_swapgs_cr3
rxen_shim_resume_swapgs_cr3:
    swapgs
    .globl rxen_shim_resume_cr3
rxen_shim_resume_cr3:
    mov rxen_shim_data + 0x00(%rip), %rax
    mov %rax, %cr3
    mov rxen_shim_data + 0x08(%rip), %rax
    iretq

    .balign 16
    .globl rxen_shim_resume_ptw
rxen_shim_resume_ptw:
    lea rxen_shim_data + 0x100(%rip), %rcx
1:
    mov (%rcx), %rax
    test %rax, %rax
    jz 2f
    test $1, %al
    jnz 3f
    mov 8(%rcx), %rdx
    mov %rdx, (%rax)
    add $16, %rcx
    jmp 1b
3:
    invlpg -1(%rax)
    add $16, %rcx
    jmp 1b
2:
    mov rxen_shim_data + 0x10(%rip), %rcx
    mov rxen_shim_data + 0x18(%rip), %rdx
    testb $1, rxen_shim_data + 0x28(%rip)
    jz 4f
    testb $1, rxen_shim_data + 0x20(%rip)
    jz rxen_shim_resume_cr3
    jmp rxen_shim_resume_swapgs_cr3
4:
    mov rxen_shim_data + 0x08(%rip), %rax
    iretq

    .globl rxen_shim_code_end
rxen_shim_code_end:
    .balign 4096
    .globl rxen_syscall_tramp
rxen_syscall_tramp:
    ud2
    .balign 4096
    .org rxen_shim_start + 2 * 4096
rxen_shim_data:
    .fill 4 * 4096, 1, 0
    .globl rxen_shim_end
rxen_shim_end:
    .popsection
"#,
    options(att_syntax)
);

extern "C" {
    static rxen_shim_start: u8;
    static rxen_shim_resume_iret: u8;
    static rxen_shim_resume_cr3: u8;
    static rxen_shim_resume_swapgs_cr3: u8;
    static rxen_shim_resume_ptw: u8;
    static rxen_shim_code_end: u8;
    static rxen_shim_end: u8;
}

/// Entry points, as byte offsets from the start of the shim code page.
#[derive(Debug, Clone, Copy)]
pub struct ShimOffsets {
    pub resume_iret: u64,
    pub resume_cr3: u64,
    pub resume_swapgs_cr3: u64,
    pub resume_ptw: u64,
    pub code_len: u64,
}

/// Offset of the stub for vector `v` (the SYSCALL entry is vector 255's slot).
pub const fn vector_stub(v: u8) -> u64 {
    v as u64 * 8
}

fn addr(p: &u8) -> usize {
    p as *const u8 as usize
}

/// The shim's code and data pages as bytes to copy into guest memory.
pub fn blob() -> &'static [u8] {
    // SAFETY: both symbols are defined by the global_asm! block above in one
    // read-only section, start before end; the bytes between them are
    // initialized data of 'static lifetime.
    unsafe {
        let start = addr(&rxen_shim_start);
        let end = addr(&rxen_shim_end);
        std::slice::from_raw_parts(start as *const u8, end - start)
    }
}

pub fn offsets() -> ShimOffsets {
    // SAFETY: only the addresses of the asm labels are taken, never read.
    unsafe {
        let base = addr(&rxen_shim_start) as u64;
        let off = |p: &u8| addr(p) as u64 - base;
        ShimOffsets {
            resume_iret: off(&rxen_shim_resume_iret),
            resume_cr3: off(&rxen_shim_resume_cr3),
            resume_swapgs_cr3: off(&rxen_shim_resume_swapgs_cr3),
            resume_ptw: off(&rxen_shim_resume_ptw),
            code_len: off(&rxen_shim_code_end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::hv;

    #[test]
    fn blob_shape() {
        let b = blob();
        assert_eq!(b.len() as u64, (hv::CODE_PAGES + hv::DATA_PAGES) * 4096);
        // Vector 14's stub is `out %al, $14` (e6 0e), then ud2.
        let s = vector_stub(14) as usize;
        assert_eq!(&b[s..s + 4], &[0xe6, 14, 0x0f, 0x0b]);
        let s = SYSCALL_TRAMP as usize;
        assert_eq!(&b[s..s + 2], &[0x0f, 0x0b]);
        let o = offsets();
        assert_eq!(b[o.resume_iret as usize..][..2], [0x48, 0xcf]);
        assert!(o.code_len <= SYSCALL_TRAMP);
    }
}
