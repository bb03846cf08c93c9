# Guest code for trap-paths.c. Assembled to a flat binary loaded at 0x200000
# (supervisor-only 2 MiB page: the "shim"); the user part is copied by the
# probe to 0x10000 (user page). Offsets are fixed with .org so the C side
# can point the IDT and LSTAR at them.
    .code64
    .org 0
# ---- CPL0 entry: descriptor tables, then iretq to user code at 0x10000 ----
kentry:
    cmp $10, %r12               # variant 10: PIO exits from CPL0 only
    jne 1f
2:  out %al, $0x12
    dec %rbx
    jnz 2b
    out %al, $0x10
    hlt
1:  lgdt gdtr(%rip)
    lidt idtr(%rip)
    mov $0x30, %ax
    ltr %ax
    pushq $0x23                 # SS: user data
    pushq $0x1f0000             # RSP
    pushq $0x3002               # RFLAGS: IOPL=3 (for variant 6), IF=0
    pushq $0x2b                 # CS: user code 64
    pushq $0x10000              # RIP
    iretq

    .org 0x100
# #UD after a direct ud2: skip it.
ud_skip:
    addq $2, (%rsp)
    iretq

    .org 0x200
# #UD at the LSTAR trampoline (the syscall's rcx holds the return RIP).
ud_syscall:
    mov %rcx, (%rsp)
    iretq

    .org 0x300
# Same, with one exit to the VMM first.
ud_syscall_exit:
    out %al, $0x12
    mov %rcx, (%rsp)
    iretq

    .org 0x400
# #PF on fetching LSTAR from a supervisor page: drop the error code, return to rcx.
pf_syscall:
    add $8, %rsp
    mov %rcx, (%rsp)
    iretq

    .org 0x500
# Direct ud2 with one exit to the VMM.
ud_skip_exit:
    out %al, $0x12
    addq $2, (%rsp)
    iretq

    .org 0x600
# Direct ud2, handler runs 32 more plain instructions (emulation cost each).
ud_skip_work:
    .rept 32
    mov %rax, %rdx
    .endr
    addq $2, (%rsp)
    iretq

    .org 0x900
# Direct ud2, handler reloads CR3 (what a kernel<->user page-table switch costs).
ud_skip_cr3:
    mov %cr3, %rax
    mov %rax, %cr3
    addq $2, (%rsp)
    iretq

    .org 0xa00
fatal:
    out %al, $0x14
    hlt

    .org 0xb00
gdtr: .word 0x3f
      .quad 0x1000
idtr: .word 0xfff
      .quad 0x4000

# ---- user code, copied to 0x10000; rbx = iterations, r12 = variant ----
    .org 0x1000
user:
    cmp $1, %r12
    je u_syscall
    cmp $2, %r12
    je u_syscall
    cmp $3, %r12
    je u_syscall
    cmp $4, %r12
    je u_syscall
    cmp $6, %r12
    je u_out
    cmp $9, %r12
    je u_syscall
# variants 0, 5, 7, 8: ud2 through the IDT
1:  ud2
    dec %rbx
    jnz 1b
    jmp u_done
u_syscall:
2:  syscall
    dec %rbx
    jnz 2b
    jmp u_done
u_out:
3:  out %al, $0x12
    dec %rbx
    jnz 3b
u_done:
    out %al, $0x10
    hlt

    .org 0x1800
# LSTAR target for variant 1 (user page, at 0x10800): return at once.
    jmp *%rcx
    .org 0x1900
# LSTAR target for variants 2, 3 (user page, at 0x10900): ud2 into the shim.
    ud2
    .org 0x1a00
# LSTAR target for variant 9 (user page, at 0x10a00): exit to the VMM
# straight from CPL3, then return.
    out %al, $0x12
    jmp *%rcx
