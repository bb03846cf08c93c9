//! A Debian root file system in a disk image, for guests that boot from a
//! disk: `debootstrap` (minbase) from the mirror apt already uses, then
//! `mkfs.ext4 -d` into a raw image. Built once and cached; needs root (as
//! debootstrap does) and the `debootstrap` package.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::cache::{self, create_dir, io_err, ScratchDir};
use crate::PrepError;

/// What to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rootfs {
    /// Debian suite, e.g. `bookworm`.
    pub suite: String,
    /// debootstrap variant, e.g. `minbase`.
    pub variant: String,
    /// Image size in MiB.
    pub size_mib: u64,
}

impl Default for Rootfs {
    fn default() -> Rootfs {
        Rootfs {
            suite: "bookworm".into(),
            variant: "minbase".into(),
            size_mib: 1024,
        }
    }
}

/// The cached raw ext4 image of `spec` (built on first use). Treat it as
/// read-only: boot clones or copies of it.
pub fn debian_rootfs(spec: &Rootfs) -> Result<PathBuf, PrepError> {
    let cache = cache::cache_dir();
    let key = cache::hash_hex(&[
        spec.suite.as_bytes(),
        spec.variant.as_bytes(),
        &spec.size_mib.to_le_bytes(),
    ]);
    let dir = cache.join("rootfs");
    let path = dir.join(format!(
        "debian-{}-{}-{}.ext4",
        spec.suite,
        spec.variant,
        &key[..16]
    ));
    if path.exists() {
        return Ok(path);
    }
    create_dir(&dir)?;
    let mirror = apt_mirror(&spec.suite)?;
    let scratch = ScratchDir::new(&cache)?;
    let root = scratch.0.join("root");
    let out = Command::new("debootstrap")
        .arg(format!("--variant={}", spec.variant))
        .arg(&spec.suite)
        .arg(&root)
        .arg(&mirror)
        .output()
        .map_err(|source| PrepError::MissingTool {
            program: "debootstrap".into(),
            package: "debootstrap".into(),
            source,
        })?;
    if !out.status.success() {
        let log = fs::read_to_string(root.join("debootstrap/debootstrap.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        return Err(PrepError::Download {
            package: format!("debootstrap {} {}", spec.suite, spec.variant),
            detail: format!(
                "{}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        });
    }
    // Downloaded packages are not needed inside the image.
    for e in fs::read_dir(root.join("var/cache/apt/archives"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "deb") {
            let _ = fs::remove_file(e.path());
        }
    }
    let img = scratch.0.join("root.ext4");
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "rxen-root", "-d"])
        .arg(&root)
        .arg(&img)
        .arg(format!("{}M", spec.size_mib))
        .output()
        .map_err(|source| PrepError::MissingTool {
            program: "mkfs.ext4".into(),
            package: "e2fsprogs".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(PrepError::InvalidSpec(format!(
            "mkfs.ext4 -d failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    fs::rename(&img, &path).map_err(io_err("cannot store", &path))?;
    Ok(path)
}

/// The mirror apt uses for `suite` (from `/etc/apt/sources.list.d/*.sources`
/// or `/etc/apt/sources.list`), so debootstrap goes where apt goes.
fn apt_mirror(suite: &str) -> Result<String, PrepError> {
    let mut texts = Vec::new();
    for e in fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "sources") {
            texts.push(fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    if let Some(m) = texts.iter().find_map(|t| deb822_mirror(t, suite)) {
        return Ok(m);
    }
    let list = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    one_line_mirror(&list, suite).ok_or_else(|| PrepError::PackageMissing {
        package: format!("a {suite} mirror"),
        detail: "apt's sources name no mirror for it".into(),
    })
}

/// `URIs:` of the first deb822 stanza listing `suite` for `deb`.
fn deb822_mirror(text: &str, suite: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(|v| v.trim().to_string())
            })
        };
        let types = field("Types")?;
        let suites = field("Suites")?;
        if !types.split_whitespace().any(|t| t == "deb")
            || !suites.split_whitespace().any(|s| s == suite)
        {
            return None;
        }
        field("URIs")?.split_whitespace().next().map(str::to_string)
    })
}

/// The URI of the first `deb URI suite ...` line of a sources.list.
fn one_line_mirror(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace().filter(|w| !w.starts_with('['));
        (w.next()? == "deb").then_some(())?;
        let uri = w.next()?;
        (w.next()? == suite).then(|| uri.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_from_apt_sources() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            deb822_mirror(deb822, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(deb822_mirror(deb822, "trixie"), None);
        let list = "# comment\ndeb-src http://a/debian bookworm main\ndeb [arch=amd64] http://b/debian bookworm main\n";
        assert_eq!(
            one_line_mirror(list, "bookworm").as_deref(),
            Some("http://b/debian")
        );
    }
}
