/*
 * hostile: a tiny Xen PV kernel that attacks its hypervisor.
 *
 * Built by guestprep (`hostile_kernel()`) with gcc, freestanding, linked at
 * VIRT_BASE + 1 MiB by hostile.ld. Xen starts it at _start with rsi =
 * start_info, events masked, in "kernel mode" (hardware CPL3). It issues
 * hypercalls with a bare `syscall` (rax = number; rdi, rsi, rdx, r10, r8).
 *
 * Command line (start_info.cmd_line), space-separated:
 *   mode=fuzz|script  fuzz: randomised garbage; script: a fixed list of bad
 *                     calls whose return values are printed
 *   mode=alias seed=N  rewrite its own page tables through rxen's kernel
 *                      stub's RAM alias (rxen's L4 slots, rxen's frames
 *                      mapped writable) while making hypercalls
 *   mode=xsflood      fills its xenstore ring with READs of a 4000-byte
 *                     node of its own and never takes a reply (prints
 *                     "HOSTILE-XSFLOOD n" every 1000 requests sent)
 *   mode=crash|reboot|poweroff  shut down at once as crashed / rebooting /
 *                     powered off (a domain that fails at boot, for the
 *                     toolstack's restart rules)
 *   seed=N count=N    the fuzzer's xorshift seed and number of hypercalls
 *
 * Output lines on console_io: "HOSTILE-RET name value" (script mode),
 * "HOSTILE-PROGRESS n", "HOSTILE-TRAP vector" (an exception reached the
 * kernel: it then shuts down as crashed), "HOSTILE-DONE ..." before a clean
 * poweroff.
 *
 * The fuzzer attacks rxen, not itself: pointers it hands out for writing point
 * into its scratch area or at memory it does not own, frames it names are free
 * RAM, page-table frames (only where harmless) or not RAM at all, and it never
 * blocks without a wake-up. Hypercalls that may end the domain (shutdown,
 * iret with a bad frame, a new page-table base) come rarely.
 */
#include <stdint.h>
/* The current interface: the old default renames fields and hypercalls. */
#define __XEN_INTERFACE_VERSION__ __XEN_LATEST_INTERFACE_VERSION__
#include <xen/xen.h>
#include <xen/elfnote.h>
#include <xen/sched.h>
#include <xen/event_channel.h>
#include <xen/grant_table.h>
#include <xen/memory.h>
#include <xen/vcpu.h>
#include <xen/version.h>
#include <xen/callback.h>
#include <xen/physdev.h>
#include <xen/io/xs_wire.h>

typedef uint64_t u64;
typedef uint32_t u32;
typedef uint16_t u16;
typedef uint8_t u8;

#define VIRT_BASE 0xffffffff80000000UL
/* rxen's own areas (L4 slots 257 and 258) and the host-reserved slot 256. */
#define SHIM_VA 0xffff808000000000UL
#define DIRECT_VA 0xffff810000000000UL
#define SLOT256_VA 0xffff800000000000UL

/* ---- Xen ELF notes and entry ------------------------------------------ */

asm(".pushsection .note.Xen, \"a\", @note\n"
    ".macro xennote type\n"
    "  .balign 4\n"
    "  .long 4, 8f - 7f, \\type\n"
    "  .asciz \"Xen\"\n"
    "7:\n"
    ".endm\n"
    ".macro xenstr type, value\n"
    "  xennote \\type\n"
    "  .asciz \"\\value\"\n"
    "8: .balign 4\n"
    ".endm\n"
    ".macro xenquad type, value\n"
    "  xennote \\type\n"
    "  .quad \\value\n"
    "8: .balign 4\n"
    ".endm\n"
    "xenstr 6, hostile\n"                     /* GUEST_OS */
    "xenstr 5, xen-3.0\n"                     /* XEN_VERSION */
    "xenstr 8, generic\n"                     /* LOADER */
    "xenquad 1, _start\n"                     /* ENTRY */
    "xenquad 3, 0xffffffff80000000\n"         /* VIRT_BASE */
    "xenquad 4, 0xffffffff80000000\n"         /* PADDR_OFFSET */
    ".popsection\n");

/* Own stack; the exception stubs (vectors 0-19) report and crash. */
asm(".pushsection .bss\n"
    ".balign 16\n"
    "stack: .skip 65536\n"
    "stack_top:\n"
    ".popsection\n"
    ".pushsection .text.entry, \"ax\"\n"
    ".globl _start\n"
    "_start:\n"
    "  lea stack_top(%rip), %rsp\n"
    "  mov %rsi, %rdi\n"
    "  call kmain\n"
    "1: ud2\n"
    "  jmp 1b\n"
    ".macro trapstub v\n"
    "trap_\\v: mov $\\v, %edi\n"
    "  jmp trap_common\n"
    ".endm\n"
    "trapstub 0\n trapstub 1\n trapstub 2\n trapstub 3\n trapstub 4\n"
    "trapstub 5\n trapstub 6\n trapstub 7\n trapstub 8\n trapstub 9\n"
    "trapstub 10\n trapstub 11\n trapstub 12\n trapstub 13\n trapstub 14\n"
    "trapstub 15\n trapstub 16\n trapstub 17\n trapstub 18\n trapstub 19\n"
    "trap_common:\n"
    "  and $-16, %rsp\n"
    "  call on_trap\n"
    "  ud2\n"
    ".popsection\n"
    ".pushsection .rodata\n"
    ".balign 8\n"
    "trap_addrs:\n"
    "  .quad trap_0, trap_1, trap_2, trap_3, trap_4, trap_5, trap_6, trap_7\n"
    "  .quad trap_8, trap_9, trap_10, trap_11, trap_12, trap_13, trap_14\n"
    "  .quad trap_15, trap_16, trap_17, trap_18, trap_19\n"
    ".popsection\n");
extern const u64 trap_addrs[20];

/* gcc may emit calls to these even when freestanding. */
void *memset(void *d, int c, unsigned long n) {
    u8 *p = d;
    while (n--) *p++ = (u8)c;
    return d;
}
void *memcpy(void *d, const void *s, unsigned long n) {
    u8 *p = d;
    const u8 *q = s;
    while (n--) *p++ = *q++;
    return d;
}

