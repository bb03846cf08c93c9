/* User space executes int3 in a loop and counts the SIGTRAPs the kernel
 * sends back; every one should arrive (natively: lost=0). It found an rxen
 * bug, fixed on 2026-11-26: when a kick stopped the vCPU around the #BP,
 * rxen's direct event upcall moved RIP while KVM still held the software
 * exception (KVM_GET_VCPU_EVENTS does not report those), so 24-71 of
 * 20 000 traps were lost, or the guest kernel oopsed one byte before a
 * handler; Debian's boot-time int3_selftest failed now and then ("kernel
 * BUG at arch/x86/kernel/alternative.c:1143"). guest_cpu.rs runs it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static volatile unsigned long traps;

static void on_trap(int sig) {
    (void)sig;
    traps++;
}

int main(int argc, char **argv) {
    unsigned long n = argc > 1 ? strtoul(argv[1], 0, 10) : 20000;
    signal(SIGTRAP, on_trap);
    for (unsigned long i = 0; i < n; i++)
        __asm__ volatile("int3; nop");
    printf("INT3 executed=%lu trapped=%lu lost=%lu\n", n, traps, n - traps);
    return 0;
}
