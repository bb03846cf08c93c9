//! The CPU a PV guest sees: the user-level instruction sets of the host's
//! CPU (SSE4.2, POPCNT, CMPXCHG16B, and AVX/AVX2/AVX-512 through XSAVE with
//! the guest's `xsetbv` emulated), and AVX state that survives context
//! switches between guest processes; and that guest user mode cannot reach
//! what only the guest kernel's page tables map (rxen's kernel stub and its
//! alias of guest RAM). Needs /dev/kvm and root; fails without them.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{require_kvm, run_with_deadline, rxen, TempDir};
use guestprep::{Flavour, Initramfs};

/// Two processes (parent and child) each add vectors in AVX registers and
/// yield the CPU often, so the kernel switches between them while their
/// ymm state is live; each checks its sum. Without AVX it says so.
const AVX_C: &str = r#"
#include <immintrin.h>
#include <sched.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
__attribute__((target("avx2"))) static double run(int seed) {
    __m256d acc = _mm256_set1_pd(seed);
    __m256d inc = _mm256_set_pd(1.0, 2.0, 3.0, 4.0);
    for (long i = 0; i < 4000000; i++) {
        acc = _mm256_add_pd(acc, inc);
        if ((i & 0x3ffff) == 0) sched_yield();
    }
    double o[4];
    _mm256_storeu_pd(o, acc);
    return o[0] + o[1] + o[2] + o[3];
}
int main(void) {
    if (!__builtin_cpu_supports("avx2")) { printf("AVX absent\n"); return 0; }
    pid_t p = fork();
    int seed = p == 0 ? 7 : 3;
    double r = run(seed);
    double want = seed * 4.0 + 4000000.0 * 10.0;
    printf("AVX %s %s\n", p == 0 ? "child" : "parent", r == want ? "ok" : "WRONG");
    if (p) wait(NULL);
    return 0;
}
"#;

/// The host's /proc/cpuinfo flags.
fn host_flags() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let line = info.lines().find(|l| l.starts_with("flags")).unwrap();
    line.split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Boots Debian's kernel with `initrd` in the foreground (domain
/// `rxen-test-TAG`) until it powers off; returns its console.
fn boot_to_poweroff(tag: &str, initrd: &std::path::Path) -> String {
    let kernel = guestprep::debian_kernel(Flavour::Amd64).expect("fetch the kernel");
    let dir = TempDir::new(tag);
    let cfg = common::write_config(
        &dir.path().join(format!("{tag}.cfg")),
        &format!("rxen-test-{tag}"),
        &kernel.vmlinuz,
        initrd,
        256,
        "",
    );
    let run = run_with_deadline(
        Command::new(rxen())
            .env("RXEN_STATE_DIR", dir.path().join("state"))
            .args(["create", "-F", "-c"])
            .arg(&cfg),
        Duration::from_secs(240),
    );
    let t = run.text();
    assert!(!run.timed_out, "rxen hung:\n{t}");
    assert_eq!(run.code(), Some(0), "poweroff must exit 0:\n{t}");
    t
}

/// Builds C program `source` statically, runs it as `/bin/TAG ARGS` from
/// a busybox initramfs and powers off; returns the console.
fn run_program(tag: &str, source: &str, args: &str) -> String {
    let prog = guestprep::static_binary(tag, source).expect("build the test program");
    let initrd = guestprep::busybox_initramfs(&Initramfs {
        init_script: format!("#!/bin/busybox sh\n/bin/{tag} {args}\npoweroff -f\n"),
        files: vec![(format!("/bin/{tag}"), prog, 0o755)],
    })
    .expect("build the initramfs");
    boot_to_poweroff(tag, &initrd)
}