/* ---- hypercalls and output --------------------------------------------- */

static long hcall(u64 nr, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    register u64 r10 asm("r10") = a4;
    register u64 r8 asm("r8") = a5;
    long ret;
    asm volatile("syscall"
                 : "=a"(ret), "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10), "+r"(r8)
                 : "0"(nr)
                 : "rcx", "r11", "memory");
    return ret;
}

static u64 slen(const char *s) {
    u64 n = 0;
    while (s[n]) n++;
    return n;
}

/* One console line is built here, then written with one console_io call. */
static char line[256];
static u64 line_len;

static void add(const char *s) {
    while (*s && line_len < sizeof line - 2) line[line_len++] = *s++;
}

static void add_dec(long v) {
    char b[24];
    int i = 0;
    u64 u = v < 0 ? -(u64)v : (u64)v;
    do b[i++] = '0' + u % 10; while ((u /= 10) && i < 22);
    if (v < 0) b[i++] = '-';
    while (i && line_len < sizeof line - 2) line[line_len++] = b[--i];
}

static void flush_line(void) {
    line[line_len++] = '\n';
    hcall(__HYPERVISOR_console_io, CONSOLEIO_write, line_len, (u64)line, 0, 0);
    line_len = 0;
}

static void say(const char *s) {
    add(s);
    flush_line();
}

static void shutdown(u32 reason) {
    sched_shutdown_t s = {.reason = reason};
    hcall(__HYPERVISOR_sched_op, SCHEDOP_shutdown, (u64)&s, 0, 0, 0);
}

void on_trap(u64 vector) {
    add("HOSTILE-TRAP ");
    add_dec(vector);
    flush_line();
    shutdown(SHUTDOWN_crash);
    for (;;) /* not reached: rxen has stopped the domain */
        asm volatile("ud2");
}

static trap_info_t traps[21];

static void install_traps(void) {
    for (int v = 0; v < 20; v++) {
        traps[v].vector = v;
        traps[v].flags = 0;
        traps[v].cs = FLAT_KERNEL_CS;
        traps[v].address = trap_addrs[v];
    }
    traps[20].address = 0; /* terminator */
    hcall(__HYPERVISOR_set_trap_table, (u64)traps, 0, 0, 0, 0);
}

/* ---- what the kernel knows about its memory ---------------------------- */

#define SCRATCH_SIZE (64 * 1024)
/* Structures go below this offset, so that a write of up to 4 KiB stays inside. */
#define SCRATCH_SAFE (SCRATCH_SIZE - 4096)
/* Last in the image (see hostile.ld): writes past its end only reach the
   start-of-day p2m list, which this kernel never reads. */
asm(".pushsection .scratch, \"aw\", @nobits\n"
    ".balign 4096\n"
    "scratch: .skip 65536\n"
    ".popsection\n");
extern u8 scratch[SCRATCH_SIZE];

static u64 nr_pages, pt_va, pt_mfn, nr_pt, free_lo, store_mfn, console_mfn;
static u64 scratch_mfn;

static u64 mfn_of(u64 va) { return (va - VIRT_BASE) >> 12; }
static u64 va_of(u64 mfn) { return VIRT_BASE + (mfn << 12); }

/* ---- randomness -------------------------------------------------------- */

static u64 rng = 88172645463325252UL;

static u64 rnd(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DUL;
}

static u64 one_in(u64 n) { return rnd() % n == 0; }

static u64 any_val(void) {
    switch (rnd() % 9) {
    case 0: return 0;
    case 1: return rnd() % 16;
    case 2: return -(rnd() % 16 + 1);
    case 3: return 1UL << (rnd() % 64);
    case 4: return 0x7fffffff;
    case 5: return 0xffffffff;
    case 6: return 0x80000000;
    default: return rnd();
    }
}

/* A place for rxen to read from or write to. Own memory only as scratch. */
static u64 any_ptr(void) {
    switch (rnd() % 14) {
    case 0: return 0;
    case 1: return rnd() & 0xfff;                      /* the null page */
    case 2: return 0x10000000 + (rnd() & 0xffffff);    /* unmapped */
    case 3: return SHIM_VA + (rnd() & 0x3fffff);       /* rxen's shim, M2P */
    case 4: return SHIM_VA + (1UL << 30) + (rnd() & 0xfffff); /* the M2P table */
    case 5: return DIRECT_VA + (rnd() & 0xfffffff);    /* rxen's direct map */
    case 6: return SLOT256_VA + (rnd() & 0xffffff);    /* host-reserved slot */
    case 7: return 0x8000000000000000UL | rnd();       /* non-canonical */
    case 8: return pt_va + rnd() % (nr_pt * 4096);     /* own page tables: RO */
    case 9: return (u64)-1 - (rnd() & 0xff);           /* wraps around */
    case 10: return (u64)scratch + SCRATCH_SIZE - (rnd() & 63); /* runs off the end */
    default: return (u64)scratch + rnd() % SCRATCH_SAFE; /* own scratch */
    }
}

static u64 any_arg(void) { return rnd() & 1 ? any_ptr() : any_val(); }

/* A frame that is safe to hand to rxen for anything. */
static u64 any_frame(void) {
    switch (rnd() % 7) {
    case 0:
    case 1: return free_lo + rnd() % (nr_pages - free_lo); /* unused RAM */
    case 2: return nr_pages + rnd() % 8192;                /* rxen's area, beyond */
    case 3: return scratch_mfn + rnd() % (SCRATCH_SIZE / 4096);
    case 4: return (u64)-1 >> (rnd() % 64);
    default: return rnd();
    }
}

/* A page-table entry value: random flags over any frame, or noise. */
static u64 any_pte(void) {
    if (one_in(4)) return rnd();
    u64 frame = one_in(4) ? pt_mfn + rnd() % nr_pt : any_frame();
    return (frame << 12) | (rnd() & 0xfff) | (rnd() & (1UL << 63));
}

/* A free spot in scratch for a structure of n bytes (8-aligned). */
static void *slot(u64 n) {
    u64 off = (rnd() % (SCRATCH_SAFE - n)) & ~7UL;
    return scratch + off;
}

/* ---- the fuzzer -------------------------------------------------------- */

