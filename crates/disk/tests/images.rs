//! Disk images against QEMU's own tool: what we write passes `qemu-img check`
//! and reads back through `qemu-img convert`; what qemu-img makes we read.

use disk::{DiskError, Format, OpenOptions};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("disk-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn qemu_img(args: &[&str]) -> String {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img is needed for these tests (Debian package qemu-utils)");
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_clean(path: &Path) {
    let out = qemu_img(&["check", path.to_str().unwrap()]);
    assert!(out.contains("No errors were found"), "{out}");
}

/// A recognisable pattern: each 512-byte sector carries its number and a seed.
fn pattern(seed: u8, offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let pos = offset + i;
            let sector = pos / 512;
            (sector as u8) ^ (pos as u8).wrapping_mul(31) ^ seed
        })
        .collect()
}

fn sha(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

fn open(path: &Path, format: Format, read_only: bool) -> Box<dyn disk::Disk> {
    disk::open(
        path,
        format,
        OpenOptions {
            read_only,
            direct: false,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Writes scattered patterns, some crossing 64 KiB cluster boundaries.
const WRITES: &[(u64, usize)] = &[
    (0, 4096),
    (512, 512),
    (65536 - 1024, 8192),
    (3 * MIB + 4096, 65536 * 2 + 512),
    (8 * MIB - 4096, 4096),
];

fn write_patterns(d: &mut dyn disk::Disk, seed: u8) {
    for &(off, len) in WRITES {
        d.write_at(&pattern(seed, off, len), off).unwrap();
    }
    d.flush().unwrap();
}

/// The expected disk contents after `write_patterns` over `base`.
fn expected(base: Vec<u8>, seed: u8) -> Vec<u8> {
    let mut img = base;
    for &(off, len) in WRITES {
        img[off as usize..off as usize + len].copy_from_slice(&pattern(seed, off, len));
    }
    img
}

#[test]
fn raw_round_trip_and_bounds() {
    let dir = scratch("raw");
    let img = dir.join("a.raw");
    disk::create(&img, Format::Raw, 8 * MIB).unwrap();
    let mut d = open(&img, Format::Raw, false);
    assert_eq!(d.size(), 8 * MIB);
    write_patterns(d.as_mut(), 1);
    let mut buf = vec![0; 8192];
    d.read_at(&mut buf, 65536 - 1024).unwrap();
    assert_eq!(buf, pattern(1, 65536 - 1024, 8192));
    // Past the end, and an overflowing offset: errors, not panics.
    assert!(matches!(
        d.read_at(&mut buf, 8 * MIB - 512),
        Err(DiskError::OutOfRange { .. })
    ));
    assert!(matches!(
        d.write_at(&buf, u64::MAX - 10),
        Err(DiskError::OutOfRange { .. })
    ));
    d.discard(0, 4096).unwrap();
    d.read_at(&mut buf[..4096], 0).unwrap();
    assert!(
        buf[..4096].iter().all(|&b| b == 0),
        "punched hole reads zeroes"
    );
    drop(d);
    let want = expected(vec![0; 8 * MIB as usize], 1);
    let mut got = std::fs::read(&img).unwrap();
    got[..4096].copy_from_slice(&want[..4096]); // the discarded block
    assert_eq!(got, want);
}

#[test]
fn raw_direct_io_handles_unaligned_requests() {
    let dir = scratch("direct");
    let img = dir.join("a.raw");
    disk::create(&img, Format::Raw, MIB).unwrap();
    let mut d = disk::open(
        &img,
        Format::Raw,
        OpenOptions {
            read_only: false,
            direct: true,
        },
    )
    .unwrap();
    let data = pattern(9, 1536, 5000);
    d.write_at(&data, 1536).unwrap();
    d.flush().unwrap();
    let mut back = vec![0; 5000];
    d.read_at(&mut back, 1536).unwrap();
    assert_eq!(back, data);
    drop(d);
    let file = std::fs::read(&img).unwrap();
    assert_eq!(&file[1536..6536], &data[..]);
    assert!(file[..1536].iter().all(|&b| b == 0));
}

#[test]
fn qcow2_written_here_passes_qemu_img_check() {
    let dir = scratch("qcow2-ours");
    let img = dir.join("a.qcow2");
    disk::create(&img, Format::Qcow2, 8 * MIB).unwrap();
    check_clean(&img);
    let mut d = open(&img, Format::Qcow2, false);
    assert_eq!(d.size(), 8 * MIB);
    write_patterns(d.as_mut(), 2);
    d.discard(3 * MIB, 2 * MIB).unwrap();
    d.write_at(&pattern(2, 3 * MIB + 4096, 512), 3 * MIB + 4096)
        .unwrap();
    d.flush().unwrap();
    drop(d);
    check_clean(&img);

    let raw = dir.join("out.raw");
    qemu_img(&[
        "convert",
        "-f",
        "qcow2",
        "-O",
        "raw",
        img.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    let mut want = expected(vec![0; 8 * MIB as usize], 2);
    let (s, e) = (3 * MIB as usize, 5 * MIB as usize);
    let mut got = std::fs::read(&raw).unwrap();
    // The discarded range reads as anything; compare around it, and the
    // sector rewritten after the discard.
    want[s..e].fill(0);
    got[s..e].fill(0);
    assert_eq!(got, want);
    let d = open(&img, Format::Qcow2, true);
    let mut b = vec![0; 512];
    d.read_at(&mut b, 3 * MIB + 4096).unwrap();
    assert_eq!(b, pattern(2, 3 * MIB + 4096, 512));
}

#[test]
fn qcow2_made_by_qemu_img_reads_correctly() {
    let dir = scratch("qcow2-qemu");
    let raw = dir.join("src.raw");
    let want = expected(vec![0; 8 * MIB as usize], 3);
    std::fs::write(&raw, &want).unwrap();
    let img = dir.join("q.qcow2");
    for compat in ["0.10", "1.1"] {
        let _ = std::fs::remove_file(&img);
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-o",
            &format!("compat={compat}"),
            raw.to_str().unwrap(),
            img.to_str().unwrap(),
        ]);
        let d = open(&img, Format::Qcow2, true);
        assert_eq!(d.size(), 8 * MIB);
        let mut got = vec![0; want.len()];
        d.read_at(&mut got, 0).unwrap();
        assert!(got == want, "compat={compat}: contents differ");
    }
    // And written by us after qemu-img made it.
    let mut d = open(&img, Format::Qcow2, false);
    d.write_at(&pattern(4, 100 * 512, 1024), 100 * 512).unwrap();
    d.flush().unwrap();
    drop(d);
    check_clean(&img);
}

#[test]
fn clone_is_a_thin_overlay_and_the_base_stays_unchanged() {
    let dir = scratch("clone");
    for base_format in [Format::Raw, Format::Qcow2] {
        let base = dir.join(format!("base.{base_format}"));
        let _ = std::fs::remove_file(&base);
        disk::create(&base, base_format, 8 * MIB).unwrap();
        let mut b = open(&base, base_format, false);
        write_patterns(b.as_mut(), 5);
        drop(b);
        let base_sum = sha(&base);

        let overlay = dir.join(format!("clone-of-{base_format}.qcow2"));
        let _ = std::fs::remove_file(&overlay);
        disk::clone(&base, &overlay, None).unwrap();
        let ov_len = std::fs::metadata(&overlay).unwrap().len();
        assert!(ov_len < MIB, "a clone is thin ({ov_len} bytes)");

        let chain = disk::chain(&overlay).unwrap();
        assert_eq!(chain.len(), 2, "{chain:?}");
        assert_eq!(chain[0].backing.as_deref(), Some(chain[1].path.as_path()));
        assert_eq!(chain[1].format, base_format);
        assert_eq!(chain[0].size, 8 * MIB);
        let qemu_chain = qemu_img(&["info", "--backing-chain", overlay.to_str().unwrap()]);
        assert!(qemu_chain.contains(base.file_name().unwrap().to_str().unwrap()));

        let mut d = open(&overlay, Format::Qcow2, false);
        // Overlay reads the base where it has nothing of its own.
        let mut buf = vec![0; 8192];
        d.read_at(&mut buf, 65536 - 1024).unwrap();
        assert_eq!(buf, pattern(5, 65536 - 1024, 8192));
        write_patterns(d.as_mut(), 6);
        d.discard(0, 65536).unwrap();
        d.flush().unwrap();
        drop(d);

        assert_eq!(sha(&base), base_sum, "base unchanged after overlay writes");
        check_clean(&overlay);
        let d = open(&overlay, Format::Qcow2, true);
        d.read_at(&mut buf, 3 * MIB + 4096).unwrap();
        assert_eq!(buf, pattern(6, 3 * MIB + 4096, 8192));
    }
}

#[test]
fn an_image_open_read_write_is_locked() {
    let dir = scratch("lock");
    for format in [Format::Raw, Format::Qcow2] {
        let img = dir.join(format!("a.{format}"));
        disk::create(&img, format, MIB).unwrap();
        let rw = open(&img, format, false);
        for ro in [false, true] {
            let err = disk::open(
                &img,
                format,
                OpenOptions {
                    read_only: ro,
                    direct: false,
                },
            )
            .unwrap_err();
            assert!(matches!(err, DiskError::Locked { .. }), "{err}");
            assert!(err.to_string().contains("in use"), "{err}");
            assert!(err.to_string().contains(img.to_str().unwrap()), "{err}");
        }
        drop(rw);
        // Readers share.
        let r1 = open(&img, format, true);
        let r2 = open(&img, format, true);
        assert!(disk::open(&img, format, OpenOptions::default()).is_err());
        drop((r1, r2));
        open(&img, format, false);
    }
    // A base in use as a backing file cannot be opened for writing.
    let base = dir.join("a.qcow2");
    let ov = dir.join("ov.qcow2");
    disk::clone(&base, &ov, Some(Format::Qcow2)).unwrap();
    let _user = open(&ov, Format::Qcow2, false);
    let err = disk::open(&base, Format::Qcow2, OpenOptions::default()).unwrap_err();
    assert!(matches!(err, DiskError::Locked { .. }), "{err}");
}

#[test]
fn read_only_disks_refuse_writes() {
    let dir = scratch("ro");
    let img = dir.join("a.qcow2");
    disk::create(&img, Format::Qcow2, MIB).unwrap();
    let sum = sha(&img);
    let mut d = open(&img, Format::Qcow2, true);
    assert!(d.read_only());
    assert!(matches!(
        d.write_at(&[1; 512], 0),
        Err(DiskError::ReadOnly { .. })
    ));
    assert!(matches!(d.discard(0, 512), Err(DiskError::ReadOnly { .. })));
    d.flush().unwrap();
    drop(d);
    assert_eq!(sha(&img), sum);
}

#[test]
fn corrupt_and_truncated_images_are_refused_untouched() {
    let dir = scratch("corrupt");
    let img = dir.join("a.qcow2");
    disk::create(&img, Format::Qcow2, 8 * MIB).unwrap();
    let mut d = open(&img, Format::Qcow2, false);
    write_patterns(d.as_mut(), 7);
    drop(d);
    let good = std::fs::read(&img).unwrap();

    // Truncated inside the header.
    let t = dir.join("truncated.qcow2");
    std::fs::write(&t, &good[..40]).unwrap();
    // A header pointing its L1 table far outside the file (l1_table_offset at 40).
    let c = dir.join("corrupt.qcow2");
    let mut bad = good.clone();
    bad[40..48].copy_from_slice(&0x7fff_ffff_ffff_fe00u64.to_be_bytes());
    std::fs::write(&c, &bad).unwrap();
    // An impossible cluster size (cluster_bits at 20).
    let cb = dir.join("clusterbits.qcow2");
    let mut bad = good.clone();
    bad[20..24].copy_from_slice(&40u32.to_be_bytes());
    std::fs::write(&cb, &bad).unwrap();

    for p in [&t, &c, &cb] {
        let before = sha(p);
        for ro in [false, true] {
            match disk::open(
                p,
                Format::Qcow2,
                OpenOptions {
                    read_only: ro,
                    direct: false,
                },
            ) {
                Ok(_) => panic!("{} opened", p.display()),
                Err(e) => {
                    assert!(matches!(e, DiskError::Corrupt { .. }), "{e}");
                    assert!(e.to_string().contains(p.to_str().unwrap()), "{e}");
                }
            }
        }
        assert_eq!(sha(p), before, "{} written to", p.display());
        assert!(disk::chain(p).is_err());
    }
}

#[test]
fn a_missing_backing_file_is_named() {
    let dir = scratch("missing");
    let base = dir.join("base.qcow2");
    disk::create(&base, Format::Qcow2, MIB).unwrap();
    let ov = dir.join("ov.qcow2");
    disk::clone(&base, &ov, None).unwrap();
    std::fs::remove_file(&base).unwrap();
    let before = sha(&ov);
    for ro in [false, true] {
        let e = disk::open(
            &ov,
            Format::Qcow2,
            OpenOptions {
                read_only: ro,
                direct: false,
            },
        )
        .unwrap_err();
        assert!(matches!(e, DiskError::Backing { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(ov.to_str().unwrap()), "{msg}");
        assert!(msg.contains(base.to_str().unwrap()), "{msg}");
    }
    let e = disk::chain(&ov).unwrap_err();
    assert!(matches!(e, DiskError::Backing { .. }), "{e}");
    assert_eq!(sha(&ov), before);
    // Clone refuses a missing base and an existing target.
    assert!(disk::clone(&base, &dir.join("x.qcow2"), None).is_err());
    assert!(!dir.join("x.qcow2").exists());
    disk::create(&base, Format::Raw, MIB).unwrap();
    assert!(matches!(
        disk::clone(&base, &ov, None),
        Err(DiskError::Exists { .. })
    ));
    assert!(matches!(
        disk::create(&base, Format::Raw, MIB),
        Err(DiskError::Exists { .. })
    ));
    assert!(disk::create(&dir.join("odd"), Format::Raw, 1000).is_err());
}

#[test]
fn a_backing_loop_is_refused() {
    let dir = scratch("loop");
    let a = dir.join("a.qcow2");
    let b = dir.join("b.qcow2");
    qemu_img(&["create", "-f", "qcow2", a.to_str().unwrap(), "1M"]);
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    // Point a at b: qemu-img rebase -u writes the header only.
    qemu_img(&[
        "rebase",
        "-u",
        "-F",
        "qcow2",
        "-b",
        b.to_str().unwrap(),
        a.to_str().unwrap(),
    ]);
    let e = disk::chain(&b).unwrap_err();
    assert!(matches!(e, DiskError::ChainTooLong { .. }), "{e}");
    let e = disk::open(
        &b,
        Format::Qcow2,
        OpenOptions {
            read_only: true,
            direct: false,
        },
    )
    .unwrap_err();
    assert!(matches!(e, DiskError::ChainTooLong { .. }), "{e}");
}

#[test]
fn qcow2_with_direct_io() {
    let dir = scratch("qcow2-direct");
    let img = dir.join("a.qcow2");
    disk::create(&img, Format::Qcow2, 8 * MIB).unwrap();
    let opts = OpenOptions {
        read_only: false,
        direct: true,
    };
    let mut d = disk::open(&img, Format::Qcow2, opts).unwrap();
    write_patterns(d.as_mut(), 8);
    let mut b = vec![0; 8192];
    d.read_at(&mut b, 65536 - 1024).unwrap();
    assert_eq!(b, pattern(8, 65536 - 1024, 8192));
    drop(d);
    check_clean(&img);
}

#[test]
fn qemu_img_variants_read_correctly_or_fail_clearly() {
    let dir = scratch("qcow2-variants");
    let raw = dir.join("src.raw");
    let want = expected(vec![0; 8 * MIB as usize], 11);
    std::fs::write(&raw, &want).unwrap();
    let variants: &[(&str, &[&str])] = &[
        ("lazy", &["-o", "compat=1.1,lazy_refcounts=on"]),
        ("small-clusters", &["-o", "cluster_size=4096"]),
        ("big-clusters", &["-o", "cluster_size=2M"]),
        ("refcount1", &["-o", "refcount_bits=1"]),
        ("refcount64", &["-o", "refcount_bits=64"]),
        ("prealloc", &["-o", "preallocation=metadata"]),
        ("compressed", &["-c"]),
        ("extended-l2", &["-o", "extended_l2=on"]),
    ];
    let mut refused = Vec::new();
    for (name, opts) in variants {
        let img = dir.join(format!("{name}.qcow2"));
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend_from_slice(opts);
        args.push(raw.to_str().unwrap());
        args.push(img.to_str().unwrap());
        qemu_img(&args);
        match disk::open(
            &img,
            Format::Qcow2,
            OpenOptions {
                read_only: true,
                direct: false,
            },
        ) {
            Ok(d) => {
                let mut got = vec![0; want.len()];
                d.read_at(&mut got, 0)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(got == want, "{name}: contents differ");
            }
            Err(e) => {
                // Refusing is fine if the error names the file and says why.
                let msg = e.to_string();
                assert!(msg.contains(img.to_str().unwrap()), "{name}: {msg}");
                refused.push(format!("{name}: {msg}"));
            }
        }
        // Writes into the same image (when it opens read-write) keep it clean.
        if let Ok(mut d) = disk::open(&img, Format::Qcow2, OpenOptions::default()) {
            d.write_at(&pattern(12, 3 * MIB, 70000), 3 * MIB).unwrap();
            d.flush().unwrap();
            drop(d);
            check_clean(&img);
        }
    }
    eprintln!("refused: {refused:#?}");
    assert!(
        refused.iter().all(|r| r.starts_with("extended-l2")),
        "only extended L2 entries may be unsupported: {refused:#?}"
    );
}

/// A loop device over a file, detached on drop.
struct Loop(String);

impl Loop {
    fn new(file: &Path) -> Loop {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file)
            .output()
            .expect("losetup (util-linux)");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn a_block_device_is_a_raw_disk() {
    let dir = scratch("blockdev");
    let file = dir.join("backing.img");
    std::fs::write(&file, pattern(13, 0, 4 * MIB as usize)).unwrap();
    let lo = Loop::new(&file);
    let dev = Path::new(&lo.0);
    for direct in [false, true] {
        let mut d = disk::open(
            dev,
            Format::Raw,
            OpenOptions {
                read_only: false,
                direct,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.size(), 4 * MIB, "size from BLKGETSIZE64");
        let mut b = vec![0; 3000];
        d.read_at(&mut b, 1000).unwrap();
        assert_eq!(b, pattern(13, 1000, 3000));
        d.write_at(&pattern(14, 70000, 5000), 70000).unwrap();
        d.flush().unwrap();
        // A device in use is locked like a file.
        assert!(matches!(
            disk::open(dev, Format::Raw, OpenOptions::default()),
            Err(DiskError::Locked { .. })
        ));
        d.discard(MIB, MIB).unwrap();
        let mut z = vec![1; 4096];
        d.read_at(&mut z, MIB + 4096).unwrap();
        assert!(
            z.iter().all(|&x| x == 0),
            "BLKDISCARD on a loop device zeroes"
        );
        assert!(matches!(
            d.read_at(&mut b, 4 * MIB - 10),
            Err(DiskError::OutOfRange { .. })
        ));
    }
    let chain = disk::chain(dev).unwrap();
    assert_eq!((chain.len(), chain[0].size), (1, 4 * MIB));
    drop(lo);
    let data = std::fs::read(&file).unwrap();
    assert_eq!(&data[70000..75000], &pattern(14, 70000, 5000)[..]);
}