#[test]
fn guest_sees_the_cpus_user_instructions_and_keeps_avx_state() {
    require_kvm();
    let avx = guestprep::static_binary("avx-switch", AVX_C).expect("build the AVX program");
    let initrd = guestprep::busybox_initramfs(&Initramfs {
        init_script: "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n\
                      echo \"FLAGS=$(grep -m1 ^flags /proc/cpuinfo | cut -d: -f2)\"\n\
                      /bin/avx\npoweroff -f\n"
            .into(),
        files: vec![("/bin/avx".into(), avx, 0o755)],
    })
    .expect("build the initramfs");
    let t = boot_to_poweroff("cpu", &initrd);
    let guest: Vec<&str> = t
        .lines()
        .find_map(|l| l.split_once("FLAGS="))
        .map(|(_, f)| f.split_whitespace().collect())
        .unwrap_or_else(|| panic!("no FLAGS line:\n{t}"));
    let host = host_flags();
    for f in [
        "sse4_2", "popcnt", "cx16", "ssse3", "avx", "avx2", "xsave", "avx512f", "avx512bw",
    ] {
        if host.iter().any(|h| h == f) {
            assert!(
                guest.contains(&f),
                "guest lacks {f} the host has: {guest:?}"
            );
        }
    }
    // Never shown: state the PV machine does not manage.
    for f in ["xsaves", "amx_tile", "pku", "x2apic", "pse", "pge"] {
        assert!(!guest.contains(&f), "guest must not see {f}: {guest:?}");
    }
    if host.iter().any(|h| h == "avx2") {
        assert!(t.contains("AVX parent ok"), "{t}");
        assert!(t.contains("AVX child ok"), "{t}");
    } else {
        assert!(t.contains("AVX absent"), "{t}");
    }
    assert!(!t.contains("WRONG"), "{t}");
}

/// Every `int3` in guest user space reaches its SIGTRAP handler, also when
/// the guest's timer kicks the vCPU around the trap (rxen's direct event
/// upcall once moved RIP while KVM still held the #BP: 24-71 of 20 000
/// were lost, or the guest kernel oopsed; probes/int3-loss).
#[test]
fn no_breakpoint_trap_is_lost_to_an_event_upcall() {
    require_kvm();
    let t = run_program(
        "int3",
        include_str!("../../../probes/int3-loss/int3-loop.c"),
        "20000",
    );
    assert!(
        t.contains("INT3 executed=20000 trapped=20000 lost=0"),
        "int3 traps were lost:\n{t}"
    );
}

/// A guest user program probes rxen's kernel stub (slot 259: its code and
/// data pages, its writable alias of guest RAM) and issues a SYSCALL shaped
/// like the single `mmu_update` the stub finishes in kernel mode. From user
/// mode every probe must fault, and the SYSCALL must reach the guest
/// kernel as the system call it is (write(2) on a bad fd: -EBADF), never
/// the stub (which would return 0 after writing a page-table entry).
const KSTUB_PROBE_C: &str = r#"
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
static sigjmp_buf env;
static void on_fault(int s) { (void)s; siglongjmp(env, 1); }
static int readable(volatile uint64_t *p) {
    if (sigsetjmp(env, 1)) return 0;
    (void)*p;
    return 1;
}
static int writable(volatile uint64_t *p) {
    if (sigsetjmp(env, 1)) return 0;
    *p = 0;
    return 1;
}
int main(void) {
    signal(SIGSEGV, on_fault);
    signal(SIGBUS, on_fault);
    uint64_t stub = 0xffff818000000000ull, alias = stub + (1ull << 30);
    int reached = readable((uint64_t *)stub) + readable((uint64_t *)(stub + 4096)) +
                  readable((uint64_t *)(alias + 0x100000)) +
                  writable((uint64_t *)(alias + 0x100000));
    struct { uint64_t ptr, val; } req = {0x1000, 0};
    long r;
    register long r10 asm("r10") = 0x7ff0;
    asm volatile("syscall"
                 : "=a"(r)
                 : "a"(1L), "D"(&req), "S"(1L), "d"(0L), "r"(r10)
                 : "rcx", "r11", "memory");
    printf("KSTUB reached=%d syscall=%ld\n", reached, r);
    return 0;
}
"#;

#[test]
fn guest_user_mode_cannot_reach_the_kernel_stub_or_its_ram_alias() {
    require_kvm();
    let t = run_program("kstub", KSTUB_PROBE_C, "");
    assert!(
        t.contains("KSTUB reached=0 syscall=-9"),
        "guest user mode reached the kernel stub or its alias:\n{t}"
    );
}
