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

/// Port the page-table write path exits through when the VMM has more
/// writes than one list holds. No vector uses it: 254 is never raised (`int`
/// from CPL3 faults on this host and no device interrupts exist).
pub const PTW_MORE_PORT: u16 = 0xfe;

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
    /// 1 while the guest is in kernel mode, 0 in user mode: written by the
    /// VMM on resume, by the fast paths when they switch modes.
    pub const MODE: u64 = 0x30;
    /// Fast paths the VMM allows now: [`FAST_SYSCALL`] | [`FAST_IRET`].
    pub const FAST: u64 = 0x38;
    /// Guest kernel stack top (`stack_switch`), 16-byte aligned.
    pub const KERNEL_SP: u64 = 0x40;
    /// The guest's syscall callback.
    pub const SYSCALL_CALLBACK: u64 = 0x48;
    pub const KERNEL_CR3: u64 = 0x50;
    pub const USER_CR3: u64 = 0x58;
    /// Direct-map address of vcpu_info (upcall pending, upcall mask).
    pub const VCPU_INFO_VA: u64 = 0x68;
    /// Counters of the fast paths taken.
    pub const FAST_SYSCALLS: u64 = 0x70;
    pub const FAST_IRETS: u64 = 0x78;
    /// Guest RAM pages; the direct map's base address.
    pub const RAM_PAGES: u64 = 0x80;
    pub const DIRECTMAP_VA: u64 = 0x88;
    /// Counter of single `mmu_update`s done in the shim.
    pub const FAST_MMU_UPDATES: u64 = 0x90;
    /// [`FAST`] bit: bounce guest user SYSCALLs in the shim.
    pub const FAST_SYSCALL: u64 = 1;
    /// [`FAST`] bit: single `mmu_update`s in the shim.
    pub const FAST_MMU_UPDATE: u64 = 4;
    /// [`FAST`] bit: a guest kernel's `cli` in the shim.
    pub const FAST_CLI: u64 = 8;
    /// Counter of `cli`s done in the shim.
    pub const FAST_CLIS: u64 = 0x98;
    /// Non-zero: after this page-table write list, exit through
    /// [`super::PTW_MORE_PORT`] for the next one.
    pub const PTW_MORE: u64 = 0xa0;
    /// Page the last single `mmu_update` request was read from (0: none).
    pub const MMU_REQUEST_PAGE: u64 = 0xa8;
    /// [`FAST`] bit: do `HYPERVISOR_iret` (to guest user or kernel mode)
    /// in the shim.
    pub const FAST_IRET: u64 = 2;
    /// [`FAST`] bit: do `HYPERVISOR_stack_switch` in the shim.
    pub const FAST_STACK_SWITCH: u64 = 16;
    /// The guest kernel stack pointer as `stack_switch` gave it (unaligned;
    /// [`KERNEL_SP`] holds it 16-byte aligned for the bounce frames).
    pub const RAW_KERNEL_SP: u64 = 0xb0;
    /// Counter of `stack_switch`es done in the shim: the VMM adopts
    /// [`RAW_KERNEL_SP`] when it moved.
    pub const FAST_STACK_SWITCHES: u64 = 0xb8;
    /// The kernel stub's entry (LSTAR): a SYSCALL from guest user mode
    /// faults there (slot 259 is absent from user tables) and enters the
    /// shim like one at the trampoline.
    pub const KSTUB_ENTRY: u64 = 0xc0;
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
    .if vec == 14
    jmp rxen_shim_pf_entry
    .elseif vec == 13
    jmp rxen_shim_gp_entry
    .else
    out %al, $vec
    ud2
    .endif
    .set vec, vec + 1
    .endr

    # ---- #GP: a guest kernel's `cli` masks events without an exit ----
    # Early in boot (before alternatives are patched) Linux's SLUB runs
    # `pushf; cli; ...; popf` thousands of times. Same effect as the VMM's
    # emulation: upcall mask = 1, skip the byte. The byte at RIP was just
    # fetched, so reading it cannot fault once RIP is canonical.
    # Stack on entry: [0] error code, [8] rip, [16] cs, [24] rflags, [32] rsp, [40] ss.
    .balign 16