static u64 calls;

static long call(u64 nr, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    calls++;
    return hcall(nr, a1, a2, a3, a4, a5);
}

/* Hypercalls the generic path leaves to the specific ones below: those
   whose random arguments could make the kernel hurt itself (jump into
   scratch, block forever, remap itself) rather than test rxen. */
static int generic_ok(u64 nr) {
    switch (nr) {
    case __HYPERVISOR_set_trap_table:
    case __HYPERVISOR_mmu_update:
    case __HYPERVISOR_set_callbacks:
    case __HYPERVISOR_sched_op_compat:
    case __HYPERVISOR_update_descriptor:
    case __HYPERVISOR_multicall:
    case __HYPERVISOR_update_va_mapping:
    case __HYPERVISOR_iret:
    case __HYPERVISOR_vcpu_op:
    case __HYPERVISOR_mmuext_op:
    case __HYPERVISOR_sched_op:
    case __HYPERVISOR_callback_op:
    case __HYPERVISOR_console_io:
        return 0;
    }
    return 1;
}

static u64 generic_nr(void) {
    for (;;) {
        u64 nr = one_in(16) ? any_val() : rnd() % 64;
        if (generic_ok(nr)) return nr;
    }
}

static void fuzz_generic(void) {
    u64 nr = generic_nr();
    u64 a0 = rnd() & 1 ? rnd() % 24 : any_arg();
    if (rnd() & 1) /* garbage for rxen to find behind pointers */
        for (int i = 0; i < 8; i++) ((u64 *)slot(8))[0] = any_val();
    call(nr, a0, any_arg(), any_arg(), any_arg(), any_arg());
}

/* An entry index of table `t` that is not present (safe to overwrite). */
static u64 free_pte_ma(void) {
    for (int tries = 0; tries < 16; tries++) {
        u64 t = rnd() % nr_pt, i = rnd() % 512;
        u64 *e = (u64 *)(pt_va + t * 4096) + i;
        if (!(*e & 1)) return ((pt_mfn + t) << 12) | (i * 8);
    }
    return (any_frame() << 12) | (rnd() & 0xff8);
}

static void fuzz_mmu_update(void) {
    u64 n = 1 + rnd() % 8;
    mmu_update_t *req = slot(n * sizeof *req);
    for (u64 i = 0; i < n; i++) {
        u64 ma;
        switch (rnd() % 4) {
        case 0: ma = free_pte_ma(); break;
        case 1: ma = rnd(); break;
        default: ma = (any_frame() << 12) | (rnd() & 0xfff); break;
        }
        req[i].ptr = (ma & ~3UL) | (one_in(4) ? rnd() % 4 : 0);
        req[i].val = any_pte();
    }
    u64 count = one_in(8) ? any_val() : n;
    u64 done = rnd() & 1 ? (u64)slot(8) : any_arg();
    u64 dom = one_in(8) ? rnd() & 0xffff : DOMID_SELF;
    call(__HYPERVISOR_mmu_update, one_in(8) ? any_ptr() : (u64)req, count, done, dom, 0);
}

static void fuzz_mmuext(void) {
    u64 n = 1 + rnd() % 6;
    struct mmuext_op *op = slot(n * sizeof *op);
    for (u64 i = 0; i < n; i++) {
        u32 cmd = one_in(8) ? (u32)rnd() : rnd() % 22;
        u64 a1 = rnd() & 1 ? any_frame() : any_val();
        switch (cmd) {
        case MMUEXT_NEW_BASEPTR:
            /* A valid new base would unmap this kernel: rarely. */
            if (!one_in(2000)) a1 = nr_pages + rnd() % 64;
            /* fall through */
        case MMUEXT_PIN_L1_TABLE:
        case MMUEXT_PIN_L2_TABLE:
        case MMUEXT_PIN_L3_TABLE:
        case MMUEXT_PIN_L4_TABLE:
        case MMUEXT_NEW_USER_BASEPTR:
            /* Pinning walks the table: give it a zeroed free frame. */
            if (a1 >= free_lo && a1 < nr_pages) {
                struct mmuext_op clr = {.cmd = MMUEXT_CLEAR_PAGE};
                clr.arg1.mfn = a1;
                call(__HYPERVISOR_mmuext_op, (u64)&clr, 1, 0, DOMID_SELF, 0);
            } else if (a1 < nr_pages) {
                a1 = nr_pages + (a1 & 0xff);
            }
            break;
        case MMUEXT_CLEAR_PAGE:
            if (a1 < free_lo) a1 = nr_pages + a1; /* never own frames */
            break;
        case MMUEXT_COPY_PAGE:
            if (a1 < free_lo) a1 = nr_pages + a1; /* destination */
            break;
        }
        op[i].cmd = cmd;
        op[i].arg1.mfn = a1;
        op[i].arg2.nr_ents = any_val();
    }
    u64 count = one_in(8) ? any_val() : n;
    call(__HYPERVISOR_mmuext_op, (u64)op, count, rnd() & 1 ? (u64)slot(8) : any_arg(),
         one_in(8) ? rnd() & 0xffff : DOMID_SELF, 0);
}

static u32 any_port(void) {
    switch (rnd() % 5) {
    case 0: return rnd() % 8;
    case 1: return rnd() % 4200;
    case 2: return 0xffffffff - rnd() % 4;
    default: return (u32)rnd();
    }
}

static void fuzz_evtchn(void) {
    u32 *a = slot(64);
    for (int i = 0; i < 16; i++) a[i] = rnd() & 1 ? any_port() : (u32)any_val();
    u32 cmd = one_in(8) ? (u32)rnd() : rnd() % 16;
    if (cmd == EVTCHNOP_bind_virq) a[0] = rnd() % 32;
    if (cmd == EVTCHNOP_send && one_in(2)) a[0] = 1 + rnd() % 2; /* the backends */
    call(__HYPERVISOR_event_channel_op, cmd, one_in(8) ? any_ptr() : (u64)a, 0, 0, 0);
}

