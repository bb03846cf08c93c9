//! The hostile PV kernel: a tiny Xen PV guest of the project's own
//! (`hostile/hostile.c`, linked by `hostile/hostile.ld`) that fires
//! randomised garbage hypercalls at rxen, or a fixed script of bad calls
//! whose return values it prints. Compiled with the host's gcc against
//! `libxen-dev`'s headers and cached by a hash of sources and flags.

use crate::cache::{hash_hex, io_err, write_atomic, ScratchDir};
use crate::PrepError;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = include_str!("hostile/hostile.c");
const LINKER_SCRIPT: &str = include_str!("hostile/hostile.ld");
/// Where the Xen public headers the kernel is written against live.
const XEN_HEADER: &str = "/usr/include/xen/xen.h";

/// A freestanding, static kernel at a high address: no libc, no PIC, the
/// kernel code model, no red zone (rxen writes exception frames below the
/// stack pointer), no SSE, no stack protector.
const CFLAGS: &[&str] = &[
    "-O2",
    "-Wall",
    "-ffreestanding",
    "-fno-builtin",
    "-nostdlib",
    "-static",
    "-fno-pic",
    "-no-pie",
    "-mcmodel=kernel",
    "-mno-red-zone",
    "-mgeneral-regs-only",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-Wl,--build-id=none",
    "-Wl,--no-warn-rwx-segments",
];

/// Builds (or finds in the cache) the hostile kernel and returns its path:
/// an ELF with Xen notes (GUEST_OS "hostile", ENTRY, VIRT_BASE and
/// PADDR_OFFSET 0xffffffff80000000) loaded at VIRT_BASE + 1 MiB.
///
/// Its command line chooses what it does: `mode=script` runs the fixed list
/// of bad calls and prints `HOSTILE-RET name value` for each; `mode=crash`,
/// `mode=reboot` and `mode=poweroff` shut down at once as crashed, rebooting
/// or powered off (a domain that fails at boot); `mode=alias` rewrites its
/// page tables through rxen's RAM alias; `mode=xsflood` sends xenstore
/// requests and never takes a reply; otherwise `seed=N count=N` fuzz. It prints `HOSTILE-DONE` and powers off at the end;
/// an exception that reaches it prints `HOSTILE-TRAP vector` and it shuts down
/// as crashed.
pub fn hostile_kernel() -> Result<PathBuf, PrepError> {
    hostile_kernel_in(&crate::cache_dir())
}

pub(crate) fn hostile_kernel_in(cache: &Path) -> Result<PathBuf, PrepError> {
    let key = hash_hex(&[
        CFLAGS.join(" ").as_bytes(),
        SOURCE.as_bytes(),
        LINKER_SCRIPT.as_bytes(),
    ]);
    let path = cache
        .join("bin")
        .join(format!("hostile-{}.elf", &key[..32]));
    if path.exists() {
        return Ok(path);
    }
    if !Path::new(XEN_HEADER).exists() {
        return Err(PrepError::MissingTool {
            program: format!("the Xen public headers ({XEN_HEADER})"),
            package: "libxen-dev".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let scratch = ScratchDir::new(cache)?;
    let src = scratch.0.join("hostile.c");
    let ld = scratch.0.join("hostile.ld");
    let out = scratch.0.join("hostile.elf");
    fs::write(&src, SOURCE).map_err(io_err("cannot write", &src))?;
    fs::write(&ld, LINKER_SCRIPT).map_err(io_err("cannot write", &ld))?;
    let result = Command::new("gcc")
        .args(CFLAGS)
        .arg(format!("-Wl,-T,{}", ld.display()))
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| PrepError::MissingTool {
            program: "gcc".into(),
            package: "gcc".into(),
            source,
        })?;
    if !result.status.success() {
        return Err(PrepError::Compile {
            name: "hostile".into(),
            stderr: String::from_utf8_lossy(&result.stderr).into_owned(),
        });
    }
    let bytes = fs::read(&out).map_err(io_err("cannot read", &out))?;
    write_atomic(&path, &bytes, 0o644)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel builds and carries the Xen notes rxen's loader needs.
    #[test]
    fn builds_an_elf_with_xen_notes() {
        let cache = std::env::temp_dir().join(format!(
            "guestprep-hostile-{}",
            crate::cache::unique_suffix()
        ));
        let path = hostile_kernel_in(&cache).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF");
        // The notes' owner and the guest OS name are in the file.
        let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"Xen\0") && has(b"hostile\0") && has(b"xen-3.0\0"));
        // Cached: the second call builds nothing new.
        assert_eq!(hostile_kernel_in(&cache).unwrap(), path);
        fs::remove_dir_all(&cache).unwrap();
    }
}
