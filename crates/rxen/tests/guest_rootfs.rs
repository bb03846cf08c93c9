//! A Debian system on a disk: a root file system built by `debootstrap`
//! (cached), booted from `xvda` with Debian's cloud kernel (ext4 built in)
//! and a small initramfs that loads xen-blkfront and switches root.
//!
//! 1. On the image itself: write and fsync a file, reboot (exit status 3).
//! 2. Boot again: the file is there.
//! 3. On a qcow2 clone of the image: install a local .deb with dpkg.
//! 4. Boot the clone again: the package is installed; the base image's
//!    checksum never changed; deleting the clone leaves nothing behind.
//!
//! Needs /dev/kvm, root, `debootstrap` and `qemu-img`; fails and says so
//! without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use guestprep::{Flavour, Initramfs};

fn sha(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    h.finalize().to_vec()
}

fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rxen");
    let pid = child.id() as i32;
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(limit);
        // SAFETY: kill(2) on a pid we spawned; harmless if it already exited.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let out = child.wait_with_output().expect("wait for rxen");
    drop(watchdog);
    out
}

/// /init: load blkfront, mount xvda, hand over to Debian's shell running
/// the step the kernel command line names (`rxen.step=N`).
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
insmod /lib/xen-blkfront.ko || echo INSMOD-FAILED
i=0
while [ ! -b /dev/xvda ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
mkdir -p /newroot
if ! mount -t ext4 /dev/xvda /newroot; then echo MOUNT-FAILED; poweroff -f; fi
step=$(sed -n 's/.*rxen\.step=\([0-9]*\).*/\1/p' /proc/cmdline)
cp /rxen-test.deb /newroot/tmp/
cp /steps/step$step.sh /newroot/tmp/rxen-step.sh
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
echo "ROOT-MOUNTED step $step"
exec switch_root /newroot /bin/sh /tmp/rxen-step.sh
"#;

/// What Debian's own shell (dash) runs in each boot. It is PID 1: after
/// sysrq `o` (power off, done by a kernel worker) it must not exit first.
const STEPS: [&str; 4] = [
    // 1: write and fsync a file, then reboot at once.
    "echo \"DEBIAN=$(cat /etc/debian_version)\"\n\
     echo 'persisted by rxen' > /root/persist.txt\n\
     sync\n\
     echo STEP1-SYNCED\n\
     echo b > /proc/sysrq-trigger\n",
    // 2: the file survived the reboot.
    "echo \"PERSIST=$(cat /root/persist.txt)\"\n\
     echo o > /proc/sysrq-trigger; sleep 30\n",
    // 3: on the clone, install a local package.
    "dpkg -i /tmp/rxen-test.deb > /tmp/dpkg.log 2>&1; echo \"DPKG=$?\"\n\
     tail -3 /tmp/dpkg.log\n\
     sync\n\
     echo o > /proc/sysrq-trigger; sleep 30\n",
    // 4: still installed after a fresh boot of the clone.
    "echo \"STATUS=$(dpkg-query -W -f='${Status}' rxen-test)\"\n\
     echo \"MARKER=$(cat /usr/share/rxen-test/marker)\"\n\
     echo o > /proc/sysrq-trigger; sleep 30\n",
];

/// A tiny package with one file, built with dpkg-deb.
fn test_deb(dir: &Path) -> PathBuf {
    let root = dir.join("deb");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/rxen-test")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: rxen-test\nVersion: 1.0\nArchitecture: all\nMaintainer: rxen <rxen@localhost>\n\
         Description: rxen clone test package\n",
    )
    .unwrap();
    std::fs::write(
        root.join("usr/share/rxen-test/marker"),
        "installed in a clone\n",
    )
    .unwrap();
    let deb = dir.join("rxen-test.deb");
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .expect("dpkg-deb");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    deb
}

fn value<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines().find_map(|l| {
        l.trim_end_matches('\r')
            .split_once(key)
            .map(|(_, v)| v.trim())
    })
}