/* Garbage in the console or xenstore ring (indices included), then a kick. */
static void fuzz_ring(void) {
    int store = rnd() & 1;
    u8 *ring = (u8 *)va_of(store ? store_mfn : console_mfn);
    u64 n = 1 + rnd() % 64, at = rnd() % 4096;
    for (u64 i = 0; i < n && at + i < 4096; i++) ring[at + i] = (u8)rnd();
    if (one_in(2)) { /* indices: producer/consumer words at the end */
        u32 *idx = (u32 *)(ring + (store ? 2048 : 1024 + 2048));
        idx[rnd() % 4] = rnd() & 1 ? (u32)rnd() : (u32)(rnd() % 4096);
    }
    u32 *p = slot(8);
    p[0] = store ? 1 : 2;
    call(__HYPERVISOR_event_channel_op, EVTCHNOP_send, (u64)p, 0, 0, 0);
}

/* A list of entries built here (nested lists included), or a pointer to
   memory that is not this kernel's scratch. Never a list that runs into
   scratch garbage: that could name any hypercall with any arguments, the
   kernel's own undoing rather than a test of rxen. */
static void fuzz_multicall(void) {
    u64 n = 1 + rnd() % 12, extra = one_in(4) ? 1 + rnd() % 3 : 0;
    multicall_entry_t *m = slot((n + extra) * sizeof *m);
    for (u64 i = 0; i < n + extra; i++) {
        u64 op = generic_nr();
        if (one_in(8)) op = __HYPERVISOR_multicall;
        if (one_in(16)) op = __HYPERVISOR_iret;
        if (one_in(16)) op = __HYPERVISOR_sched_op; /* args below: yield */
        if (i >= n) op = 60 + rnd() % 4;             /* past the count */
        m[i].op = op;
        m[i].result = any_val();
        for (int k = 0; k < 6; k++) m[i].args[k] = any_arg();
        if (op == __HYPERVISOR_sched_op) m[i].args[0] = SCHEDOP_yield;
        if (op == __HYPERVISOR_console_io) m[i].args[1] &= 63;
        if (op == __HYPERVISOR_multicall) { /* nested: itself, or elsewhere */
            m[i].args[0] = rnd() & 1 ? (u64)m : any_ptr();
            m[i].args[1] = rnd() % 4;
        }
    }
    u64 list = (u64)m, count = n + (rnd() & 1 ? extra : 0);
    if (one_in(6)) {
        do list = any_ptr(); while (list >= (u64)scratch - 4096 && list < (u64)scratch + SCRATCH_SIZE);
        count = any_val();
    }
    if (one_in(16)) count = 0;
    call(__HYPERVISOR_multicall, list, count, 0, 0, 0);
}

static void fuzz_vcpu_op(void) {
    u64 *a = slot(64);
    for (int i = 0; i < 8; i++) a[i] = any_arg();
    u32 cmd = one_in(8) ? (u32)rnd() : rnd() % 16;
    if (cmd == VCPUOP_register_vcpu_info) {
        switch (rnd() % 3) { /* { u64 mfn; u32 offset; u32 rsvd } */
        case 0: a[0] = pt_mfn + rnd() % nr_pt; break; /* a page table */
        case 1: a[0] = any_frame(); break;
        default: a[0] = rnd(); break;
        }
        a[1] = rnd() & 1 ? rnd() % 4100 : rnd();
    }
    if (cmd == VCPUOP_set_singleshot_timer)
        a[0] = rnd() & 1 ? rnd() % 1000000000 : any_val();
    u32 vcpu = rnd() % 4 ? 0 : (u32)any_val();
    call(__HYPERVISOR_vcpu_op, cmd, vcpu, one_in(6) ? any_ptr() : (u64)a, 0, 0);
}

static void fuzz_sched_op(void) {
    static const u32 cmds[] = {SCHEDOP_yield, SCHEDOP_remote_shutdown,
                               SCHEDOP_shutdown_code, SCHEDOP_pin_override, 8, 99};
    u32 cmd = rnd() % 4 ? cmds[rnd() % 6] : (u32)rnd() | 8;
    u32 *a = slot(16);
    a[0] = (u32)any_val();
    a[1] = (u32)any_val();
    if (cmd == SCHEDOP_shutdown_code) a[0] = SHUTDOWN_crash; /* only recorded */
    u64 arg = rnd() & 1 ? (u64)a : any_ptr();
    if (cmd == SCHEDOP_pin_override || cmd == SCHEDOP_remote_shutdown) arg = any_ptr();
    call(__HYPERVISOR_sched_op, cmd, arg, 0, 0, 0);
}

/* Bad pointers for shutdown: an error back, not a stopped domain. */
static void fuzz_shutdown_bad_ptr(void) {
    u64 p; /* not scratch, nor the p2m list after it (its first entry, 0, is poweroff) */
    do p = any_ptr(); while (p >= (u64)scratch && p < (u64)scratch + SCRATCH_SIZE + 4096);
    if (p >= pt_va && p < pt_va + nr_pt * 4096) p = SHIM_VA; /* PT words are no reason */
    call(__HYPERVISOR_sched_op, SCHEDOP_shutdown, p, 0, 0, 0);
}

static u64 any_code_addr(void) {
    switch (rnd() % 4) {
    case 0: return 0;
    case 1: return SHIM_VA + (rnd() & 0xfff);
    case 2: return 0x8000000000000000UL | rnd();
    default: return 0x10000000 + (rnd() & 0xffffff);
    }
}

/* console_io: bad pointers and sizes, but not megabytes of noise. */
static void fuzz_console_io(void) {
    u64 n = rnd() % 8 ? rnd() % 48 : any_val();
    u64 buf = any_ptr();
    if (buf >= (u64)scratch && buf < (u64)scratch + SCRATCH_SIZE && n > 64) n = 64;
    u32 cmd = rnd() % 4 ? CONSOLEIO_write : (u32)any_val();
    call(__HYPERVISOR_console_io, cmd, n, buf, 0, 0);
}

/* Bad callbacks, then none again. A bad event callback only rarely: once
   vcpu_info has moved to memory where events look unmasked, an event
   delivered there ends this kernel at once. */
