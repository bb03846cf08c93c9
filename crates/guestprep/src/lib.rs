//! Guests for rxen's tests and demos, prepared from Debian's package registry
//! and cached on disk (never committed):
//!
//! - [`debian_kernel`]: Debian's own `linux-image-amd64` / `linux-image-cloud-amd64`
//!   kernel (`vmlinuz`), unmodified.
//! - [`busybox_initramfs`]: a newc cpio initramfs with Debian's `busybox-static`,
//!   its applet links, device nodes and an `/init` of the caller's.
//! - [`default_guest`]: both, with an interactive shell on `hvc0`.
//! - [`static_binary`]: small C test programs compiled `gcc -static -O2`.
//! - [`hostile_kernel`]: a tiny PV kernel of the project's own that fires
//!   garbage hypercalls (for robustness tests).
//!
//! Packages are resolved with `apt-cache` and fetched with `apt-get download`,
//! so the machine's apt configuration (mirror, proxy) applies. Everything lands
//! in [`cache_dir`]; a call whose result is cached touches no network.

mod apt;
mod cache;
mod cc;
pub mod cpio;
mod hostile;
mod initramfs;
mod rootfs;

pub use cache::cache_dir;
pub use hostile::hostile_kernel;
pub use initramfs::DEFAULT_INIT;
pub use rootfs::{debian_rootfs, Rootfs};

use apt::{Apt, Wanted};
use std::path::{Path, PathBuf};

/// Why a guest could not be prepared. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PrepError {
    /// apt has no package lists.
    #[error(
        "apt has no package lists (nothing in {}), so it cannot find Debian package `{package}`: \
         run `apt-get update` as root first",
        lists_dir.display()
    )]
    NoPackageLists { package: String, lists_dir: PathBuf },
    /// The package is not in apt's lists.
    #[error(
        "Debian package `{package}` is not available from apt: {detail}\n\
         (run `apt-get update` as root if the package lists are old)"
    )]
    PackageMissing { package: String, detail: String },
    /// `apt-get download` failed.
    #[error(
        "could not download Debian package {package} from the package registry: {detail}\n\
         (check the network connection and apt's mirror or proxy settings; \
         run `apt-get update` as root if the package lists are old)"
    )]
    Download { package: String, detail: String },
    /// The package did not hold the expected file.
    #[error("could not extract `{member}` from {}: {detail}", deb.display())]
    Extract {
        deb: PathBuf,
        member: String,
        detail: String,
    },
    /// A host tool is missing.
    #[error("cannot run `{program}` ({source}): install it with `apt-get install {package}`")]
    MissingTool {
        program: String,
        package: String,
        source: std::io::Error,
    },
    /// gcc rejected a test program.
    #[error("gcc could not compile test program `{name}`:\n{stderr}")]
    Compile { name: String, stderr: String },
    /// The caller's initramfs spec or program name is unusable.
    #[error("invalid guest spec: {0}")]
    InvalidSpec(String),
    /// A file in the cache could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Which Debian kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// `linux-image-amd64`, the generic kernel.
    Amd64,
    /// `linux-image-cloud-amd64`, the smaller kernel for virtual machines.
    CloudAmd64,
}

impl Flavour {
    /// The Debian metapackage that always depends on the current kernel.
    pub fn metapackage(self) -> &'static str {
        match self {
            Flavour::Amd64 => "linux-image-amd64",
            Flavour::CloudAmd64 => "linux-image-cloud-amd64",
        }
    }
}

/// A Debian kernel in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// The bzImage (`/boot/vmlinuz-VERSION` from the package).
    pub vmlinuz: PathBuf,
    /// What `uname -r` prints in the guest, e.g. `6.1.0-41-amd64`.
    pub version: String,
}

/// Debian's current kernel of `flavour`, downloaded on first use. Later calls
/// find it in the cache (a local `apt-cache` look-up checks that it is still
/// current; without apt, the last one fetched is used).
pub fn debian_kernel(flavour: Flavour) -> Result<Kernel, PrepError> {
    debian_kernel_in(&cache_dir(), &Apt::default(), flavour)
}

