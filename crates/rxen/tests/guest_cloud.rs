//! Debian's cloud kernel (`linux-image-cloud-amd64`, an LZ4 bzImage payload)
//! boots as a PV domain: through `rxen create -F` with a test /init, and
//! through `rxen demo --cloud` with its interactive shell driven over stdin.
//! Need /dev/kvm and root; without them they fail and say so.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{line_after, require_kvm, run_interactive, run_with_deadline, rxen, TempDir};
use guestprep::{Flavour, Initramfs};

#[test]
fn cloud_kernel_boots_to_init_and_powers_off() {
    require_kvm();
    let kernel = guestprep::debian_kernel(Flavour::CloudAmd64).expect("fetch the cloud kernel");
    assert!(kernel.version.ends_with("-cloud-amd64"), "{kernel:?}");
    let initrd = guestprep::busybox_initramfs(&Initramfs {
        init_script: "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n\
                      echo RXEN-CLOUD-INIT-MARKER\necho \"UNAME=$(uname -r)\"\n\
                      echo \"CPUS=$(grep -c ^processor /proc/cpuinfo)\"\npoweroff -f\n"
            .into(),
        files: vec![],
    })
    .expect("build the initramfs");
    let dir = TempDir::new("cloud");
    let cfg = common::write_config(
        &dir.path().join("cloud.cfg"),
        "rxen-test-cloud",
        &kernel.vmlinuz,
        &initrd,
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
    assert!(
        t.contains("RXEN-CLOUD-INIT-MARKER"),
        "no /init marker:\n{t}"
    );
    assert_eq!(
        line_after(&t, "UNAME="),
        Some(kernel.version.as_str()),
        "{t}"
    );
    assert_eq!(line_after(&t, "CPUS="), Some("1"), "{t}");
    assert_eq!(run.code(), Some(0), "poweroff must exit 0:\n{t}");
    eprintln!("cloud kernel: boot to poweroff in {:?}", run.took);
}

/// `rxen demo --cloud`: the default guest's shell on the console; `uname -r`
/// names the cloud kernel and busybox's `poweroff` (a signal to the /init
/// script) ends the domain with status 0.
#[test]
fn demo_cloud_shell_runs_commands_and_powers_off() {
    require_kvm();
    let kernel = guestprep::debian_kernel(Flavour::CloudAmd64).expect("fetch the cloud kernel");
    let dir = TempDir::new("demo-cloud");
    let run = run_interactive(
        Command::new(rxen())
            .env("RXEN_STATE_DIR", dir.path().join("state"))
            .args(["demo", "--cloud"]),
        &[
            // The quotes keep the echoed command line from matching.
            ("/ # ", "echo SHELL\"\"-UNAME=$(uname -r)\n"),
            ("SHELL-UNAME=6", "poweroff\n"),
        ],
        Duration::from_secs(240),
    );
    let t = run.text();
    assert!(!run.timed_out, "rxen demo --cloud did not end:\n{t}");
    assert_eq!(
        line_after(&t, "SHELL-UNAME=")
            .map(|v| v.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())),
        Some(kernel.version.as_str()),
        "{t}"
    );
    assert_eq!(run.code(), Some(0), "poweroff must exit 0:\n{t}");
}