static void fuzz_callbacks(void) {
    u64 event = one_in(20) ? any_code_addr() : 0;
    if (rnd() & 1) {
        call(__HYPERVISOR_set_callbacks, event, any_code_addr(), any_code_addr(), 0, 0);
    } else {
        u64 *cb = slot(16); /* { u16 type; u16 flags; u32 pad; u64 address } */
        cb[0] = rnd() & 1 ? rnd() % 6 : rnd();
        cb[1] = (cb[0] & 0xffff) == CALLBACKTYPE_event ? event : any_code_addr();
        call(__HYPERVISOR_callback_op, rnd() % 4, one_in(6) ? any_ptr() : (u64)cb, 0, 0, 0);
    }
    hcall(__HYPERVISOR_set_callbacks, 0, 0, 0, 0, 0);
}

static void fuzz_trap_table(void) {
    u64 p;
    do p = any_ptr(); while (p >= (u64)scratch && p < (u64)scratch + SCRATCH_SIZE);
    call(__HYPERVISOR_set_trap_table, p, 0, 0, 0, 0);
    install_traps();
}

static void fuzz_update_va_mapping(void) {
    u64 va;
    switch (rnd() % 6) {
    case 0: va = SHIM_VA + (rnd() & 0x1ff000); break; /* rxen's shim */
    case 1: va = DIRECT_VA + (rnd() & 0xfffff000); break;
    case 2: va = SLOT256_VA + (rnd() & 0xffff000); break;
    case 3: va = rnd(); break;
    case 4: va = 0x10000000 + (rnd() & 0xfff000); break; /* nothing there */
    default: va = (u64)scratch + (rnd() % (SCRATCH_SIZE / 4096)) * 4096; break;
    }
    u64 val = any_pte();
    if (va >= (u64)scratch && va < (u64)scratch + SCRATCH_SIZE) {
        /* Keep scratch mapped and writable: map a free frame, or a bad one. */
        u64 f = rnd() & 1 ? free_lo + rnd() % (nr_pages - free_lo) : nr_pages + rnd() % 4096;
        val = (f << 12) | 0x67;
    }
    call(__HYPERVISOR_update_va_mapping, va, val, rnd() % 8 ? rnd() % 4 : rnd(), 0, 0);
}

static void fuzz_descriptors(void) {
    if (rnd() & 1) {
        u64 f = rnd() % 3 ? any_frame() : pt_mfn + rnd() % nr_pt;
        call(__HYPERVISOR_update_descriptor, (f << 12) | (rnd() & 0xfff), any_val(), 0, 0, 0);
    } else {
        u64 *frames = slot(16 * 8);
        for (int i = 0; i < 16; i++)
            frames[i] = rnd() % 3 ? any_frame() : pt_mfn + rnd() % nr_pt;
        u64 entries = rnd() & 1 ? rnd() % (16 * 512) : any_val();
        call(__HYPERVISOR_set_gdt, one_in(6) ? any_ptr() : (u64)frames, entries, 0, 0, 0);
    }
}

static void fuzz_grant(void) {
    u64 *a = slot(64);
    for (int i = 0; i < 8; i++) a[i] = rnd() & 1 ? any_val() : (u64)slot(8);
    if (rnd() & 1) a[2] = (u64)slot(33 * 8); /* setup_table's frame list */
    call(__HYPERVISOR_grant_table_op, rnd() % 4 ? rnd() % 16 : rnd(),
         one_in(6) ? any_ptr() : (u64)a, rnd() % 4 ? rnd() % 3 : any_val(), 0, 0);
}

/* Direct writes to this kernel's read-only page tables, which rxen emulates
   (Xen's writable_page_tables): several instruction forms and sizes, always
   at an entry that is not present, so the kernel's own mappings stay. */
static void fuzz_ptwr(void) {
    u64 ma = free_pte_ma();
    u64 mfn = ma >> 12;
    if (mfn < pt_mfn || mfn >= pt_mfn + nr_pt) return; /* no free entry found */
    /* The boot L4 (first table)'s slots 256..271 are rxen's: a write there
       is refused with a page fault, which would end this kernel. */
    if (mfn == pt_mfn && (ma & 0xfff) / 8 >= 256 && (ma & 0xfff) / 8 < 272) return;
    u64 *e = (u64 *)(pt_va + (mfn - pt_mfn) * 4096 + (ma & 0xff8));
    u64 f = one_in(2000) ? nr_pages + rnd() % 64 : free_lo + rnd() % (nr_pages - free_lo);
    /* Noise (which may map a frame that is not RAM: the domain is then
       stopped) only rarely; otherwise a free frame, or flags alone. */
    u64 v = rnd() & 1 ? (f << 12) | (rnd() & 0x1ff) : one_in(5000) ? rnd() : rnd() & 0xffe;
    calls++;
    switch (rnd() % 10) {
    case 0: asm volatile("movq %1, (%0)" ::"r"(e), "r"(v) : "memory"); break;
    case 1: asm volatile("movl %k1, (%0)" ::"r"(e), "r"(v) : "memory"); break;
    /* Partial writes: flag bits only (low word, P clear), or the top byte
       (available bits and NX); frame bits come only from whole entries. */
    case 2: asm volatile("movw %w1, (%0)" ::"r"(e), "r"(v & 0xffe) : "memory"); break;
    case 3: asm volatile("movb %b1, 7(%0)" ::"r"(e), "r"(v & 0x80) : "memory"); break;
    case 4: asm volatile("xchgq %1, (%0)" : "+r"(e), "+r"(v)::"memory"); break;
    case 5: {
        u64 expect = rnd() & 1 ? 0 : rnd();
        asm volatile("lock cmpxchgq %2, (%1)" : "+a"(expect) : "r"(e), "r"(v) : "memory", "cc");
        break;
    }
    case 6: asm volatile("lock orq %1, (%0)" ::"r"(e), "r"(v) : "memory", "cc"); break;
    case 7: asm volatile("lock andq %1, (%0)" ::"r"(e), "r"(v) : "memory", "cc"); break;
    case 8: asm volatile("lock btsq $1, (%0)" ::"r"(e) : "memory", "cc"); break;
    default: asm volatile("lock btrq $2, (%0)" ::"r"(e) : "memory", "cc"); break;
    }
}

/* Instructions rxen emulates for a PV kernel: CPUID behind Xen's forced-
   emulation prefix (any leaf), and the segment-base MSRs. */