fn debian_kernel_in(cache: &Path, apt: &Apt, flavour: Flavour) -> Result<Kernel, PrepError> {
    let meta = flavour.metapackage();
    let vmlinuz = apt.fetch(
        cache,
        &Wanted {
            key: meta,
            package: meta,
            via_metapackage: true,
            member: "./boot/vmlinuz-*",
            variant: "",
        },
    )?;
    let version = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .ok_or_else(|| PrepError::Extract {
            deb: vmlinuz.clone(),
            member: "./boot/vmlinuz-*".into(),
            detail: "the kernel file is not named vmlinuz-VERSION".into(),
        })?
        .to_string();
    Ok(Kernel { vmlinuz, version })
}

/// A module of Debian's current kernel of `flavour` (`path` below the
/// modules' `kernel/` directory, e.g. `drivers/block/xen-blkfront.ko`),
/// downloaded on first use, for initramfs images that need a driver the
/// kernel builds as a module (Debian's modules are not compressed).
pub fn kernel_module(flavour: Flavour, path: &str) -> Result<PathBuf, PrepError> {
    let meta = flavour.metapackage();
    let name = path.rsplit('/').next().unwrap_or(path);
    let key = format!("{meta}--{name}");
    let member = format!("./lib/modules/*/kernel/{path}");
    let variant = format!("--{name}");
    Apt::default().fetch(
        &cache_dir(),
        &Wanted {
            key: &key,
            package: meta,
            via_metapackage: true,
            member: &member,
            variant: &variant,
        },
    )
}

/// Debian's `busybox-static` binary, downloaded on first use.
fn busybox_in(cache: &Path, apt: &Apt) -> Result<PathBuf, PrepError> {
    apt.fetch(
        cache,
        &Wanted {
            key: "busybox-static",
            package: "busybox-static",
            via_metapackage: false,
            member: "./bin/busybox",
            variant: "",
        },
    )
}

/// What goes into a busybox initramfs besides busybox itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Initramfs {
    /// `/init` (mode 0755). `#!/bin/sh` is prepended if it has no `#!` line.
    pub init_script: String,
    /// Extra files: path in the image, contents, mode. A mode without file-type
    /// bits (e.g. `0o755`) is a regular file; `S_IFLNK | 0o777` makes a symlink
    /// whose contents are its target. Missing parent directories are created.
    pub files: Vec<(String, Vec<u8>, u32)>,
}

/// Builds (or finds in the cache) an uncompressed newc initramfs: Debian's
/// busybox as `/bin/busybox` with a link for each applet (`/bin/sh`,
/// `/sbin/poweroff`, `/usr/bin/seq`, ...), `/proc /sys /dev /tmp /etc`,
/// `/dev/console` (5,1), `/dev/hvc0` (229,0), `/dev/null`, `/dev/tty`, the
/// spec's files and its `/init`. The file is named by its content hash.
pub fn busybox_initramfs(spec: &Initramfs) -> Result<PathBuf, PrepError> {
    busybox_initramfs_in(&cache_dir(), &Apt::default(), spec)
}

fn busybox_initramfs_in(cache: &Path, apt: &Apt, spec: &Initramfs) -> Result<PathBuf, PrepError> {
    let busybox = busybox_in(cache, apt)?;
    let bytes = std::fs::read(&busybox).map_err(cache::io_err("cannot read", &busybox))?;
    let image = initramfs::build(spec, &bytes, &initramfs::applets(&busybox))?;
    let hash = cache::hash_hex(&[&image]);
    let path = cache
        .join("initramfs")
        .join(format!("busybox-{}.cpio", &hash[..32]));
    if !path.exists() {
        cache::write_atomic(&path, &image, 0o644)?;
    }
    Ok(path)
}

/// The demo guest: Debian's amd64 kernel and an initramfs whose `/init`
/// ([`DEFAULT_INIT`]) mounts proc, sys and devtmpfs, prints a banner and runs
/// an interactive busybox shell with job control on `hvc0`; it powers off when
/// the shell exits.
pub fn default_guest() -> Result<(Kernel, PathBuf), PrepError> {
    let kernel = debian_kernel(Flavour::Amd64)?;
    let initramfs = busybox_initramfs(&default_initramfs())?;
    Ok((kernel, initramfs))
}

/// The spec of [`default_guest`]'s initramfs.
pub fn default_initramfs() -> Initramfs {
    Initramfs {
        init_script: DEFAULT_INIT.to_string(),
        files: vec![
            (
                "/etc/passwd".into(),
                b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
                0o644,
            ),
            ("/etc/group".into(), b"root:x:0:\n".to_vec(), 0o644),
        ],
    }
}

