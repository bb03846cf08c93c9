/* trap-paths: what each way of getting from guest CPL3 into rxen's CPL0 shim
 * (and on to the VMM) costs on this host. See README.md for how to run it and
 * docs/trap-paths.md for the figures. Build: see README.md. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM (4 << 20)
#define SHIM 0x200000 /* supervisor-only 2 MiB page holding guest.bin */
#define USER 0x10000  /* user page: guest.bin's user part is copied here */

static const char *names[] = {
    "ud2 -> #UD -> CPL0 handler -> iretq",
    "syscall -> LSTAR in a user page (jmp *rcx), no CPL0",
    "syscall -> LSTAR ud2 -> #UD -> CPL0 -> iretq (rxen's hypercall path)",
    "  same + one PIO exit to the VMM from CPL0",
    "syscall -> LSTAR in a supervisor page -> #PF -> CPL0 -> iretq",
    "ud2 -> #UD -> CPL0 + one PIO exit to the VMM -> iretq",
    "PIO exit to the VMM straight from CPL3 (IOPL 3)",
    "ud2 -> #UD -> CPL0 + 32 more plain instructions -> iretq",
    "ud2 -> #UD -> CPL0 + CR3 reload -> iretq",
    "syscall -> LSTAR in a user page: PIO exit from CPL3, jmp *rcx",
    "PIO exit to the VMM from CPL0, staying at CPL0 (no CPL3 at all)",
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void gate(uint8_t *mem, int vec, uint64_t h) {
    uint64_t *g = (void *)(mem + 0x4000 + 16 * vec);
    g[0] = (h & 0xffff) | ((uint64_t)0x08 << 16) | ((uint64_t)0x8e << 40) | (((h >> 16) & 0xffff) << 48);
    g[1] = h >> 32;
}

static double run_variant(int variant, long iters) {
    int kvm = open("/dev/kvm", O_RDWR);
    if (kvm < 0) { perror("/dev/kvm"); exit(1); }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    uint8_t *mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    struct kvm_userspace_memory_region r = {.slot = 0, .memory_size = MEM, .userspace_addr = (uint64_t)mem};
    ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r);
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    struct kvm_run *run = mmap(NULL, ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);

    FILE *f = fopen("guest.bin", "rb");
    if (!f) { perror("guest.bin"); exit(1); }
    size_t n = fread(mem + SHIM, 1, 0x10000, f);
    fclose(f);
    memcpy(mem + USER, mem + SHIM + 0x1000, n - 0x1000);

    uint64_t *pml4 = (void *)(mem + 0x5000), *pdpt = (void *)(mem + 0x6000), *pd = (void *)(mem + 0x7000);
    pml4[0] = 0x6000 | 7;
    pdpt[0] = 0x7000 | 7;
    pd[0] = 0x87;           /* 0-2 MiB: user */
    pd[1] = SHIM | 0x83;    /* 2-4 MiB: supervisor only */
    uint64_t *gdt = (void *)(mem + 0x1000);
    gdt[1] = 0x00af9b000000ffffULL; /* 0x08 kernel code */
    gdt[2] = 0x00cf93000000ffffULL; /* 0x10 kernel data */
    gdt[3] = 0x00cffb000000ffffULL; /* 0x18 user code 32 */
    gdt[4] = 0x00cff3000000ffffULL; /* 0x20 user data */
    gdt[5] = 0x00affb000000ffffULL; /* 0x28 user code 64 */
    uint64_t tss = 0x3000;
    gdt[6] = 0x67 | ((tss & 0xffffff) << 16) | ((uint64_t)0x89 << 40) | (((tss >> 24) & 0xff) << 56);
    gdt[7] = tss >> 32;
    *(uint64_t *)(mem + tss + 4) = SHIM + 0x100000; /* RSP0 in the supervisor page */

    static const uint16_t ud_handler[] = {0x100, 0x100, 0x200, 0x300, 0x100, 0x500, 0x100, 0x600, 0x900, 0x100, 0x100};
    gate(mem, 6, SHIM + ud_handler[variant]);
    gate(mem, 14, SHIM + (variant == 4 ? 0x400 : 0xa00));
    gate(mem, 13, SHIM + 0xa00);
    uint64_t lstar = variant == 1   ? USER + 0x800
                     : variant == 4 ? SHIM + 0xa00
                     : variant == 9 ? USER + 0xa00
                                    : USER + 0x900;

    struct kvm_sregs s;
    ioctl(vcpu, KVM_GET_SREGS, &s);
    struct kvm_segment seg = {.limit = 0xffffffff, .selector = 0x08, .present = 1, .type = 11, .s = 1, .l = 1, .g = 1};
    s.cr3 = 0x5000; s.cr4 = 1 << 5; s.cr0 = 0x80050033; s.efer = 0x501;
    s.cs = seg;
    seg.type = 3; seg.selector = 0x10; seg.l = 0; seg.db = 1;
    s.ds = s.es = s.fs = s.gs = s.ss = seg;
    ioctl(vcpu, KVM_SET_SREGS, &s);
    struct { struct kvm_msrs h; struct kvm_msr_entry e[3]; } msrs = {
        .h.nmsrs = 3,
        .e = {{.index = 0xc0000081, .data = ((uint64_t)0x1b << 48) | ((uint64_t)0x08 << 32)},
              {.index = 0xc0000082, .data = lstar},
              {.index = 0xc0000084, .data = 0x200}}};
    if (ioctl(vcpu, KVM_SET_MSRS, &msrs) != 3) { perror("KVM_SET_MSRS"); exit(1); }
    struct kvm_regs rg = {.rip = SHIM, .rbx = iters, .r12 = variant, .rflags = 2, .rsp = SHIM + 0x100000};
    ioctl(vcpu, KVM_SET_REGS, &rg);

    double t0 = now();
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) { perror("KVM_RUN"); exit(1); }
        if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0x12) continue;
        if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0x10) break;
        ioctl(vcpu, KVM_GET_REGS, &rg);
        fprintf(stderr, "variant %d: unexpected exit %d (port %#x) at rip %#llx\n", variant, run->exit_reason,
                run->exit_reason == KVM_EXIT_IO ? run->io.port : 0, rg.rip);
        exit(1);
    }
    double t = now() - t0;
    close(vcpu); close(vm); close(kvm);
    munmap(mem, MEM);
    return t / iters * 1e6;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 20000;
    int only = argc > 2 ? atoi(argv[2]) : -1;
    printf("| variant | path | us per round trip |\n| --- | --- | --- |\n");
    for (int v = 0; v < 11; v++) {
        if (only >= 0 && v != only) continue;
        double us = run_variant(v, iters);
        printf("| %d | %s | %.1f |\n", v, names[v], us);
        fflush(stdout);
    }
    return 0;
}
