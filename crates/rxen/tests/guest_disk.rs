//! Disks in a real guest: Debian's kernel loads its own xen-blkfront module
//! (from Debian's package) and talks to rxen's blkback through
//! `rxen create -F` with `disk = [...]` lines, as a user would write them.
//!
//! One boot, three disks: a raw image (xvda, read-write), a qcow2 clone of a
//! qcow2 base (xvdb, read-write) and a raw image given read-only (xvdc). The
//! guest reads known patterns, copies 4 MiB inside each writable disk with
//! large requests, writes a marker sector, flushes and powers off; the host
//! then checks every byte, that the base image is unchanged and that the
//! clone passes `qemu-img check`.
//!
//! Needs /dev/kvm and root; without them it fails and says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use disk::{Format, OpenOptions};
use guestprep::{Flavour, Initramfs};

const MIB: usize = 1 << 20;
const SIZE: usize = 16 * MIB;

fn require_kvm() {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    assert!(
        f.is_ok(),
        "guest tests need /dev/kvm (read-write, usually root): {:?}",
        f.err()
    );
}

/// The host-side pattern of disk `tag`: every 512-byte sector starts with
/// a readable label, the rest is a byte sequence depending on the sector.
fn pattern(tag: u8) -> Vec<u8> {
    let mut v = vec![0u8; SIZE];
    for (s, sector) in v.chunks_mut(512).enumerate() {
        for (i, b) in sector.iter_mut().enumerate() {
            *b = (s as u8).wrapping_mul(13) ^ (i as u8) ^ tag;
        }
        let label = format!("RXEN-{}-{s:08}\n", tag as char);
        sector[..label.len()].copy_from_slice(label.as_bytes());
    }
    v
}

fn md5(data: &[u8]) -> String {
    let out = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(data)?;
            c.wait_with_output()
        })
        .expect("md5sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn sha(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
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

fn value<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines().find_map(|l| {
        l.trim_end_matches('\r')
            .split_once(key)
            .map(|(_, v)| v.trim())
    })
}

/// Per writable disk: read the label and checksum, copy 4 MiB from the
/// start to 8 MiB with 1 MiB requests, write a marker at sector 100.
fn disk_script(dev: &str, key: &str) -> String {
    format!(
        r#"echo "HEAD_{key}=$(dd if=/dev/{dev} bs=512 count=1 2>/dev/null | head -c 15)"
echo "MD5_{key}=$(dd if=/dev/{dev} bs=1M count=4 2>/dev/null | md5sum)"
echo "SIZE_{key}=$(cat /sys/block/{dev}/size) RO_{key}=$(cat /sys/block/{dev}/ro)"
dd if=/dev/{dev} of=/dev/{dev} bs=1M count=4 seek=8 conv=fsync 2>/dev/null; echo "COPY_{key}=$?"
echo RXEN-GUEST-WROTE-{key} | dd of=/dev/{dev} bs=512 seek=100 conv=sync,fsync 2>/dev/null; echo "MARK_{key}=$?"
"#
    )
}