/// `c_source` compiled with `gcc -static -O2` (for programs that run inside
/// test guests, and natively as their baseline). Cached by a hash of the name,
/// flags and source. `name` may use letters, digits, `-`, `_` and `.`.
pub fn static_binary(name: &str, c_source: &str) -> Result<Vec<u8>, PrepError> {
    cc::static_binary_in(&cache_dir(), name, c_source)
}

/// The C source of `rxnet`, the network measuring program of the network
/// tests and benchmark (TCP sink and sender, UDP echo and round trips).
pub const RXNET_C: &str = include_str!("rxnet.c");

/// `rxnet` built static (see [`RXNET_C`]): for guests and the native baseline.
pub fn rxnet() -> Result<Vec<u8>, PrepError> {
    static_binary("rxnet", RXNET_C)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::time::Instant;

    fn downloads() -> u32 {
        apt::DOWNLOADS.with(|d| d.get())
    }

    /// Really downloads busybox-static into an empty cache, then builds an
    /// initramfs twice; the second time nothing is fetched.
    #[test]
    fn downloads_busybox_and_builds_initramfs() {
        let cache = std::env::temp_dir().join(format!("guestprep-bb-{}", cache::unique_suffix()));
        let apt = Apt::default();
        let before = downloads();
        let spec = Initramfs {
            init_script: "echo marker".into(),
            files: vec![],
        };
        let a = busybox_initramfs_in(&cache, &apt, &spec).unwrap();
        assert_eq!(downloads(), before + 1);
        let b = busybox_initramfs_in(&cache, &apt, &spec).unwrap();
        assert_eq!(downloads(), before + 1, "second call must not download");
        assert_eq!(a, b);

        let image = fs::read(&a).unwrap();
        let entries = cpio::parse(&image).unwrap();
        let busybox = entries.iter().find(|e| e.name == "bin/busybox").unwrap();
        assert_eq!(&busybox.data[..4], b"\x7fELF");
        assert!(busybox.data.len() > 500_000, "a static busybox is big");
        for applet in ["bin/sh", "sbin/poweroff", "usr/bin/seq", "bin/cttyhack"] {
            assert!(entries.iter().any(|e| e.name == applet), "{applet}");
        }
        // The applet list came from the binary itself, not only the fallback.
        assert!(entries.len() > 150, "{} entries", entries.len());

        // The downloaded busybox runs (it is static) and is not the host's.
        let bb = busybox_in(&cache, &apt).unwrap();
        assert!(bb.starts_with(cache.join("debian")));
        let out = std::process::Command::new(&bb)
            .args(["echo", "ok"])
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"ok\n");
        fs::remove_dir_all(&cache).unwrap();
    }

    /// Fetches the real Debian kernel into the shared cache (so later guest
    /// tests reuse it), then checks a second call is served from the cache.
    #[test]
    fn debian_kernel_amd64_is_fetched_and_cached() {
        let t = Instant::now();
        let k = debian_kernel(Flavour::Amd64).unwrap();
        let first = t.elapsed();
        assert!(k.version.ends_with("-amd64") && !k.version.contains("cloud"));
        assert!(k.version.starts_with(|c: char| c.is_ascii_digit()));
        let bytes = fs::read(&k.vmlinuz).unwrap();
        assert!(bytes.len() > 4_000_000, "{} bytes", bytes.len());
        // A bzImage: "HdrS" boot protocol magic at 0x202.
        assert_eq!(&bytes[0x202..0x206], b"HdrS");

        let before = downloads();
        let t = Instant::now();
        let again = debian_kernel(Flavour::Amd64).unwrap();
        assert_eq!(downloads(), before, "second call must not download");
        assert_eq!(again, k);
        eprintln!(
            "kernel {} ({} bytes): first call {:?}, cached call {:?}",
            k.version,
            bytes.len(),
            first,
            t.elapsed()
        );
    }

    #[test]
    fn flavours_name_their_metapackages() {
        assert_eq!(Flavour::Amd64.metapackage(), "linux-image-amd64");
        assert_eq!(Flavour::CloudAmd64.metapackage(), "linux-image-cloud-amd64");
    }

    #[test]
    fn errors_say_what_to_run() {
        let e = PrepError::NoPackageLists {
            package: "busybox-static".into(),
            lists_dir: "/var/lib/apt/lists".into(),
        };
        let msg = e.to_string();
        assert!(msg.contains("run `apt-get update`") && msg.contains("busybox-static"));
    }
}