static void fuzz_privileged(void) {
    calls++;
    if (rnd() & 1) {
        u32 a = rnd() & 1 ? rnd() % 32 : (u32)rnd(), b, c = (u32)any_val(), d;
        if (one_in(2)) a = 0x40000000 + rnd() % 16;
        asm volatile("ud2a; .ascii \"xen\"; cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    } else {
        static const u32 msrs[] = {0xc0000100, 0xc0000101, 0xc0000102};
        u32 msr = msrs[rnd() % 3], lo, hi;
        if (rnd() & 1) {
            asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
        } else {
            /* canonical values only: a bad one is a #GP, as on hardware */
            u64 v = rnd() & 1 ? rnd() & 0x00007fffffffffffUL : rnd() | 0xffff800000000000UL;
            if (msr == 0xc0000101) v = 0; /* the kernel's own GS stays */
            asm volatile("wrmsr" ::"c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
        }
    }
}

static void fuzz_one(void) {
    if (one_in(12)) {
        rnd() & 1 ? fuzz_ptwr() : fuzz_privileged();
        return;
    }
    switch (rnd() % 24) {
    case 0: case 1: case 2: case 3: case 4: case 5: fuzz_generic(); break;
    case 6: case 7: fuzz_mmu_update(); break;
    case 8: case 9: fuzz_mmuext(); break;
    case 10: case 11: fuzz_evtchn(); break;
    case 12: fuzz_ring(); break;
    case 13: case 14: fuzz_multicall(); break;
    case 15: fuzz_vcpu_op(); break;
    case 16: fuzz_sched_op(); break;
    case 17: fuzz_callbacks(); break;
    case 18: fuzz_trap_table(); break;
    case 19: fuzz_update_va_mapping(); break;
    case 20: fuzz_descriptors(); break;
    case 21: fuzz_grant(); break;
    case 22: rnd() & 1 ? fuzz_shutdown_bad_ptr() : fuzz_console_io(); break;
    default: /* rare endings: each is an allowed outcome */
        if (one_in(20000)) {
            say("HOSTILE-ENDING iret-bad-frame");
            asm volatile("mov %0, %%rsp\n syscall" ::"r"(any_ptr() | 0x8000000000000000UL),
                         "a"((u64)__HYPERVISOR_iret)
                         : "rcx", "r11", "memory");
        } else if (one_in(20000)) {
            say("HOSTILE-ENDING poweroff");
            shutdown(SHUTDOWN_poweroff);
        } else {
            fuzz_generic();
        }
    }
}

/* ---- mode=alias: around rxen's page-table checks, through its own alias
 *
 * rxen's kernel stub keeps a user-writable alias of guest RAM in L4 slot
 * 259 of the guest kernel's tables (a guest kernel may write its own page
 * tables without rxen, like any KVM guest kernel). This kernel uses it to
 * rewrite rxen's L4 slots in its own top-level table, to map rxen's own
 * frames (past RAM: shim code, IDT, GDT, stacks, data) writable and
 * scribble on them, and to scribble anywhere in its RAM, with hypercalls in
 * between. Whatever becomes of this domain, rxen must neither panic nor
 * hang, and other domains must not notice. */

#define ALIAS_VA 0xffff818040000000UL

static void alias_smash(u64 rounds) {
    u64 *l4 = (u64 *)(ALIAS_VA + (pt_mfn << 12));
    /* rxen's builder: L4, L3, L2, then the L1s mapping VIRT_BASE linearly */
    u64 *l1 = (u64 *)(ALIAS_VA + ((pt_mfn + 3) << 12));
    u64 l1_entries = (nr_pt - 3) * 512;
    for (u64 r = 0; r < rounds; r++) {
        switch (rnd() % 16) {
        case 0: /* one of rxen's L4 slots (256..271) */
            l4[256 + rnd() % 16] = rnd() & 1 ? 0 : any_pte();
            break;
        case 1: { /* one of rxen's frames, mapped writable at a free page */
            u64 k = free_lo + rnd() % 64;
            if (k >= l1_entries) break;
            /* rxen's area starts at the first 2 MiB boundary after RAM */
            u64 hv = (nr_pages + 511) & ~511UL;
            l1[k] = ((hv + rnd() % 40) << 12) | 0x67; /* its fixed pages */
            volatile u64 *p = (u64 *)(VIRT_BASE + (k << 12));
            for (int i = 0; i < 8; i++) p[rnd() % 512] = rnd();
            break;
        }
        case 2: case 3: /* any word of its own RAM */
            *(volatile u64 *)(ALIAS_VA + (rnd() % nr_pages) * 4096 + (rnd() & 0xff8)) = rnd();
            break;
        default:
            break;
        }
        fuzz_one();
    }
    say("HOSTILE-ALIAS-DONE");
    shutdown(SHUTDOWN_poweroff);
}

/* ---- the fixed script: one bad call per category, return values printed */

static void ret(const char *name, long v) {
    add("HOSTILE-RET ");
    add(name);
    add(" ");
    add_dec(v);
    flush_line();
}

static void script(void) {
    u32 *a = (u32 *)scratch;
    u64 *q = (u64 *)scratch;

    ret("unknown_hypercall", hcall(60, 0, 0, 0, 0, 0));
    ret("huge_hypercall", hcall(0xffffffffffffUL, 0, 0, 0, 0, 0));
    a[0] = 0x7fffffff;
    ret("evtchn_send_huge_port", hcall(__HYPERVISOR_event_channel_op, EVTCHNOP_send, (u64)a, 0, 0, 0));
    ret("evtchn_close_huge_port", hcall(__HYPERVISOR_event_channel_op, EVTCHNOP_close, (u64)a, 0, 0, 0));
    ret("evtchn_unmask_huge_port", hcall(__HYPERVISOR_event_channel_op, EVTCHNOP_unmask, (u64)a, 0, 0, 0));
    a[0] = DOMID_SELF;
    a[1] = 0x7fffffff;
    ret("evtchn_status_huge_port", hcall(__HYPERVISOR_event_channel_op, EVTCHNOP_status, (u64)a, 0, 0, 0));
    a[0] = 1000;
    a[1] = 0;
    ret("evtchn_bind_bad_virq", hcall(__HYPERVISOR_event_channel_op, EVTCHNOP_bind_virq, (u64)a, 0, 0, 0));
    ret("evtchn_bad_pointer", hcall(__HYPERVISOR_event_channel_op, EVTCHNOP_send, 0x10000000, 0, 0, 0));
    ret("console_io_unmapped", hcall(__HYPERVISOR_console_io, CONSOLEIO_write, 16, 0x10000000, 0, 0));
    ret("console_io_shim", hcall(__HYPERVISOR_console_io, CONSOLEIO_write, 16, SHIM_VA, 0, 0));
    ret("console_io_direct_map", hcall(__HYPERVISOR_console_io, CONSOLEIO_write, 16, DIRECT_VA, 0, 0));
    ret("console_io_non_canonical", hcall(__HYPERVISOR_console_io, CONSOLEIO_write, 16, 0x8000000000000000UL, 0, 0));
    ret("console_io_wraps", hcall(__HYPERVISOR_console_io, CONSOLEIO_write, 64, (u64)-16, 0, 0));
    ret("xen_version_to_page_table", hcall(__HYPERVISOR_xen_version, XENVER_extraversion, pt_va, 0, 0, 0));
    ret("xen_version_to_shim", hcall(__HYPERVISOR_xen_version, XENVER_extraversion, SHIM_VA, 0, 0, 0));
    ret("vm_assist_bad_type", hcall(__HYPERVISOR_vm_assist, VMASST_CMD_enable, 1000, 0, 0, 0));

    q[0] = (nr_pages + 10) << 12; /* not RAM */
    q[1] = 0;
    ret("mmu_update_not_ram", hcall(__HYPERVISOR_mmu_update, (u64)q, 1, 0, DOMID_SELF, 0));
    q[0] = free_pte_ma();
    q[1] = ((nr_pages + 1) << 12) | 0x67; /* maps a frame of rxen's area */
    ret("mmu_update_maps_rxen_frame", hcall(__HYPERVISOR_mmu_update, (u64)q, 1, 0, DOMID_SELF, 0));
    q[0] = (pt_mfn << 12) | (257 * 8); /* the boot L4's slot 257: rxen's shim */
    q[1] = (free_lo << 12) | 0x67;
    ret("mmu_update_rxen_l4_slot", hcall(__HYPERVISOR_mmu_update, (u64)q, 1, 0, DOMID_SELF, 0));
    ret("mmu_update_bad_list", hcall(__HYPERVISOR_mmu_update, 0x10000000, 1, 0, DOMID_SELF, 0));
    ret("mmu_update_huge_count", hcall(__HYPERVISOR_mmu_update, (u64)q, 0x7fffffff, 0, DOMID_SELF, 0));
    ret("update_va_mapping_shim", hcall(__HYPERVISOR_update_va_mapping, SHIM_VA, (free_lo << 12) | 0x67, 0, 0, 0));
    ret("update_va_mapping_non_canonical", hcall(__HYPERVISOR_update_va_mapping, 0x8000000000000000UL, 0, 0, 0, 0));
    q[0] = 99;
    ret("mmuext_unknown_cmd", hcall(__HYPERVISOR_mmuext_op, (u64)q, 1, 0, DOMID_SELF, 0));
    q[0] = MMUEXT_PIN_L4_TABLE;
    q[1] = nr_pages + 5;
    ret("mmuext_pin_not_ram", hcall(__HYPERVISOR_mmuext_op, (u64)q, 1, 0, DOMID_SELF, 0));
    ret("update_descriptor_not_ram", hcall(__HYPERVISOR_update_descriptor, (nr_pages + 3) << 12, 0, 0, 0, 0));
    ret("update_descriptor_page_table", hcall(__HYPERVISOR_update_descriptor, pt_mfn << 12, 0x00cff3000000ffffUL, 0, 0, 0));
    ret("set_gdt_too_many_entries", hcall(__HYPERVISOR_set_gdt, (u64)q, 1 << 20, 0, 0, 0));
    q[0] = pt_mfn; /* vcpu_info on a page table */
    q[1] = 0;
    ret("vcpu_info_on_page_table", hcall(__HYPERVISOR_vcpu_op, VCPUOP_register_vcpu_info, 0, (u64)q, 0, 0));
    ret("vcpu_op_bad_vcpu", hcall(__HYPERVISOR_vcpu_op, VCPUOP_is_up, 5, 0, 0, 0));
    ret("memory_op_unknown", hcall(__HYPERVISOR_memory_op, 63, (u64)q, 0, 0, 0));
    ret("memory_op_bad_pointer", hcall(__HYPERVISOR_memory_op, XENMEM_machphys_mapping, SHIM_VA, 0, 0, 0));
    ret("grant_unknown_op", hcall(__HYPERVISOR_grant_table_op, 99, (u64)q, 1, 0, 0));
    ret("grant_setup_two", hcall(__HYPERVISOR_grant_table_op, GNTTABOP_setup_table, (u64)q, 2, 0, 0));
    ret("sched_op_unknown", hcall(__HYPERVISOR_sched_op, 99, 0, 0, 0, 0));
    ret("sched_shutdown_bad_pointer", hcall(__HYPERVISOR_sched_op, SCHEDOP_shutdown, 0x10000000, 0, 0, 0));
    ret("multicall_bad_list", hcall(__HYPERVISOR_multicall, 0x10000000, 1, 0, 0, 0));
    multicall_entry_t *m = (multicall_entry_t *)scratch;
    memset(m, 0, 2 * sizeof *m);
    m[0].op = __HYPERVISOR_multicall;
    m[0].args[0] = (u64)m;
    m[0].args[1] = 1;
    m[1].op = 60;
    ret("multicall_nested", hcall(__HYPERVISOR_multicall, (u64)m, 2, 0, 0, 0));
    ret("multicall_nested_result", (long)m[0].result);
    ret("multicall_unknown_result", (long)m[1].result);
    ret("physdev_unknown", hcall(__HYPERVISOR_physdev_op, 999, (u64)q, 0, 0, 0));
    ret("set_segment_base_bad_which", hcall(__HYPERVISOR_set_segment_base, 99, 0, 0, 0, 0));
    ret("set_segment_base_non_canonical", hcall(__HYPERVISOR_set_segment_base, SEGBASE_FS, 0x8000000000000000UL, 0, 0, 0));
    say("HOSTILE-SCRIPT-DONE");
}

/* ---- start of day ------------------------------------------------------ */

static u64 parse_num(const char *s) {
    u64 v = 0;
    while (*s >= '0' && *s <= '9') v = v * 10 + (u64)(*s++ - '0');
    return v;
}

static const char *opt(const char *cmdline, const char *key) {
    u64 k = slen(key);
    for (const char *p = cmdline; *p; p++) {
        if (p != cmdline && p[-1] != ' ') continue;
        u64 i = 0;
        while (i < k && p[i] == key[i]) i++;
        if (i == k) return p + k;
    }
    return 0;
}

/* ---- mode=xsflood: xenstore requests whose replies it never takes ------ */

static u32 store_port;

static void kick_store(void) {
    static evtchn_send_t send;
    send.port = store_port;
    hcall(__HYPERVISOR_event_channel_op, EVTCHNOP_send, (u64)&send, 0, 0, 0);
}

/* Appends bytes to the request ring, waiting (kick, yield) while it is full. */
static void xs_put(struct xenstore_domain_interface *x, const void *p, u32 n) {
    const u8 *b = p;
    for (u32 i = 0; i < n; i++) {
        while (x->req_prod - x->req_cons >= XENSTORE_RING_SIZE) {
            kick_store();
            hcall(__HYPERVISOR_sched_op, SCHEDOP_yield, 0, 0, 0, 0);
        }
        x->req[MASK_XENSTORE_IDX(x->req_prod)] = b[i];
        asm volatile("" ::: "memory");
        x->req_prod++;
    }
}

static void xs_request(struct xenstore_domain_interface *x, u32 type, u32 id,
                       const char *path, const u8 *value, u32 value_len) {
    u32 plen = slen(path) + 1;
    struct xsd_sockmsg h = {.type = type, .req_id = id, .tx_id = 0,
                            .len = plen + value_len};
    xs_put(x, &h, sizeof h);
    xs_put(x, path, plen);
    if (value_len) xs_put(x, value, value_len);
}

static void xsflood(void) {
    struct xenstore_domain_interface *x = (void *)va_of(store_mfn);
    static u8 big[4000];
    for (u32 i = 0; i < sizeof big; i++) big[i] = 'x';
    /* Its own 4000-byte node, answered properly: "OK". */
    xs_request(x, XS_WRITE, 1, "data/big", big, sizeof big);
    kick_store();
    while (x->rsp_prod - x->rsp_cons < sizeof(struct xsd_sockmsg) + 3)
        hcall(__HYPERVISOR_sched_op, SCHEDOP_yield, 0, 0, 0, 0);
    x->rsp_cons = x->rsp_prod;
    say("HOSTILE-XSFLOOD-START");
    for (u64 n = 1;; n++) {
        xs_request(x, XS_READ, (u32)n + 1, "data/big", 0, 0);
        if (n % 32 == 0) kick_store();
        if (n % 1000 == 0) {
            add("HOSTILE-XSFLOOD ");
            add_dec(n);
            flush_line();
        }
    }
}

void kmain(start_info_t *si) {
    static char cmdline[MAX_GUEST_CMDLINE];
    for (int i = 0; i < MAX_GUEST_CMDLINE - 1; i++) cmdline[i] = si->cmd_line[i];
    nr_pages = si->nr_pages;
    pt_va = si->pt_base;
    pt_mfn = mfn_of(pt_va);
    nr_pt = si->nr_pt_frames;
    store_mfn = si->store_mfn;
    console_mfn = si->console.domU.mfn;
    store_port = si->store_evtchn;
    scratch_mfn = mfn_of((u64)scratch);
    /* Past the boot page tables and stack, with room to spare. */
    free_lo = pt_mfn + nr_pt + 64;
    install_traps();

    add("HOSTILE-START pages=");
    add_dec(nr_pages);
    add(" pt_frames=");
    add_dec(nr_pt);
    add(" free_lo=");
    add_dec(free_lo);
    flush_line();
    if (free_lo + 256 > nr_pages) {
        say("HOSTILE-ERROR too little memory for the fuzzer");
        shutdown(SHUTDOWN_crash);
    }

    const char *mode = opt(cmdline, "mode=");
    if (mode && mode[0] == 'c') {
        say("HOSTILE-CRASH-AT-BOOT");
        shutdown(SHUTDOWN_crash);
        return;
    }
    if (mode && mode[0] == 'r') {
        say("HOSTILE-REBOOT-AT-BOOT");
        shutdown(SHUTDOWN_reboot);
        return;
    }
    if (mode && mode[0] == 'p') {
        say("HOSTILE-POWEROFF-AT-BOOT");
        shutdown(SHUTDOWN_poweroff);
        return;
    }
    if (mode && mode[0] == 'a') {
        const char *s = opt(cmdline, "seed=");
        rng ^= (s ? parse_num(s) : 1) * 0x9E3779B97F4A7C15UL;
        if (!rng) rng = 1;
        alias_smash(2000);
        return;
    }
    if (mode && mode[0] == 'x') {
        xsflood();
        return;
    }
    if (mode && mode[0] == 's') {
        script();
        shutdown(SHUTDOWN_poweroff);
        return;
    }
    const char *s = opt(cmdline, "seed=");
    const char *c = opt(cmdline, "count=");
    u64 seed = s ? parse_num(s) : 1;
    u64 count = c ? parse_num(c) : 1000;
    rng ^= seed * 0x9E3779B97F4A7C15UL;
    if (!rng) rng = 1;
    for (int i = 0; i < 8; i++) rnd();

    u64 next_report = 1000;
    while (calls < count) {
        fuzz_one();
        if (calls >= next_report) {
            add("HOSTILE-PROGRESS ");
            add_dec(calls);
            flush_line();
            next_report += 1000;
        }
    }
    add("HOSTILE-DONE seed=");
    add_dec(seed);
    add(" calls=");
    add_dec(calls);
    flush_line();
    shutdown(SHUTDOWN_poweroff);
}
