/* Reproducer of a known rxen bug (open): a guest's #BP (int3) is sometimes
 * lost, or its handler entered one byte early, when a kick (timer or
 * device event) stops the vCPU around the trap's delivery. User space here
 * executes int3 in a loop and counts the SIGTRAPs the guest kernel sends
 * back; every one should arrive. Natively: lost=0. In an rxen guest on
 * 2026-11-26: lost=32..71 of 20 000, or a guest kernel oops in
 * xen_asm_exc_xen_unknown_trap+0xf (one byte before the int3 handler).
 * The same loss makes Debian's boot-time int3_selftest fail now and then
 * ("kernel BUG at arch/x86/kernel/alternative.c:1143"). */
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
