/* rxen-bench's guest program: the same static binary runs inside the guests
 * (rxen, QEMU TCG) and natively on the host. It times itself, so the figure
 * excludes starting the process, and prints one `RXEN-BENCH ...` line for the
 * harness to parse: `ns=` is wall time (CLOCK_MONOTONIC), `cpu_ns=` the
 * process's CPU time (CLOCK_PROCESS_CPUTIME_ID), which on a busy host leaves
 * out the time the process waited for a CPU.
 *
 *   cpu ROUNDS      a xorshift loop over ROUNDS rounds (pure user-space
 *                   compute); the sum proves every run did the same work
 *   syscall MIN_MS  getppid() in a tight loop for at least MIN_MS ms
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static unsigned long long clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

static unsigned long long now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
static unsigned long long cpu_ns(void) { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); }

static int cpu(unsigned long rounds) {
    unsigned long x = 88172645463325252UL, sum = 0;
    unsigned long long c0 = cpu_ns(), t0 = now_ns();
    for (unsigned long i = 0; i < rounds; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sum += x;
    }
    unsigned long long t1 = now_ns(), c1 = cpu_ns();
    printf("RXEN-BENCH cpu rounds=%lu ns=%llu cpu_ns=%llu sum=%lu\n", rounds, t1 - t0, c1 - c0,
           sum);
    return 0;
}

static int syscall_loop(unsigned long long min_ms) {
    unsigned long long min_ns = min_ms * 1000000ULL, c0 = cpu_ns(), t0 = now_ns(), t1;
    unsigned long calls = 0;
    long ppid = 0;
    /* Read the clock once per 64 calls so that it does not weigh on the
     * figure (in a guest, clock_gettime may itself be a system call). */
    do {
        for (int i = 0; i < 64; i++)
            ppid = getppid();
        calls += 64;
        t1 = now_ns();
    } while (t1 - t0 < min_ns);
    unsigned long long c1 = cpu_ns();
    printf("RXEN-BENCH syscall calls=%lu ns=%llu cpu_ns=%llu ppid=%ld\n", calls, t1 - t0, c1 - c0,
           ppid);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "cpu") == 0)
        return cpu(strtoul(argv[2], 0, 10));
    if (argc == 3 && strcmp(argv[1], "syscall") == 0)
        return syscall_loop(strtoull(argv[2], 0, 10));
    fprintf(stderr, "usage: %s cpu ROUNDS | syscall MIN_MS\n", argv[0]);
    return 2;
}