rxen_shim_gp_entry:
    push %rax
    push %rdx        # [0] rdx [8] rax [16] err [24] rip [32] cs [40] rflags [48] rsp [56] ss
    cmpq $0, 16(%rsp)
    jne .Lgp_exit
    testb $1, rxen_shim_data + 0x30(%rip)      # MODE: guest kernel?
    jz .Lgp_exit
    testb $8, rxen_shim_data + 0x38(%rip)      # FAST: cli
    jz .Lgp_exit
    mov 24(%rsp), %rax
    mov %rax, %rdx
    sar $47, %rdx
    inc %rdx
    cmp $1, %rdx                                # canonical: bits 63..47 all equal
    ja .Lgp_exit
    cmpb $0xfa, (%rax)                          # cli
    jne .Lgp_exit
    mov rxen_shim_data + 0x68(%rip), %rax      # vcpu_info
    movb $1, 1(%rax)                            # mask events
    incq 24(%rsp)
    incq rxen_shim_data + 0x98(%rip)
    pop %rdx
    pop %rax
    add $8, %rsp
    iretq
.Lgp_exit:
    pop %rdx
    pop %rax
    out %al, $13
    ud2

    # ---- #PF: a SYSCALL reaching the trampoline, or a real page fault ----
    # Four paths avoid an exit to the VMM (~30-45 us each, docs/trap-paths.md)
    # when the VMM enabled them in FAST: a guest user's SYSCALL bounced to
    # the guest kernel's syscall callback, HYPERVISOR_iret (to guest user or
    # kernel mode), stack_switch, and a single mmu_update (most of a boot's
    # hypercalls). Each does what Vcpu::bounce, Vcpu::iret, the VMM's
    # stack_switch and Vcpu::mmu_update_one do;
    # anything unusual takes the exit. The VMM keeps the parameters current on every
    # resume and reads MODE back after every exit.
    # Stack on entry: [0] error code, [8] rip, [16] cs, [24] rflags, [32] rsp, [40] ss.
    .balign 16
rxen_shim_pf_entry:
    push %rax
    lea rxen_syscall_tramp(%rip), %rax
    cmp %rax, 16(%rsp)
    je 1f
    mov rxen_shim_data + 0xc0(%rip), %rax      # KSTUB_ENTRY
    cmp %rax, 16(%rsp)
    jne .Lpf_exit
1:
    testb $1, rxen_shim_data + 0x30(%rip)      # MODE: guest kernel?
    jnz .Lhypercall
    testb $1, rxen_shim_data + 0x38(%rip)      # FAST: syscall bounce
    jz .Lpf_exit
    # Guest user SYSCALL: bounce frame [rcx, r11, rip, cs|mask<<32, rflags,
    # rsp, ss] on the guest kernel stack, reached through the kernel CR3.
    push %rdx        # [0] rdx [8] rax [16] err [24] rip [32] cs [40] rflags [48] rsp [56] ss
    mov rxen_shim_data + 0x50(%rip), %rax      # kernel CR3
    mov %rax, %cr3
    mov rxen_shim_data + 0x40(%rip), %rax      # kernel stack top, 16-aligned
    sub $56, %rax
    mov %rcx, (%rax)
    mov %r11, 8(%rax)
    mov %rcx, 16(%rax)
    mov rxen_shim_data + 0x68(%rip), %rdx      # vcpu_info (direct map)
    movzbq 1(%rdx), %rdx                        # saved upcall mask
    shl $32, %rdx
    or $0xe033, %rdx                            # FLAT_USER_CS64
    mov %rdx, 24(%rax)
    mov %r11, %rdx
    and $-0x3201, %rdx                          # ~(IF | IOPL)
    btq $32, 24(%rax)
    jc 1f
    or $0x200, %rdx                             # IF shown when unmasked
