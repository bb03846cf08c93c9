//! The benchmark guests, prepared with guestprep: Debian's kernel, the guest
//! program (also run natively) and busybox initramfs images whose `/init`
//! prints a marker and runs the requested loops.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use guestprep::{Flavour, Initramfs};

/// The line `/init` prints first: a boot ends here.
pub const INIT_MARKER: &str = "RXEN-BENCH-INIT";
/// The prefix of the guest program's result lines.
pub const RESULT: &str = "RXEN-BENCH ";
/// Where the program sits in the initramfs.
const GUEST_PATH: &str = "/bin/rxen-bench-guest";

const PROGRAM_C: &str = include_str!("guest_program.c");

/// What the boot benchmark's guest does: the marker, then power off.
pub fn boot_init() -> String {
    format!("#!/bin/sh\necho {INIT_MARKER}\npoweroff -f\n")
}

/// What a workload guest does: each `(mode, arg)` runs the program once.
pub fn workload_init(runs: &[(&str, u64)]) -> String {
    let mut s = format!("#!/bin/sh\necho {INIT_MARKER}\n");
    for (mode, arg) in runs {
        s.push_str(&format!("{GUEST_PATH} {mode} {arg}\n"));
    }
    s.push_str("poweroff -f\n");
    s
}

/// Everything a benchmark needs, prepared (and cached) once.
pub struct Prepared {
    pub kernel: guestprep::Kernel,
    /// The guest program, also runnable on the host.
    pub program: PathBuf,
    program_bytes: Vec<u8>,
}

impl Prepared {
    /// Fetches Debian's kernel and compiles the program into `work`.
    pub fn new(work: &Path) -> Result<Prepared> {
        let kernel = guestprep::debian_kernel(Flavour::Amd64)
            .context("cannot prepare Debian's linux-image-amd64 kernel")?;
        let program_bytes = guestprep::static_binary("rxen-bench-guest", PROGRAM_C)
            .context("cannot build the benchmark's guest program")?;
        let program = work.join("rxen-bench-guest");
        std::fs::write(&program, &program_bytes)
            .with_context(|| format!("cannot write {}", program.display()))?;
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .with_context(|| format!("cannot make {} executable", program.display()))?;
        Ok(Prepared {
            kernel,
            program,
            program_bytes,
        })
    }

    /// A busybox initramfs with the program and this `/init`.
    pub fn initramfs(&self, init: String) -> Result<PathBuf> {
        guestprep::busybox_initramfs(&Initramfs {
            init_script: init,
            files: vec![(GUEST_PATH.into(), self.program_bytes.clone(), 0o755)],
        })
        .context("cannot build the benchmark's initramfs")
    }
}

/// One parsed `RXEN-BENCH` line: its mode and `key=value` fields.
#[derive(Debug, PartialEq)]
pub struct Reading {
    pub mode: String,
    pub fields: Vec<(String, String)>,
}

impl Reading {
    pub fn parse(line: &str) -> Option<Reading> {
        let (_, rest) = line.split_once(RESULT)?;
        let mut words = rest.split_whitespace();
        let mode = words.next()?.to_string();
        let fields = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Reading { mode, fields })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn num(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_parse() {
        let r = Reading::parse("RXEN-BENCH cpu rounds=10 ns=2500 sum=77\r").unwrap();
        assert_eq!(r.mode, "cpu");
        assert_eq!(r.num("ns"), Some(2500));
        assert_eq!(r.get("sum"), Some("77"));
        assert_eq!(Reading::parse("[    1.2] random kernel line"), None);
    }

    #[test]
    fn init_scripts_print_the_marker_first() {
        let s = workload_init(&[("cpu", 5), ("syscall", 100)]);
        let lines: Vec<_> = s.lines().collect();
        assert_eq!(lines[1], format!("echo {INIT_MARKER}"));
        assert_eq!(lines[2], format!("{GUEST_PATH} cpu 5"));
        assert_eq!(lines[3], format!("{GUEST_PATH} syscall 100"));
        assert_eq!(lines.last(), Some(&"poweroff -f"));
        assert!(boot_init().contains(INIT_MARKER));
    }
}
