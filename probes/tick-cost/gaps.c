/* Where does a guest's user-space CPU time go? Spins on rdtsc for SECONDS
 * and sums every gap longer than 2 us (the time the program did not run:
 * the guest's timer tick, host interrupts, preemption), by size. Run it
 * natively and inside a guest (probes/tick-cost/run) and compare. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <x86intrin.h>

static unsigned long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000ULL + t.tv_nsec;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 3;
    /* TSC ticks per ns over 100 ms. */
    unsigned long long t0 = now_ns(), c0 = __rdtsc();
    while (now_ns() - t0 < 100000000ULL)
        ;
    double per_ns = (double)(__rdtsc() - c0) / (now_ns() - t0);

    unsigned long long count[12] = {0};
    double total_us[12] = {0};
    unsigned long long end = __rdtsc() + (unsigned long long)(secs * 1e9 * per_ns);
    unsigned long long prev = __rdtsc(), gaps = 0;
    for (;;) {
        unsigned long long now = __rdtsc(), d = now - prev;
        prev = now;
        if (d > 2000 * per_ns) {
            double us = d / per_ns / 1000;
            int b = 0;
            while (b < 11 && us >= (4 << b))
                b++;
            count[b]++;
            total_us[b] += us;
            gaps++;
        }
        if (now > end)
            break;
    }
    double lost = 0;
    for (int b = 0; b < 12; b++)
        lost += total_us[b];
    printf("GAPS %llu gaps, %.0f us lost in %.1f s (%.2f %%)\n", gaps, lost, secs,
           lost / (secs * 1e4));
    for (int b = 0; b < 12; b++)
        if (count[b])
            printf("GAPS < %5d us: %6llu gaps, avg %7.1f us, %5.2f %% of the time\n", 4 << b,
                   count[b], total_us[b] / count[b], total_us[b] / (secs * 1e4));
    return 0;
}
