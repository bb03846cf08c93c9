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
echo "DISCARD_MAX_{key}=$(cat /sys/block/{dev}/queue/discard_max_bytes)"
blkdiscard -o 12582912 -l 1048576 /dev/{dev}; echo "DISCARD_{key}=$?"
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
    for key in ["A", "B"] {
        assert_ne!(
            value(&t, &format!("DISCARD_MAX_{key}=")),
            Some("0"),
            "no discard offered:\n{t}"
        );
        assert_eq!(value(&t, &format!("DISCARD_{key}=")), Some("0"), "{t}");
    }
    // Discarded: 12..13 MiB. A raw image punches a hole (zeroes); a qcow2
    // clone may show anything there, so compare around it.
    let discarded = 12 * MIB..13 * MIB;
    let mut got_a = std::fs::read(&raw).unwrap();
    assert!(
        got_a[discarded.clone()].iter().all(|&b| b == 0),
        "raw discard did not punch a hole"
    );
    let mut want_a = expect(&pat_a, "A");
    want_a[discarded.clone()].fill(0);
    got_a[discarded.clone()].fill(0);
    assert!(got_a == want_a, "raw disk contents differ");
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
    let mut want_b = expect(&pat_b, "B");
    want_b[discarded.clone()].fill(0);
    got_b[discarded].fill(0);
    assert!(got_b == want_b, "qcow2 clone contents differ");
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

/// Runs rxen until `marker` appears on its output, lets the guest go on
/// for `after`, then kills it with SIGKILL; returns the output.
fn run_until_then_kill(cmd: &mut Command, marker: &str, after: Duration) -> String {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rxen");
    let pid = child.id() as i32;
    let mut stdout = child.stdout.take().unwrap();
    let marker = marker.to_string();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        let start = std::time::Instant::now();
        let mut killed = false;
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            let seen_marker = seen.replace('\r', "").contains(&marker);
            if !killed && (seen_marker || start.elapsed() > Duration::from_secs(300)) {
                std::thread::sleep(after);
                // SAFETY: kill(2) on the pid we spawned.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                killed = true;
            }
        }
        seen
    });
    let status = child.wait().expect("wait for rxen");
    let out = reader.join().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    format!("{out}\n--- {status} ---\n{err}")
}