#[test]
fn guest_reads_and_writes_raw_and_qcow2_disks() {
    require_kvm();
    let kernel = guestprep::debian_kernel(Flavour::Amd64).expect("fetch Debian's kernel");
    let blkfront = guestprep::kernel_module(Flavour::Amd64, "drivers/block/xen-blkfront.ko")
        .expect("fetch xen-blkfront.ko from Debian's kernel package");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest-disk");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // xvda: raw, read-write.
    let raw = dir.join("a.raw");
    let pat_a = pattern(b'A');
    std::fs::write(&raw, &pat_a).unwrap();
    // xvdb: a qcow2 clone of a qcow2 base holding pattern B.
    let base = dir.join("base.qcow2");
    disk::create(&base, Format::Qcow2, SIZE as u64).unwrap();
    let pat_b = pattern(b'B');
    {
        let mut d = disk::open(&base, Format::Qcow2, OpenOptions::default()).unwrap();
        d.write_at(&pat_b, 0).unwrap();
        d.flush().unwrap();
    }
    let base_sum = sha(&base);
    let clone = dir.join("clone.qcow2");
    disk::clone(&base, &clone, Some(Format::Qcow2)).unwrap();
    // xvdc: raw, given read-only.
    let ro = dir.join("c.raw");
    let pat_c = pattern(b'C');
    std::fs::write(&ro, &pat_c).unwrap();

    let init = format!(
        r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
insmod /lib/xen-blkfront.ko || echo INSMOD-FAILED
i=0
while [ ! -b /dev/xvdc ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
ls /sys/block
{}{}echo "HEAD_C=$(dd if=/dev/xvdc bs=512 count=1 2>/dev/null | head -c 15)"
echo "MD5_C=$(dd if=/dev/xvdc bs=1M count=4 2>/dev/null | md5sum)"
echo "RO_C=$(cat /sys/block/xvdc/ro)"
echo X | dd of=/dev/xvdc bs=512 count=1 conv=sync,fsync 2>/dev/null; echo "WRITE_C=$?"
sync
echo RXEN-DISK-DONE
poweroff -f
"#,
        disk_script("xvda", "A"),
        disk_script("xvdb", "B"),
    );
    let module = std::fs::read(&blkfront).unwrap();
    let initrd = guestprep::busybox_initramfs(&Initramfs {
        init_script: init,
        files: vec![("lib/xen-blkfront.ko".into(), module, 0o644)],
    })
    .expect("build the initramfs");
    let cfg = dir.join("disks.cfg");
    std::fs::write(
        &cfg,
        format!(
            "name = \"rxen-test-disk\"\ntype = \"pv\"\nkernel = \"{}\"\nramdisk = \"{}\"\n\
             memory = 256\nvcpus = 1\nextra = \"console=hvc0 quiet\"\n\
             disk = [ 'format=raw, vdev=xvda, access=rw, target={}',\n\
                      'format=qcow2, vdev=xvdb, access=rw, target={}',\n\
                      'format=raw, vdev=xvdc, access=ro, target={}' ]\n",
            kernel.vmlinuz.display(),
            initrd.display(),
            raw.display(),
            clone.display(),
            ro.display(),
        ),
    )
    .unwrap();
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_rxen"))
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
        t.contains("RXEN-DISK-DONE"),
        "the guest did not finish:\n{t}"
    );
    assert!(!t.contains("INSMOD-FAILED"), "{t}");
    assert_eq!(out.status.code(), Some(0), "poweroff must exit 0:\n{t}");

    // What the guest read.
    for (key, pat) in [("A", &pat_a), ("B", &pat_b), ("C", &pat_c)] {
        let head = format!("RXEN-{key}-00000000");
        assert_eq!(value(&t, &format!("HEAD_{key}=")), Some(&head[..15]), "{t}");
        let md5_guest = value(&t, &format!("MD5_{key}="))
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or("");
        assert_eq!(
            md5_guest,
            md5(&pat[..4 * MIB]),
            "disk {key} read wrong:\n{t}"
        );
    }
    assert_eq!(value(&t, "SIZE_A="), Some("32768 RO_A=0"), "{t}");
    assert_eq!(value(&t, "SIZE_B="), Some("32768 RO_B=0"), "{t}");
    assert_eq!(value(&t, "RO_C="), Some("1"), "{t}");
    assert_ne!(
        value(&t, "WRITE_C="),
        Some("0"),
        "a read-only disk took a write:\n{t}"
    );
    for key in ["A", "B"] {
        assert_eq!(value(&t, &format!("COPY_{key}=")), Some("0"), "{t}");
        assert_eq!(value(&t, &format!("MARK_{key}=")), Some("0"), "{t}");
    }

    // What the host sees after the domain is gone.
    let expect = |pat: &[u8], key: &str| {
        let mut v = pat.to_vec();
        v.copy_within(0..4 * MIB, 8 * MIB);
        let mark = format!("RXEN-GUEST-WROTE-{key}\n");
        v[100 * 512..101 * 512].fill(0);
        v[100 * 512..100 * 512 + mark.len()].copy_from_slice(mark.as_bytes());
        v
    };
    let got_a = std::fs::read(&raw).unwrap();
    assert!(got_a == expect(&pat_a, "A"), "raw disk contents differ");
    let d = disk::open(
        &clone,
        Format::Qcow2,
        OpenOptions {
            read_only: true,
            direct: false,
        },
    )
    .unwrap();
    let mut got_b = vec![0u8; SIZE];
    d.read_at(&mut got_b, 0).unwrap();
    drop(d);
    assert!(got_b == expect(&pat_b, "B"), "qcow2 clone contents differ");
    assert_eq!(sha(&base), base_sum, "the base image changed");
    assert_eq!(
        std::fs::read(&ro).unwrap(),
        pat_c,
        "the read-only disk changed"
    );
    let check = Command::new("qemu-img")
        .args(["check", clone.to_str().unwrap()])
        .output()
        .expect("qemu-img (Debian package qemu-utils)");
    assert!(
        check.status.success(),
        "qemu-img check: {}",
        String::from_utf8_lossy(&check.stdout)
    );
}
