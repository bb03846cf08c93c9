/* rxnet: the network measuring program of rxen's tests and benchmarks.
 * The same static binary runs inside guests and natively (the baseline).
 *
 *   rxnet sink PORT              TCP: accept one connection, read to EOF
 *   rxnet send HOST PORT SECS    TCP: write as fast as possible for SECS
 *   rxnet echo PORT              UDP: echo every datagram back, forever
 *   rxnet ping HOST PORT COUNT   UDP: COUNT round trips of 64 bytes
 *
 * Each prints one line starting "RXNET" with key=value fields. The sink's
 * figure is the transfer's: first byte to end of stream.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) {
    printf("RXNET error what=%s errno=%d (%s)\n", what, errno, strerror(errno));
    fflush(stdout);
    exit(1);
}

static struct sockaddr_in addr(const char *host, int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    if (host == NULL)
        a.sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        errno = EINVAL;
        die("address");
    }
    return a;
}

static int sink(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (s < 0) die("socket");
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = addr(NULL, port);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(s, 1) < 0) die("listen");
    printf("RXNET listening port=%d\n", port);
    fflush(stdout);
    int c = accept(s, NULL, NULL);
    if (c < 0) die("accept");
    static char buf[1 << 17];
    unsigned long long total = 0;
    double t0 = 0, t1 = 0;
    for (;;) {
        ssize_t n = read(c, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("read");
        if (n == 0) break;
        t1 = now();
        if (total == 0) t0 = t1;
        total += n;
    }
    double secs = t1 > t0 ? t1 - t0 : 1e-9;
    printf("RXNET sink bytes=%llu secs=%.3f gbps=%.4f\n", total, secs, total * 8 / secs / 1e9);
    fflush(stdout);
    return 0;
}

static int send_for(const char *host, int port, double secs) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) die("socket");
    struct sockaddr_in a = addr(host, port);
    double deadline = now() + 30;
    while (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        /* The sink may not listen yet. */
        if (now() > deadline) die("connect");
        close(s);
        s = socket(AF_INET, SOCK_STREAM, 0);
        usleep(100000);
    }
    static char buf[1 << 16];
    memset(buf, 'x', sizeof buf);
    unsigned long long total = 0;
    double t0 = now(), end = t0 + secs;
    while (now() < end) {
        ssize_t n = write(s, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("write");
        total += n;
    }
    close(s);
    double t = now() - t0;
    printf("RXNET send bytes=%llu secs=%.3f gbps=%.4f\n", total, t, total * 8 / t / 1e9);
    fflush(stdout);
    return 0;
}

static int echo(int port) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) die("socket");
    struct sockaddr_in a = addr(NULL, port);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    printf("RXNET echoing port=%d\n", port);
    fflush(stdout);
    char buf[2048];
    for (;;) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (n < 0) continue;
        sendto(s, buf, n, 0, (struct sockaddr *)&from, fl);
    }
    return 0;
}

static int cmp(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static int ping(const char *host, int port, int count) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) die("socket");
    struct sockaddr_in a = addr(host, port);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
    struct timeval tv = {1, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    double *rtt = calloc(count, sizeof *rtt);
    int got = 0, lost = 0;
    char buf[64], back[2048];
    for (int i = 0; i < count; i++) {
        memset(buf, 0, sizeof buf);
        memcpy(buf, &i, sizeof i);
        double t0 = now();
        if (send(s, buf, sizeof buf, 0) < 0) { lost++; usleep(100000); continue; }
        for (;;) {
            ssize_t n = recv(s, back, sizeof back, 0);
            if (n < 0) { lost++; break; }
            int j;
            memcpy(&j, back, sizeof j);
            if (n == sizeof buf && j == i) { rtt[got++] = (now() - t0) * 1e6; break; }
        }
        usleep(10000);
    }
    if (got == 0) {
        printf("RXNET ping n=0 lost=%d\n", lost);
        fflush(stdout);
        return 1;
    }
    qsort(rtt, got, sizeof *rtt, cmp);
    double sum = 0;
    for (int i = 0; i < got; i++) sum += rtt[i];
    printf("RXNET ping n=%d lost=%d min_us=%.1f median_us=%.1f avg_us=%.1f max_us=%.1f\n",
           got, lost, rtt[0], rtt[got / 2], sum / got, rtt[got - 1]);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && !strcmp(argv[1], "sink")) return sink(atoi(argv[2]));
    if (argc == 5 && !strcmp(argv[1], "send")) return send_for(argv[2], atoi(argv[3]), atof(argv[4]));
    if (argc == 3 && !strcmp(argv[1], "echo")) return echo(atoi(argv[2]));
    if (argc == 5 && !strcmp(argv[1], "ping")) return ping(argv[2], atoi(argv[3]), atoi(argv[4]));
    fprintf(stderr, "usage: rxnet sink PORT | send HOST PORT SECS | echo PORT | ping HOST PORT COUNT\n");
    return 2;
}
