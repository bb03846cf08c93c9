//! Disk hot-plug on a running, detached domain: `rxen block-attach` gives
//! the guest a new disk its xen-blkfront connects to, the guest writes to
//! it, `rxen block-detach` takes it away once the guest has closed it, and
//! the image is then free and holds what the guest wrote.
//!
//! Needs /dev/kvm; fails, not skips, without it.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use disk::{Format, OpenOptions};
use guestprep::{Flavour, Initramfs};

struct Host {
    dir: PathBuf,
}

impl Host {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rxen"))
            .args(args)
            .env("RXEN_STATE_DIR", self.dir.join("state"))
            .stdin(Stdio::null())
            .output()
            .expect("run rxen")
    }

    fn ok(&self, args: &[&str]) -> String {
        common::expect_success(args, &self.cmd(args))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.cmd(&["destroy", "rxen-test-hotplug"]);
    }
}

/// Waits for `cond`; on a timeout, fails with the disks and the console.
fn wait_until(h: &Host, limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < limit,
            "timed out waiting for {what}; disks: {:?}; console:\n{}",
            disks(h),
            console_log(h)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `block-list` rows: vdev → state.
fn disks(h: &Host) -> Vec<(String, String)> {
    let out = h.cmd(&["block-list", "rxen-test-hotplug"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[0].to_string(), f[3].to_string()))
        })
        .collect()
}

fn console_log(h: &Host) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(h.dir.join("state"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(s) = std::fs::read(e.path().join("console.log")) {
            out.push_str(&String::from_utf8_lossy(&s));
        }
    }
    out
}

#[test]
fn a_disk_is_attached_used_and_detached_while_the_guest_runs() {
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    assert!(kvm.is_ok(), "guest tests need /dev/kvm: {:?}", kvm.err());
    let kernel = guestprep::debian_kernel(Flavour::Amd64).expect("fetch Debian's kernel");
    let blkfront = guestprep::kernel_module(Flavour::Amd64, "drivers/block/xen-blkfront.ko")
        .expect("fetch xen-blkfront.ko");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest-hotplug");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let h = Host { dir: dir.clone() };

    // The guest loads blkfront with no disk, then waits for one to appear,
    // writes to it, and waits for it to go.
    let init = r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
insmod /lib/xen-blkfront.ko || echo INSMOD-FAILED
echo GUEST-READY
while [ ! -b /dev/xvdb ]; do sleep 0.2; done
echo "HOTPLUG-SIZE=$(cat /sys/block/xvdb/size)"
echo RXEN-HOTPLUGGED | dd of=/dev/xvdb bs=512 count=1 conv=sync,fsync 2>/dev/null && echo HOTPLUG-WRITTEN
while [ -b /dev/xvdb ]; do sleep 0.2; done
echo HOTPLUG-GONE
while true; do sleep 1; done
"#;
    let initrd = guestprep::busybox_initramfs(&Initramfs {
        init_script: init.into(),
        files: vec![(
            "lib/xen-blkfront.ko".into(),
            std::fs::read(&blkfront).unwrap(),
            0o644,
        )],
    })
    .unwrap();
    let cfg = common::write_config(
        &dir.join("hotplug.cfg"),
        "rxen-test-hotplug",
        &kernel.vmlinuz,
        &initrd,
        128,
        "",
    );
    h.ok(&["create", cfg.to_str().unwrap()]);
    wait_until(
        &h,
        Duration::from_secs(120),
        "the guest to load blkfront",
        || console_log(&h).contains("GUEST-READY"),
    );
    assert!(disks(&h).is_empty());

    let img = dir.join("hot.raw");
    disk::create(&img, Format::Raw, 4 << 20).unwrap();
    let spec = format!("format=raw, vdev=xvdb, access=rw, target={}", img.display());
    h.ok(&["block-attach", "rxen-test-hotplug", &spec]);
    // The same device twice, or a busy image, is refused.
    assert!(!h
        .cmd(&["block-attach", "rxen-test-hotplug", &spec])
        .status
        .success());
    wait_until(&h, Duration::from_secs(60), "blkfront to connect", || {
        disks(&h) == [("xvdb".to_string(), "4".to_string())]
    });
    wait_until(&h, Duration::from_secs(60), "the guest's write", || {
        console_log(&h).contains("HOTPLUG-WRITTEN")
    });
    assert!(
        console_log(&h).contains("HOTPLUG-SIZE=8192"),
        "{}",
        console_log(&h)
    );
    assert!(
        disk::open(&img, Format::Raw, OpenOptions::default()).is_err(),
        "the image is locked while attached"
    );

    h.ok(&["block-detach", "rxen-test-hotplug", "xvdb"]);
    wait_until(&h, Duration::from_secs(60), "the disk to go", || {
        disks(&h).is_empty()
    });
    wait_until(
        &h,
        Duration::from_secs(30),
        "the guest to see it go",
        || console_log(&h).contains("HOTPLUG-GONE"),
    );
    let d = disk::open(&img, Format::Raw, OpenOptions::default())
        .expect("the image is released after detach");
    let mut b = [0u8; 16];
    d.read_at(&mut b, 0).unwrap();
    assert_eq!(&b[..15], b"RXEN-HOTPLUGGED");
    assert!(!h
        .cmd(&["block-detach", "rxen-test-hotplug", "xvdb"])
        .status
        .success());
}