#[test]
fn fsynced_data_survives_kill_9_and_images_stay_consistent() {
    require_kvm();
    let kernel = guestprep::debian_kernel(Flavour::Amd64).expect("fetch Debian's kernel");
    let blkfront = guestprep::kernel_module(Flavour::Amd64, "drivers/block/xen-blkfront.ko")
        .expect("fetch xen-blkfront.ko from Debian's kernel package");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest-disk-kill");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // xvda: a qcow2 clone of an empty base; xvdb: raw (128 MiB each, the
    // write loop allocates up to 112 MiB of new clusters); xvdc: the source
    // pattern, read-only.
    let base = dir.join("base.qcow2");
    disk::create(&base, Format::Qcow2, 128 * MIB as u64).unwrap();
    let base_sum = sha(&base);
    let clone = dir.join("clone.qcow2");
    disk::clone(&base, &clone, Some(Format::Qcow2)).unwrap();
    let raw = dir.join("b.raw");
    disk::create(&raw, Format::Raw, 128 * MIB as u64).unwrap();
    let src = dir.join("src.raw");
    let pat = pattern(b'S');
    std::fs::write(&src, &pat).unwrap();

    let init = r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
insmod /lib/xen-blkfront.ko || echo INSMOD-FAILED
i=0
while [ ! -b /dev/xvdc ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
dd if=/dev/xvdc of=/dev/xvda bs=1M count=16 conv=fsync 2>/dev/null && echo "FSYNC_A=ok"
dd if=/dev/xvdc of=/dev/xvdb bs=1M count=16 conv=fsync 2>/dev/null && echo "FSYNC_B=ok"
echo RXEN-FSYNCED
n=0
while true; do
  dd if=/dev/xvdc of=/dev/xvda bs=64k count=64 seek=$((256 + n % 28 * 64)) oflag=direct 2>/dev/null
  dd if=/dev/xvdc of=/dev/xvdb bs=64k count=64 seek=$((256 + n % 28 * 64)) oflag=direct 2>/dev/null
  n=$((n+1))
  echo "LOOP=$n"
done
"#;
    let module = std::fs::read(&blkfront).unwrap();
    let initrd = guestprep::busybox_initramfs(&Initramfs {
        init_script: init.into(),
        files: vec![("lib/xen-blkfront.ko".into(), module, 0o644)],
    })
    .expect("build the initramfs");
    let cfg = dir.join("kill.cfg");
    std::fs::write(
        &cfg,
        format!(
            "name = \"rxen-test-disk-kill\"\ntype = \"pv\"\nkernel = \"{}\"\nramdisk = \"{}\"\n\
             memory = 256\nvcpus = 1\nextra = \"console=hvc0 quiet\"\n\
             disk = [ 'format=qcow2, vdev=xvda, access=rw, target={}',\n\
                      'format=raw, vdev=xvdb, access=rw, target={}',\n\
                      'format=raw, vdev=xvdc, access=ro, target={}' ]\n",
            kernel.vmlinuz.display(),
            initrd.display(),
            clone.display(),
            raw.display(),
            src.display(),
        ),
    )
    .unwrap();
    let t = run_until_then_kill(
        Command::new(env!("CARGO_BIN_EXE_rxen"))
            .env("RXEN_STATE_DIR", dir.join("state"))
            .args(["create", "-F", "-c"])
            .arg(&cfg),
        // Kill in the middle of the write loop's fourth round.
        "LOOP=3\n",
        Duration::from_millis(300),
    );
    assert_eq!(value(&t, "FSYNC_A="), Some("ok"), "{t}");
    assert_eq!(value(&t, "FSYNC_B="), Some("ok"), "{t}");
    assert!(t.contains("signal: 9"), "rxen was not killed:\n{t}");
    let loops = t
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("LOOP="))
        .filter_map(|n| n.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    eprintln!("4 MiB write loops (per disk) before the kill: {loops}");
    assert!(
        loops >= 3,
        "no heavy writes were going on at the kill:\n{t}"
    );

    // What was fsynced is there; the images are consistent; the base is untouched.
    let check = Command::new("qemu-img")
        .args(["check", clone.to_str().unwrap()])
        .output()
        .expect("qemu-img (Debian package qemu-utils)");
    assert!(
        check.status.success(),
        "qemu-img check after kill -9: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let d = disk::open(
        &clone,
        Format::Qcow2,
        OpenOptions {
            read_only: true,
            direct: false,
        },
    )
    .unwrap();
    let mut got = vec![0u8; 16 * MIB];
    d.read_at(&mut got, 0).unwrap();
    drop(d);
    assert!(got == pat[..16 * MIB], "fsynced qcow2 data lost");
    let got = std::fs::read(&raw).unwrap();
    assert!(got[..16 * MIB] == pat[..16 * MIB], "fsynced raw data lost");
    assert_eq!(sha(&base), base_sum, "the base image changed");
    // The image is not left locked by the dead domain.
    disk::open(&clone, Format::Qcow2, OpenOptions::default()).unwrap();
}

/// Bad disks stop `create` before the guest runs, with the file named.
#[test]
fn missing_corrupt_or_busy_images_are_refused_before_boot() {
    let kernel = guestprep::debian_kernel(Flavour::Amd64).expect("fetch Debian's kernel");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest-disk-refused");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let busy = dir.join("busy.qcow2");
    disk::create(&busy, Format::Qcow2, MIB as u64).unwrap();
    let _holder = disk::open(&busy, Format::Qcow2, OpenOptions::default()).unwrap();
    let corrupt = dir.join("corrupt.qcow2");
    std::fs::write(&corrupt, b"QFI\xfb\0\0\0\x03 truncated").unwrap();
    let missing = dir.join("missing.raw");
    for (target, format, want) in [
        (&missing, "raw", "No such file"),
        (&busy, "qcow2", "in use"),
        (&corrupt, "qcow2", "not a usable qcow2 image"),
    ] {
        let cfg = dir.join("bad.cfg");
        std::fs::write(
            &cfg,
            format!(
                "name = \"rxen-test-bad-disk\"\nkernel = \"{}\"\nmemory = 128\n\
                 disk = ['format={format}, vdev=xvda, access=rw, target={}']\n",
                kernel.vmlinuz.display(),
                target.display()
            ),
        )
        .unwrap();
        let out = run_with_timeout(
            Command::new(env!("CARGO_BIN_EXE_rxen"))
                .env("RXEN_STATE_DIR", dir.join("state"))
                .args(["create", "-F"])
                .arg(&cfg),
            Duration::from_secs(60),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(target.to_str().unwrap()) && err.contains(want),
            "{err}"
        );
        assert!(err.contains("xvda"), "{err}");
    }
    assert_eq!(
        std::fs::read(&corrupt).unwrap(),
        b"QFI\xfb\0\0\0\x03 truncated"
    );
}