1:  mov %rdx, 32(%rax)
    mov 48(%rsp), %rdx
    mov %rdx, 40(%rax)
    movq $0xe02b, 48(%rax)                      # FLAT_USER_SS
    mov rxen_shim_data + 0x68(%rip), %rdx
    movb $1, 1(%rdx)                            # mask events
    mov rxen_shim_data + 0x48(%rip), %rdx      # syscall callback
    mov %rdx, 24(%rsp)
    movq $0xe033, 32(%rsp)                      # FLAT_KERNEL_CS
    mov %r11, %rdx
    and $-0x77101, %rdx                         # ~(TF | IOPL | NT | RF | VM | AC)
    or $0x202, %rdx
    mov %rdx, 40(%rsp)
    mov %rax, 48(%rsp)
    movq $0xe02b, 56(%rsp)                      # FLAT_KERNEL_SS
    movq $1, rxen_shim_data + 0x30(%rip)       # MODE = kernel
    incq rxen_shim_data + 0x70(%rip)
    swapgs
    pop %rdx
    pop %rax
    add $8, %rsp
    iretq

.Lhypercall:
    cmpq $1, (%rsp)                             # HYPERVISOR_mmu_update?
    je .Lmmu_update
    cmpq $3, (%rsp)                             # HYPERVISOR_stack_switch?
    je .Lstack_switch
    cmpq $23, (%rsp)                            # HYPERVISOR_iret?
    jne .Lpf_exit
    testb $2, rxen_shim_data + 0x38(%rip)      # FAST: iret
    jz .Lpf_exit
    push %rdx        # [0] rdx [8] rax [16] err [24] rip [32] cs [40] rflags [48] rsp [56] ss
    mov 48(%rsp), %rax   # iret_context: rax r11 rcx flags rip cs rflags rsp ss
    mov rxen_shim_data + 0x68(%rip), %rdx
    btq $9, 48(%rax)                            # IF in the saved rflags?
    jnc 2f
    cmpb $0, (%rdx)                             # unmasking with an event pending:
    jne .Lpf_exit_rdx                           # the VMM delivers it
    movb $0, 1(%rdx)
    jmp 3f
2:  movb $1, 1(%rdx)
3:  testw $0x100, 24(%rax)                      # VGCF_in_syscall
    jnz 4f
    mov 8(%rax), %r11
    mov 16(%rax), %rcx
4:  mov 32(%rax), %rdx
    mov %rdx, 24(%rsp)
    mov 48(%rax), %rdx
    and $-0x27001, %rdx                         # ~(IOPL | VM | NT)
    or $0x202, %rdx
    mov %rdx, 40(%rsp)
    mov 56(%rax), %rdx
    mov %rdx, 48(%rsp)
    mov 40(%rax), %rdx
    and $3, %edx
    cmp $3, %edx
    je 5f
    # To guest kernel mode: its flat selectors, same page tables and GS.
    movq $0xe033, 32(%rsp)                      # FLAT_KERNEL_CS
    movq $0xe02b, 56(%rsp)                      # FLAT_KERNEL_SS
    mov (%rax), %rax
    mov %rax, 8(%rsp)
    incq rxen_shim_data + 0x78(%rip)
    pop %rdx
    pop %rax
    add $8, %rsp
    iretq
5:  movzwq 40(%rax), %rdx                       # to guest user mode
    mov %rdx, 32(%rsp)
    movzwq 64(%rax), %rdx
    or $3, %rdx
    mov %rdx, 56(%rsp)
    mov (%rax), %rax
    mov %rax, 8(%rsp)
    mov rxen_shim_data + 0x58(%rip), %rdx      # user CR3
    mov %rdx, %cr3
    movq $0, rxen_shim_data + 0x30(%rip)       # MODE = user
    incq rxen_shim_data + 0x78(%rip)
    swapgs
    pop %rdx
    pop %rax
    add $8, %rsp
    iretq

    # stack_switch(ss, sp): the guest kernel stack for its next entries.
    # Refused (left to the VMM) when the 16-aligned top would be below 4 KiB
    # or inside rxen's slots (plus the frame's 64 bytes): the syscall fast
    # path writes bounce frames there at CPL0.
