//! End-to-end check of what guestprep prepares: Debian's kernel boots the
//! busybox initramfs under QEMU's TCG (pure emulation, no KVM needed), runs
//! `/init` and a static test program, and powers off. Needs Debian's
//! `qemu-system-x86` (CI installs it); fails, rather than skips, without it.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROGRAM: &str = r#"
#include <stdio.h>
#include <unistd.h>
int main(void) {
    unsigned long x = 0;
    for (unsigned long i = 0; i < 1000000; i++) x += i * i;
    printf("static-program ppid=%d sum=%lu\n", (int)getppid(), x);
    return 0;
}
"#;

const INIT: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
echo "RXEN-MARKER uname=$(uname -r)"
/opt/prog
echo "RXEN-APPLETS $(seq 3 | tr '\n' ' ')"
poweroff -f
"#;

#[test]
fn debian_kernel_boots_busybox_initramfs_under_qemu_tcg() {
    let kernel = guestprep::debian_kernel(guestprep::Flavour::Amd64).unwrap();
    let prog = guestprep::static_binary("tcg-smoke", PROGRAM).unwrap();
    let spec = guestprep::Initramfs {
        init_script: INIT.into(),
        files: vec![("/opt/prog".into(), prog, 0o755)],
    };
    let initramfs = guestprep::busybox_initramfs(&spec).unwrap();

    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "256", "-nographic", "-no-reboot"])
        .args(["-nodefaults", "-serial", "stdio", "-kernel"])
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(&initramfs)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 not found: install Debian's qemu-system-x86");
    // Read in a thread so that a hung guest is killed after the deadline.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let deadline = Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("guest did not power off within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let console = reader.join().unwrap();
    eprintln!("TCG boot to poweroff: {:.1?}\n{console}", start.elapsed());
    assert!(status.success(), "qemu exited with {status}\n{console}");
    assert!(
        console.contains(&format!("RXEN-MARKER uname={}", kernel.version)),
        "{console}"
    );
    assert!(console.contains("static-program ppid=1 sum="), "{console}");
    assert!(console.contains("RXEN-APPLETS 1 2 3"), "{console}");
    assert!(console.contains("reboot: Power down"), "{console}");
}
