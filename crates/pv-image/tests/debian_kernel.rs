//! Loads Debian's real 6.1 amd64 kernel (a bzImage with an XZ payload) and,
//! when `RXEN_TEST_CLOUD_KERNEL` names it, the cloud-amd64 kernel (an LZ4
//! legacy-frame payload).
//!
//! Run with the kernel's path in `RXEN_TEST_KERNEL` (`./test` does this, with
//! both kernels, through `cargo run -p guestprep --example prepare [cloud]`):
//!
//! ```text
//! cd /tmp && apt-get download linux-image-6.1.0-NN-amd64   # see: apt-cache depends linux-image-amd64
//! dpkg-deb -x linux-image-6.1.0-NN-amd64_*.deb kernel
//! RXEN_TEST_KERNEL=/tmp/kernel/boot/vmlinuz-6.1.0-NN-amd64 \
//!     cargo test -p pv-image --test debian_kernel -- --ignored --nocapture
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

const VIRT_BASE: u64 = 0xffff_ffff_8000_0000;

fn kernel_path(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "{var} is not set: set it to a Debian 6.1 amd64 vmlinuz, e.g. \
             `cd /tmp && apt-get download $(apt-cache depends linux-image-amd64 | \
             awk '/Depends: linux-image-6/ {{print $2}}') && dpkg-deb -x linux-image-6.1.0-*.deb \
             kernel && export RXEN_TEST_KERNEL=$(ls /tmp/kernel/boot/vmlinuz-*)` (for \
             RXEN_TEST_CLOUD_KERNEL the same with linux-image-cloud-amd64)"
        ),
    }
}

#[test]
#[ignore = "needs a real Debian kernel: set RXEN_TEST_KERNEL and run with --ignored"]
fn debian_kernel_loads() {
    check_kernel(&kernel_path("RXEN_TEST_KERNEL"), b"\xfd7zXZ\0");
}

#[test]
#[ignore = "needs Debian's cloud kernel: set RXEN_TEST_CLOUD_KERNEL and run with --ignored"]
fn debian_cloud_kernel_loads() {
    check_kernel(
        &kernel_path("RXEN_TEST_CLOUD_KERNEL"),
        &0x184c_2102u32.to_le_bytes(),
    );
}

/// Loads the kernel at `path`, whose bzImage payload starts with `magic`, and
/// checks what every Debian 6.1 amd64 PV kernel has.
fn check_kernel(path: &Path, magic: &[u8]) {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    // The payload's compression, found through the setup header.
    let setup_sects = match bytes[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let pm = (setup_sects + 1) * 512;
    let off = u32::from_le_bytes(bytes[0x248..0x24c].try_into().unwrap()) as usize;
    assert!(bytes[pm + off..].starts_with(magic), "payload compression");

    let t = Instant::now();
    let vmlinux = pv_image::extract_vmlinux(&bytes).expect("extract vmlinux");
    println!(
        "decompressed {} -> {} bytes in {:.3} s",
        bytes.len(),
        vmlinux.len(),
        t.elapsed().as_secs_f64()
    );
    drop(vmlinux);

    let t = Instant::now();
    let img = pv_image::load_kernel(path).unwrap_or_else(|e| panic!("{e}"));
    println!("load_kernel in {:.3} s", t.elapsed().as_secs_f64());
    println!("{:#x?}", img.notes);
    for s in &img.segments {
        println!(
            "segment vaddr {:#x} filesz {:#x} memsz {:#x}",
            s.vaddr,
            s.data.len(),
            s.memsz
        );
    }
    println!("virt {:#x}..{:#x}", img.virt_start, img.virt_end);

    let n = &img.notes;
    assert_eq!(n.virt_base, VIRT_BASE);
    assert_eq!(n.paddr_offset, 0);
    assert_eq!(n.init_p2m, Some(0x80_0000_0000));
    assert_eq!(n.hv_start_low, Some(0xffff_8000_0000_0000));
    assert!(
        n.features.is_required("writable_page_tables"),
        "{:?}",
        n.features
    );
    assert!(
        n.features.mentions("pae_pgdir_above_4gb"),
        "{:?}",
        n.features
    );
    assert_eq!(n.supported_features, Some(0x8801));
    assert_eq!(n.guest_os, "linux");
    assert_eq!(n.xen_version, "xen-3.0");
    assert_eq!(n.loader, "generic");
    assert_eq!(n.pae_mode, "yes");
    assert_eq!(n.l1_mfn_valid, Some((1, 1)));
    assert_eq!(n.suspend_cancel, Some(1));
    assert!(n.mod_start_pfn);
    assert_eq!(
        n.hypercall_page, None,
        "6.1.y issues hypercalls with bare syscall"
    );
    assert!(n.phys32_entry.is_some());
    // ENTRY is startup_xen, in the kernel's text mapping past the 16 MiB load address.
    assert!(
        n.entry >= VIRT_BASE + 0x100_0000 && n.entry < img.virt_end,
        "{:#x}",
        n.entry
    );

    // text, data, per-CPU (p_vaddr 0, loaded by p_paddr), init+bss.
    assert_eq!(img.segments.len(), 4);
    assert_eq!(img.segments[0].vaddr, VIRT_BASE + 0x100_0000);
    assert_eq!(img.virt_start, VIRT_BASE + 0x100_0000);
    for w in img.segments.windows(2) {
        assert!(w[0].vaddr + w[0].memsz <= w[1].vaddr);
    }
    for s in &img.segments {
        assert_eq!(s.vaddr % 4096, 0, "{:#x}", s.vaddr);
        assert!(s.vaddr >= VIRT_BASE && s.vaddr < VIRT_BASE + (1 << 30));
        assert!(s.data.len() as u64 <= s.memsz);
    }
    // The per-CPU segment sits between data and init, not at 0.
    assert!(img.segments.iter().all(|s| s.vaddr != 0));
    // ENTRY lies in a segment with file bytes.
    assert!(img
        .segments
        .iter()
        .any(|s| n.entry >= s.vaddr && n.entry < s.vaddr + s.data.len() as u64));
}
