//! Guest-level tests: boot Debian's own kernel (fetched from Debian's
//! registry by guestprep) as a Xen PV domain through the `rxen` binary, as a
//! user would, and check what the guest reports about itself.
//!
//! These need /dev/kvm and root; without them they fail and say so.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{line_after, require_kvm, run_with_deadline, rxen, text, TempDir};
use guestprep::{Flavour, Initramfs};

/// A user-space compute loop: xorshift over N rounds, prints the checksum.
const COMPUTE_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    unsigned long n = argc > 1 ? strtoul(argv[1], 0, 10) : 1000000;
    unsigned long x = 88172645463325252UL, sum = 0;
    for (unsigned long i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        sum += x;
    }
    printf("COMPUTE %lu\n", sum);
    return 0;
}
"#;

const COMPUTE_ROUNDS: u64 = 50_000_000;
const FORKS: u32 = 200;

struct Guest {
    dir: TempDir,
    kernel: guestprep::Kernel,
}

impl Guest {
    fn new(tag: &str, flavour: Flavour) -> Guest {
        require_kvm();
        let kernel = guestprep::debian_kernel(flavour).expect("fetch Debian's kernel");
        Guest {
            dir: TempDir::new(tag),
            kernel,
        }
    }

    /// Boot with `init` as /init (plus `files`); returns the output and how long it ran.
    fn boot(
        &self,
        name: &str,
        init: &str,
        files: Vec<(String, Vec<u8>, u32)>,
    ) -> (Output, Duration) {
        let initrd = guestprep::busybox_initramfs(&Initramfs {
            init_script: init.to_string(),
            files,
        })
        .expect("build the initramfs");
        // on_reboot: a reboot ends the run (its exit status is checked).
        let cfg = common::write_config(
            &self.dir.path().join(format!("{name}.cfg")),
            name,
            &self.kernel.vmlinuz,
            &initrd,
            256,
            "on_reboot = \"destroy\"\n",
        );
        let run = run_with_deadline(
            // A private state directory: another session's run of this
            // test registers the same domain names.
            Command::new(rxen())
                .env("RXEN_STATE_DIR", self.dir.path().join("state"))
                .args(["create", "-F", "-c"])
                .arg(&cfg),
            Duration::from_secs(240),
        );
        (run.output, run.took)
    }
}

fn native_compute(bin: &Path) -> String {
    // ETXTBSY: another test thread that forks while `bin` was open for
    // writing holds a copy of that descriptor until its child execs.
    let mut tries = 0;
    let o = loop {
        match Command::new(bin).arg(COMPUTE_ROUNDS.to_string()).output() {
            Err(e) if e.raw_os_error() == Some(libc_etxtbsy()) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            r => break r.expect("run compute natively"),
        }
    };
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// ETXTBSY on Linux.
const fn libc_etxtbsy() -> i32 {
    26
}

#[test]
fn debian_kernel_boots_runs_userspace_and_powers_off() {
    let g = Guest::new("boot", Flavour::Amd64);
    let compute = guestprep::static_binary("compute", COMPUTE_C).expect("build compute");
    let bin = g.dir.path().join("compute");
    std::fs::write(&bin, &compute).unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let expected = native_compute(&bin);

    let init = format!(
        r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo RXEN-INIT-MARKER
echo "UNAME=$(uname -r)"
echo "MEMTOTAL=$(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)"
echo "CPUS=$(grep -c ^processor /proc/cpuinfo)"
echo "DATE=$(date +%s)"
u0=$(cut -d. -f1 /proc/uptime); sleep 3; u1=$(cut -d. -f1 /proc/uptime)
echo "UPTIME_DELTA=$((u1-u0))"
/bin/compute {COMPUTE_ROUNDS}
i=0
while [ $i -lt {FORKS} ]; do /bin/true; i=$((i+1)); done
echo "FORKED=$i"
echo RXEN-DONE-MARKER
poweroff -f
"#
    );
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (out, took) = g.boot(
        "rxen-test-boot",
        &init,
        vec![("bin/compute".into(), compute, 0o755)],
    );
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = text(&out);
    assert!(t.contains("RXEN-INIT-MARKER"), "no /init marker:\n{t}");
    assert_eq!(
        line_after(&t, "UNAME="),
        Some(g.kernel.version.as_str()),
        "{t}"
    );
    let mem: u64 = line_after(&t, "MEMTOTAL=")
        .and_then(|v| v.parse().ok())
        .expect("MemTotal");
    assert!(
        (150_000..=262_144).contains(&mem),
        "MemTotal {mem} kB for memory=256:\n{t}"
    );
    assert_eq!(line_after(&t, "CPUS="), Some("1"), "{t}");
    let date: u64 = line_after(&t, "DATE=")
        .and_then(|v| v.parse().ok())
        .expect("date");
    assert!(
        date + 2 >= before && date <= after + 2,
        "guest date {date} outside [{before}, {after}]:\n{t}"
    );
    let du: u64 = line_after(&t, "UPTIME_DELTA=")
        .and_then(|v| v.parse().ok())
        .expect("uptime delta");
    assert!(
        (2..=5).contains(&du),
        "3 s of sleep advanced uptime by {du} s:\n{t}"
    );
    assert!(
        t.contains(&expected),
        "compute loop gave a different result (want {expected}):\n{t}"
    );
    assert_eq!(
        line_after(&t, "FORKED="),
        Some(FORKS.to_string().as_str()),
        "{t}"
    );
    assert!(t.contains("RXEN-DONE-MARKER"), "{t}");
    assert_eq!(out.status.code(), Some(0), "poweroff must exit 0:\n{t}");
    eprintln!("boot + checks took {took:?}");
}

#[test]
fn guest_reboot_and_panic_report_their_reason() {
    let g = Guest::new("reasons", Flavour::Amd64);
    let (out, _) = g.boot(
        "rxen-test-reboot",
        "#!/bin/busybox sh\necho RXEN-REBOOTING\nreboot -f\n",
        vec![],
    );
    let t = text(&out);
    assert!(t.contains("RXEN-REBOOTING"), "{t}");
    assert_eq!(out.status.code(), Some(3), "reboot must exit 3:\n{t}");

    let (out, _) = g.boot(
        "rxen-test-panic",
        "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\necho RXEN-PANICKING\necho c > /proc/sysrq-trigger\n",
        vec![],
    );
    let t = text(&out);
    assert!(t.contains("RXEN-PANICKING"), "{t}");
    assert!(t.contains("Kernel panic"), "{t}");
    assert_eq!(
        out.status.code(),
        Some(4),
        "a kernel panic must exit 4 (crash):\n{t}"
    );
}