.Lstack_switch:
    testb $16, rxen_shim_data + 0x38(%rip)     # FAST: stack_switch
    jz .Lpf_exit
    push %rdx        # [0] rdx [8] rax [16] err [24] rip [32] cs [40] rflags [48] rsp [56] ss
    mov %rsi, %rax
    and $-16, %rax
    cmp $4096, %rax
    jb .Lpf_exit_rdx
    movabs $0xffff800000000000, %rdx            # rxen's slots 256..271
    cmp %rdx, %rax
    jb 7f
    movabs $0xffff880000000040, %rdx
    cmp %rdx, %rax
    jb .Lpf_exit_rdx
7:  mov %rax, rxen_shim_data + 0x40(%rip)      # KERNEL_SP
    mov %rsi, rxen_shim_data + 0xb0(%rip)      # RAW_KERNEL_SP
    incq rxen_shim_data + 0xb8(%rip)
    mov %rcx, 24(%rsp)                          # return to the stub
    mov %r11, %rdx
    and $-0x23001, %rdx                         # ~(IOPL | VM)
    or $0x202, %rdx
    mov %rdx, 40(%rsp)
    movq $0, 8(%rsp)                            # rax = 0: done
    pop %rdx
    pop %rax
    add $8, %rsp
    iretq

    # One MMU_NORMAL_PT_UPDATE for DOMID_SELF without a done count, the
    # request in the page the guest's stack pointer is in (written by the
    # hypercall stub's pushes, so mapped: the reads cannot fault) or in the
    # page the VMM last read such a request from (Linux's multicall buffer;
    # if the guest unmapped it since, the read faults in the shim and the
    # domain is stopped as crashed). Same
    # checks as Vcpu::mmu_update_one: entry in RAM and 8-aligned, not one
    # that could be in rxen's L4 slots (the VMM checks those); a present
    # entry maps RAM and gets _PAGE_USER. The entry is written through the
    # direct map, which the host's shadow MMU tracks.
.Lmmu_update:
    testb $4, rxen_shim_data + 0x38(%rip)      # FAST: mmu_update
    jz .Lpf_exit
    cmp $1, %rsi
    jne .Lpf_exit
    test %rdx, %rdx
    jnz .Lpf_exit
    cmp $0x7ff0, %r10                           # DOMID_SELF
    jne .Lpf_exit
    push %rdx
    push %rbx        # [0] rbx [8] rdx [16] rax [24] err [32] rip [40] cs [48] rflags [56] rsp [64] ss
    mov 56(%rsp), %rax
    xor %rdi, %rax
    shr $12, %rax
    jz 6f
    mov %rdi, %rax
    and $-0x1000, %rax
    cmp rxen_shim_data + 0xa8(%rip), %rax      # MMU_REQUEST_PAGE
    jne .Lmmu_exit
6:  mov %rdi, %rax
    and $0xfff, %eax
    cmp $0xff0, %eax
    ja .Lmmu_exit
    mov (%rdi), %rax                            # ptr
    test $7, %al
    jnz .Lmmu_exit
    mov %eax, %ebx
    and $0xf80, %ebx
    cmp $0x800, %ebx                            # entries 256..271: maybe rxen's
    je .Lmmu_exit                               # L4 slots, the VMM decides
    mov %rax, %rbx
    shr $12, %rbx
    cmp rxen_shim_data + 0x80(%rip), %rbx      # RAM pages
    jae .Lmmu_exit
    mov 8(%rdi), %rdx                           # val
    test $1, %dl
    jz 5f
    mov %rdx, %rbx
    shl $12, %rbx
    shr $24, %rbx                               # the frame it maps
    cmp rxen_shim_data + 0x80(%rip), %rbx
    jae .Lmmu_exit
    or $4, %rdx                                 # _PAGE_USER
