//! Bad input at the domain level, through the `rxen` binary: a file that is
//! not a kernel, a kernel without Xen PV support, a truncated bzImage and too
//! little memory each give a clear error naming the file and the problem,
//! exit status 1, and no domain (in the foreground or detached).
//! Needs /dev/kvm (the memory case builds the machine first).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{require_kvm, run_with_deadline, rxen, TempDir};
use guestprep::Flavour;

const HELLO_C: &str = "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n";

/// Runs `rxen create [-F] CFG` for a domain with `kernel` and `memory`, and
/// checks the failure: status 1, an error naming `names` and saying `what`,
/// nothing from a guest, and no domain left in `rxen list`.
fn assert_refused(dir: &Path, kernel: &Path, memory: u64, names: &Path, what: &[&str]) {
    let cfg = dir.join("bad.cfg");
    std::fs::write(
        &cfg,
        format!(
            "name = \"bad\"\ntype = \"pv\"\nkernel = \"{}\"\nmemory = {memory}\n",
            kernel.display()
        ),
    )
    .unwrap();
    let state = dir.join("state");
    for foreground in [true, false] {
        let mut cmd = Command::new(rxen());
        cmd.env("RXEN_STATE_DIR", &state).arg("create");
        if foreground {
            cmd.arg("-F");
        }
        let run = run_with_deadline(cmd.arg(&cfg), Duration::from_secs(60));
        let t = run.text();
        let err = run.stderr();
        assert!(!run.timed_out, "rxen hung:\n{t}");
        assert_eq!(run.code(), Some(1), "foreground {foreground}:\n{t}");
        assert!(err.contains("rxen: error:"), "{t}");
        assert!(
            err.contains(&names.display().to_string()),
            "the error must name {}:\n{t}",
            names.display()
        );
        for w in what {
            assert!(err.contains(w), "the error must say {w:?}:\n{t}");
        }
        assert!(!err.contains("panicked"), "{t}");
        assert!(!run.stdout().contains("Linux version"), "a guest ran:\n{t}");
        let list = run_with_deadline(
            Command::new(rxen())
                .env("RXEN_STATE_DIR", &state)
                .arg("list"),
            Duration::from_secs(30),
        );
        let domains = list.stdout();
        assert!(
            domains.lines().all(|l| !l.starts_with("bad ")),
            "a domain was left behind:\n{domains}"
        );
    }
}

#[test]
fn a_file_that_is_not_a_kernel() {
    require_kvm();
    let dir = TempDir::new("bad-notkernel");
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "hello, this is not a kernel\n").unwrap();
    assert_refused(
        dir.path(),
        &file,
        64,
        &file,
        &["not a kernel image", "starts with bytes 68 65"],
    );
}

#[test]
fn a_kernel_without_xen_pv_support() {
    require_kvm();
    let dir = TempDir::new("bad-notpv");
    // A plain static ELF (glibc's, with 8-byte aligned GNU notes).
    let elf = dir.path().join("hello");
    std::fs::write(&elf, guestprep::static_binary("hello", HELLO_C).unwrap()).unwrap();
    assert_refused(
        dir.path(),
        &elf,
        64,
        &elf,
        &["lacks Xen PV support", "no Xen ELF notes", "CONFIG_XEN_PV"],
    );
}

#[test]
fn a_truncated_bzimage() {
    require_kvm();
    let dir = TempDir::new("bad-truncated");
    let kernel = guestprep::debian_kernel(Flavour::Amd64).expect("fetch Debian's kernel");
    let bytes = std::fs::read(&kernel.vmlinuz).unwrap();
    let cut = dir.path().join("vmlinuz-cut");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_refused(
        dir.path(),
        &cut,
        256,
        &cut,
        &["truncated kernel image", "bzImage payload"],
    );
    // Cut inside the setup header too.
    std::fs::write(&cut, &bytes[..600]).unwrap();
    assert_refused(dir.path(), &cut, 256, &cut, &["truncated kernel image"]);
}

#[test]
fn too_little_memory_for_debians_kernel() {
    require_kvm();
    let dir = TempDir::new("bad-memory");
    let kernel = guestprep::debian_kernel(Flavour::Amd64).expect("fetch Debian's kernel");
    assert_refused(
        dir.path(),
        &kernel.vmlinuz,
        1,
        &kernel.vmlinuz,
        &["1 MiB of memory is too little", "more `memory`"],
    );
}
