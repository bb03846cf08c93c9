/* rxen-bench-disk's I/O program: the same static binary runs inside the
 * guest (on /dev/xvda) and on the host (on the image file behind it). It
 * times itself and prints one line per run for the harness:
 *
 *   RXEN-DISK mode=MODE bytes=N ops=N ns=N
 *
 * usage: disk-bench PATH MODE SIZE_MIB SECONDS direct|buffered
 *   seq-write, seq-read    1 MiB requests over the first SIZE_MIB MiB, in
 *                          order, one pass
 *   rand-write, rand-read  4 KiB requests at random 4 KiB-aligned offsets
 *                          in the first SIZE_MIB MiB, for SECONDS
 * Writes end with fdatasync(), inside the timed part: the data is durable
 * when the figure is taken, on the host as behind the guest's flush. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static unsigned long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (unsigned long long)t.tv_sec * 1000000000ULL + (unsigned long long)t.tv_nsec;
}

static int fail(const char *what, const char *path) {
    fprintf(stderr, "disk-bench: %s %s: ", what, path);
    perror(NULL);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s PATH MODE SIZE_MIB SECONDS direct|buffered\n", argv[0]);
        return 2;
    }
    const char *path = argv[1], *mode = argv[2];
    unsigned long long size = strtoull(argv[3], NULL, 10) << 20;
    double secs = atof(argv[4]);
    int direct = strcmp(argv[5], "direct") == 0;
    int write = strstr(mode, "write") != NULL, seq = strncmp(mode, "seq", 3) == 0;
    size_t bs = seq ? 1 << 20 : 4096;

    int fd = open(path, (write ? O_WRONLY : O_RDONLY) | (direct ? O_DIRECT : 0));
    if (fd < 0)
        return fail("cannot open", path);
    void *buf;
    if (posix_memalign(&buf, 4096, bs))
        return fail("cannot allocate a buffer for", path);
    /* Not zeros: nothing on the way may treat the data as sparse. */
    for (size_t i = 0; i < bs; i++)
        ((unsigned char *)buf)[i] = (unsigned char)(i * 131 + 7);

    unsigned long long x = 88172645463325252ULL, ops = 0, bytes = 0;
    unsigned long long t0 = now_ns(), limit = (unsigned long long)(secs * 1e9);
    for (;;) {
        off_t off;
        if (seq) {
            if (bytes >= size)
                break;
            off = (off_t)bytes;
        } else {
            if (now_ns() - t0 >= limit)
                break;
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            off = (off_t)((x % (size / bs)) * bs);
        }
        ssize_t n = write ? pwrite(fd, buf, bs, off) : pread(fd, buf, bs, off);
        if (n != (ssize_t)bs)
            return fail(write ? "short write to" : "short read from", path);
        ops++;
        bytes += bs;
    }
    if (write && fdatasync(fd))
        return fail("cannot sync", path);
    unsigned long long ns = now_ns() - t0;
    printf("RXEN-DISK mode=%s bytes=%llu ops=%llu ns=%llu\n", mode, bytes, ops, ns);
    close(fd);
    return 0;
}