5:  add rxen_shim_data + 0x88(%rip), %rax      # direct map
    mov %rdx, (%rax)
    incq rxen_shim_data + 0x90(%rip)
    mov %rcx, 32(%rsp)                          # return to the stub
    mov %r11, %rax
    and $-0x23001, %rax                         # ~(IOPL | VM)
    or $0x202, %rax
    mov %rax, 48(%rsp)
    movq $0, 16(%rsp)                           # rax = 0: done
    pop %rbx
    pop %rdx
    pop %rax
    add $8, %rsp
    iretq
.Lmmu_exit:
    pop %rbx
.Lpf_exit_rdx:
    pop %rdx
.Lpf_exit:
    pop %rax
    out %al, $14
    ud2

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
    cmpq $0, rxen_shim_data + 0xa0(%rip)       # PTW_MORE: the VMM has more
    je 5f
    out %al, $0xfe                              # PTW_MORE_PORT
    ud2
5:
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

/// Offsets in the kernel stub's data page (slot 259, after its code page).
pub mod kdata {
    /// Bit 0: the stub may finish a single `mmu_update` (the VMM clears it
    /// while it holds page-table writes of its own).
    pub const FAST: u64 = 0x00;
    /// Guest RAM pages.
    pub const RAM_PAGES: u64 = 0x08;
    /// Virtual address of the alias of guest-physical 0.
    pub const ALIAS: u64 = 0x10;
    /// The shim's SYSCALL trampoline: where the stub sends every other call.
    pub const TRAMP: u64 = 0x18;
    /// Page the VMM last read a single `mmu_update` request from.
    pub const REQUEST_PAGE: u64 = 0x20;
    /// Counter of `mmu_update`s the stub finished.
    pub const MMU_UPDATES: u64 = 0x28;
}