#[test]
fn debian_boots_from_a_disk_and_a_clone_keeps_the_base_unchanged() {
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    assert!(kvm.is_ok(), "guest tests need /dev/kvm: {:?}", kvm.err());
    let rootfs = guestprep::debian_rootfs(&guestprep::Rootfs::default())
        .expect("build the Debian root file system (needs root and debootstrap)");
    let kernel =
        guestprep::debian_kernel(Flavour::CloudAmd64).expect("fetch Debian's cloud kernel");
    let blkfront = guestprep::kernel_module(Flavour::CloudAmd64, "drivers/block/xen-blkfront.ko")
        .expect("fetch xen-blkfront.ko");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest-rootfs");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let deb = test_deb(&dir);

    let mut files = vec![
        (
            "lib/xen-blkfront.ko".to_string(),
            std::fs::read(&blkfront).unwrap(),
            0o644,
        ),
        (
            "rxen-test.deb".to_string(),
            std::fs::read(&deb).unwrap(),
            0o644,
        ),
    ];
    for (i, s) in STEPS.iter().enumerate() {
        files.push((
            format!("steps/step{}.sh", i + 1),
            s.as_bytes().to_vec(),
            0o755,
        ));
    }
    let initrd = guestprep::busybox_initramfs(&Initramfs {
        init_script: INIT.into(),
        files,
    })
    .expect("build the initramfs");

    // The cached image stays pristine: the test works on a sparse copy.
    let base = dir.join("debian.raw");
    let cp = Command::new("cp")
        .arg("--sparse=always")
        .arg(&rootfs)
        .arg(&base)
        .status()
        .unwrap();
    assert!(cp.success());

    let boot = |step: u32, target: &Path, format: &str| -> (Output, String) {
        // One boot per step: a reboot ends it (on_reboot), exit status 3.
        let cfg = dir.join(format!("step{step}.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "name = \"rxen-test-rootfs\"\nkernel = \"{}\"\nramdisk = \"{}\"\nmemory = 512\n\
                 extra = \"console=hvc0 quiet rxen.step={step}\"\n\
                 disk = ['format={format}, vdev=xvda, access=rw, target={}']\n\
                 on_reboot = \"destroy\"\n",
                kernel.vmlinuz.display(),
                initrd.display(),
                target.display()
            ),
        )
        .unwrap();
        let out = run_with_timeout(
            Command::new(env!("CARGO_BIN_EXE_rxen"))
                // Its own registry: another worktree's run of this test
                // registers the same domain name in the default one.
                .env("RXEN_STATE_DIR", dir.join("state"))
                .args(["create", "-F", "-c"])
                .arg(&cfg),
            Duration::from_secs(300),
        );
        let t = format!(
            "{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            t.contains(&format!("ROOT-MOUNTED step {step}")),
            "step {step}:\n{t}"
        );
        (out, t)
    };

    let (out, t) = boot(1, &base, "raw");
    assert!(
        value(&t, "DEBIAN=").is_some_and(|v| v.starts_with("12")),
        "{t}"
    );
    assert!(t.contains("STEP1-SYNCED"), "{t}");
    assert_eq!(
        out.status.code(),
        Some(3),
        "sysrq b must reboot (exit 3):\n{t}"
    );
    let (out, t) = boot(2, &base, "raw");
    assert_eq!(value(&t, "PERSIST="), Some("persisted by rxen"), "{t}");
    assert_eq!(out.status.code(), Some(0), "{t}");

    let base_sum = sha(&base);
    let clone = dir.join("try.qcow2");
    let rxen = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_rxen"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "rxen {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    rxen(&[
        "image",
        "clone",
        base.to_str().unwrap(),
        clone.to_str().unwrap(),
    ]);
    let chain = rxen(&["image", "chain", clone.to_str().unwrap()]);
    assert!(chain.contains("debian.raw"), "{chain}");

    let (out, t) = boot(3, &clone, "qcow2");
    assert_eq!(value(&t, "DPKG="), Some("0"), "{t}");
    assert_eq!(out.status.code(), Some(0), "{t}");
    let (out, t) = boot(4, &clone, "qcow2");
    assert_eq!(value(&t, "STATUS="), Some("install ok installed"), "{t}");
    assert_eq!(value(&t, "MARKER="), Some("installed in a clone"), "{t}");
    assert_eq!(out.status.code(), Some(0), "{t}");

    assert_eq!(
        sha(&base),
        base_sum,
        "the base image changed under its clone"
    );
    let check = Command::new("qemu-img")
        .args(["check", clone.to_str().unwrap()])
        .output()
        .expect("qemu-img (Debian package qemu-utils)");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // Throwing the clone away is deleting one file; the base boots as before.
    std::fs::remove_file(&clone).unwrap();
    let (out, t) = boot(2, &base, "raw");
    assert_eq!(value(&t, "PERSIST="), Some("persisted by rxen"), "{t}");
    assert_eq!(out.status.code(), Some(0), "{t}");
}