// The kernel stub: LSTAR, at CPL3, in L4 slot 259, which rxen puts only in
// the top-level tables the guest uses as kernel page tables. A SYSCALL from
// guest user mode therefore faults on its first byte and enters the shim as
// before; in guest kernel mode (a hypercall) it runs natively at CPL3 and
// finishes a single MMU_NORMAL_PT_UPDATE itself, with the shim's checks,
// writing the entry through its alias of guest RAM: one trapped SYSCALL
// instead of a SYSCALL, a CPL0 round trip and ~40 emulated instructions
// (docs/trap-paths.md). Anything else jumps, registers untouched, to the
// shim's supervisor-only trampoline, whose #PF enters the shim exactly as
// a SYSCALL there would.
//
// Hypercall ABI (Xen): RCX and R11 are clobbered; RDX, RSI and R10 are
// arguments whose values are known once checked, so they are scratch and
// restored before a late jump to the trampoline.
//
// What the alias gives away: the guest kernel runs at CPL3 like the stub,
// so it can write through the alias itself, i.e. edit its page tables
// without rxen's checks. It could then map rxen's own frames in its VM
// (shim, IDT) and run code at CPL0 of its own VM: the position every KVM
// guest's kernel is in, and what the PVM host is built to contain. What
// lies outside the VM stays protected: the monitor treats every exit and
// every byte of guest memory as hostile, other domains are other VMs and
// processes. Guest user mode never reaches the slot (rxen removes it from
// every table used as the user base pointer; guest_cpu.rs tests this), so
// the guest's own kernel/user isolation is unchanged.
global_asm!(
    r#"
    .pushsection .rodata.rxen_kstub, "a"
    .balign 4096
    .globl rxen_kstub_start
rxen_kstub_start:
    cmp $1, %rax                                # HYPERVISOR_mmu_update
    jne 9f
    cmp $1, %rsi                                # one request
    jne 9f
    test %rdx, %rdx                             # no done count
    jnz 9f
    cmp $0x7ff0, %r10                           # DOMID_SELF
    jne 9f
    testb $1, rxen_kstub_data + 0x00(%rip)     # FAST
    jz 9f
    # The request must be readable without a fault: in the page of the
    # stack pointer (the call pushed there) or the page the VMM last read
    # one from (Linux's multicall buffer).
    mov %rdi, %rdx
    xor %rsp, %rdx
    shr $12, %rdx
    jz 1f
    mov %rdi, %rdx
    and $-0x1000, %rdx
    cmp rxen_kstub_data + 0x20(%rip), %rdx     # REQUEST_PAGE
    jne 8f
1:  mov %edi, %edx
    and $0xfff, %edx
    cmp $0xff0, %edx
    ja 8f
    mov (%rdi), %rdx                            # ptr
    test $7, %dl
    jnz 8f
    mov %edx, %esi
    and $0xf80, %esi
    cmp $0x800, %esi                            # entries 256..271: maybe rxen's
    je 8f                                       # L4 slots, the VMM decides
    mov %rdx, %rsi
    shr $12, %rsi
    cmp rxen_kstub_data + 0x08(%rip), %rsi     # RAM pages
    jae 8f
    mov 8(%rdi), %r10                           # val
    test $1, %r10b
    jz 2f
    mov %r10, %rsi
    shl $12, %rsi
    shr $24, %rsi                               # the frame it maps
    cmp rxen_kstub_data + 0x08(%rip), %rsi
    jae 8f
    or $4, %r10                                 # _PAGE_USER
2:  add rxen_kstub_data + 0x10(%rip), %rdx     # the alias
    mov %r10, (%rdx)
    incq rxen_kstub_data + 0x28(%rip)
    xor %eax, %eax
    push %r11
    popfq
    jmp *%rcx
8:  xor %edx, %edx
    mov $1, %esi
    mov $0x7ff0, %r10d
9:  jmp *rxen_kstub_data + 0x18(%rip)          # TRAMP
    .globl rxen_kstub_code_end
rxen_kstub_code_end:
    .balign 4096
rxen_kstub_data:
    .fill 4096, 1, 0
    .globl rxen_kstub_end
rxen_kstub_end:
    .popsection
"#,
    options(att_syntax)
);

extern "C" {
    static rxen_kstub_start: u8;
    static rxen_kstub_code_end: u8;
}

/// The kernel stub's code page, as copied into the guest.
pub fn kstub_blob() -> &'static [u8] {
    // SAFETY: both symbols are in the global_asm block above, in one
    // section, start before end; the bytes are immutable.
    unsafe {
        let start = addr(&rxen_kstub_start);
        let end = addr(&rxen_kstub_code_end);
        std::slice::from_raw_parts(start as *const u8, end - start)
    }
}

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
        // Vector 12's stub is `out %al, $12` (e6 0c), then ud2; vectors 13
        // and 14 jump to the #GP and #PF entries (e9 rel32).
        let s = vector_stub(12) as usize;
        assert_eq!(&b[s..s + 4], &[0xe6, 12, 0x0f, 0x0b]);
        assert_eq!(b[vector_stub(13) as usize], 0xe9);
        assert_eq!(b[vector_stub(14) as usize], 0xe9);
        let s = SYSCALL_TRAMP as usize;
        assert_eq!(&b[s..s + 2], &[0x0f, 0x0b]);
        let o = offsets();
        assert_eq!(b[o.resume_iret as usize..][..2], [0x48, 0xcf]);
        assert!(o.code_len <= SYSCALL_TRAMP);
    }

    /// The kernel stub fits its page (its data page follows it, addressed
    /// RIP-relative) and begins with the hypercall number check.
    #[test]
    fn kernel_stub_shape() {
        let k = kstub_blob();
        assert!(k.len() < 4096 && k.len() > 64);
        assert_eq!(&k[..4], &[0x48, 0x83, 0xf8, 0x01]); // cmp $1, %rax
    }
}
