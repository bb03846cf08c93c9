//! Files taken out of Debian packages: resolve a package with `apt-cache`,
//! fetch it with `apt-get download`, extract one member with
//! `dpkg-deb --fsys-tarfile | tar`, and keep only that file in the cache.
//!
//! Cache layout: `debian/<package>_<version>/<file>` holds the extracted file;
//! `debian/<key>.latest` names the directory last resolved for `key` (a
//! package or metapackage), so that a machine whose apt cannot answer (no
//! package lists, no apt at all) still finds what it fetched before.

use crate::cache::{create_dir, io_err, write_atomic, ScratchDir};
use crate::PrepError;
use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

thread_local! {
    /// Downloads started by this thread (tests check that a cached call fetches nothing).
    pub(crate) static DOWNLOADS: Cell<u32> = const { Cell::new(0) };
}

/// How to run apt: the system's configuration, plus options (tests point
/// `Dir::State::Lists` elsewhere to play a machine that never ran `apt-get update`).
#[derive(Clone, Debug)]
pub(crate) struct Apt {
    pub options: Vec<String>,
    pub lists_dir: PathBuf,
}

impl Default for Apt {
    fn default() -> Apt {
        Apt {
            options: Vec::new(),
            lists_dir: PathBuf::from("/var/lib/apt/lists"),
        }
    }
}

/// What to take out of which package.
pub(crate) struct Wanted<'a> {
    /// Name for the `.latest` pointer (the metapackage for kernels).
    pub key: &'a str,
    /// The package, or a metapackage whose versioned dependency is the package.
    pub package: &'a str,
    /// Resolve `package` through its `linux-image-*` dependency first.
    pub via_metapackage: bool,
    /// Member of the package's file system, as `tar` names it (wildcards allowed),
    /// e.g. `./boot/vmlinuz-*` or `./bin/busybox`.
    pub member: &'a str,
    /// Appended to the cache directory's name, so several members of one
    /// package version (a kernel and its modules) each have their own.
    pub variant: &'a str,
}

impl Apt {
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for o in &self.options {
            c.arg("-o").arg(o);
        }
        c.env("LC_ALL", "C").stdin(Stdio::null());
        c
    }

    fn lists_present(&self) -> bool {
        fs::read_dir(&self.lists_dir)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
            })
            .unwrap_or(false)
    }

    /// The error for a package apt does not know or cannot fetch, which on a
    /// machine without package lists is always the lists' fault.
    fn unknown(&self, package: &str, detail: String) -> PrepError {
        if !self.lists_present() {
            PrepError::NoPackageLists {
                package: package.to_string(),
                lists_dir: self.lists_dir.clone(),
            }
        } else {
            PrepError::PackageMissing {
                package: package.to_string(),
                detail,
            }
        }
    }

    /// The versioned package a metapackage such as `linux-image-amd64` depends on.
    pub(crate) fn resolve_metapackage(&self, meta: &str) -> Result<String, PrepError> {
        let mut cmd = self.command("apt-cache");
        cmd.args(["depends", meta]);
        let out = run(cmd, "apt-cache", "apt")?;
        let text = String::from_utf8_lossy(&out.stdout);
        match (out.status.success(), metapackage_dependency(&text, meta)) {
            (true, Some(dep)) => Ok(dep),
            (true, None) => Err(PrepError::PackageMissing {
                package: meta.to_string(),
                detail: format!(
                    "`apt-cache depends {meta}` lists no versioned linux-image package:\n{text}"
                ),
            }),
            (false, _) => Err(self.unknown(meta, stderr_tail(&out))),
        }
    }

    /// The version apt would install of `package`.
    pub(crate) fn candidate_version(&self, package: &str) -> Result<String, PrepError> {
        let mut cmd = self.command("apt-cache");
        cmd.args(["policy", package]);
        let out = run(cmd, "apt-cache", "apt")?;
        let text = String::from_utf8_lossy(&out.stdout);
        match candidate_from_policy(&text) {
            Some(v) if out.status.success() => Ok(v),
            _ => Err(self.unknown(
                package,
                format!("`apt-cache policy {package}` shows no candidate version"),
            )),
        }
    }

    /// Downloads `package`=`version` into `dir`; returns the `.deb`.
    fn download(&self, package: &str, version: &str, dir: &Path) -> Result<PathBuf, PrepError> {
        DOWNLOADS.with(|d| d.set(d.get() + 1));
        eprintln!("guestprep: downloading Debian package {package} {version} ...");
        let start = Instant::now();
        let mut cmd = self.command("apt-get");
        cmd.args(["download", "-q"])
            .arg(format!("{package}={version}"))
            .current_dir(dir);
        let out = run(cmd, "apt-get", "apt")?;
        let deb = fs::read_dir(dir)
            .map_err(io_err("cannot read directory", dir))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"));
        match deb {
            Some(deb) if out.status.success() => {
                let size = fs::metadata(&deb).map(|m| m.len()).unwrap_or(0);
                eprintln!(
                    "guestprep: downloaded {} ({:.1} MB) in {:.1} s",
                    deb.file_name().unwrap_or_default().to_string_lossy(),
                    size as f64 / 1e6,
                    start.elapsed().as_secs_f64()
                );
                Ok(deb)
            }
            _ => {
                let detail = stderr_tail(&out);
                if !self.lists_present() {
                    return Err(self.unknown(package, detail));
                }
                Err(PrepError::Download {
                    package: format!("{package} {version}"),
                    detail,
                })
            }
        }
    }

    /// The cached file `wanted.member` of the current version of the package,
    /// downloading and extracting it if it is not cached yet.
    pub(crate) fn fetch(&self, cache: &Path, wanted: &Wanted) -> Result<PathBuf, PrepError> {
        let root = cache.join("debian");
        let pointer = root.join(format!("{}.latest", wanted.key));
        // apt's answer changes only when its lists do: skip asking (~1 s).
        if pointer_is_fresh(&pointer, &self.lists_dir) {
            if let Some(f) = read_pointer(&root, &pointer) {
                return Ok(f);
            }
        }
        let resolved = (|| {
            let package = if wanted.via_metapackage {
                self.resolve_metapackage(wanted.package)?
            } else {
                wanted.package.to_string()
            };
            let version = self.candidate_version(&package)?;
            Ok::<_, PrepError>((package, version))
        })();
        let (package, version) = match resolved {
            Ok(pv) => pv,
            Err(e) => {
                // apt cannot answer: what was fetched before still serves.
                return read_pointer(&root, &pointer).ok_or(e);
            }
        };
        let dir_name = format!(
            "{package}_{}{}",
            version.replace(':', "%3a"),
            wanted.variant
        );
        let dir = root.join(&dir_name);
        let file = match only_file(&dir) {
            Some(f) => f,
            None => self.download_into(cache, &package, &version, wanted.member, &dir)?,
        };
        write_atomic(&pointer, dir_name.as_bytes(), 0o644)?;
        Ok(file)
    }

    fn download_into(
        &self,
        cache: &Path,
        package: &str,
        version: &str,
        member: &str,
        dir: &Path,
    ) -> Result<PathBuf, PrepError> {
        let scratch = ScratchDir::new(cache)?;
        let deb = self.download(package, version, &scratch.0)?;
        let extracted = extract_member(&deb, member, &scratch.0.join("root"))?;
        // Build the final directory beside its place and rename it in, so a
        // concurrent fetch sees either nothing or the complete file.
        let staged = scratch.0.join("staged");
        create_dir(&staged)?;
        let name = extracted.file_name().expect("extracted member has a name");
        fs::rename(&extracted, staged.join(name))
            .map_err(io_err("cannot move extracted file", &extracted))?;
        create_dir(dir.parent().expect("cache directory has a parent"))?;
        if let Err(e) = fs::rename(&staged, dir) {
            // Another process finished first: use its copy.
            if only_file(dir).is_none() {
                return Err(io_err("cannot store", dir)(e));
            }
        }
        only_file(dir).ok_or_else(|| PrepError::Extract {
            deb,
            member: member.to_string(),
            detail: format!("nothing stored in {}", dir.display()),
        })
    }
}

/// The file a `.latest` pointer names, if it is still there.
fn read_pointer(root: &Path, pointer: &Path) -> Option<PathBuf> {
    let dir = fs::read_to_string(pointer).ok()?;
    let dir = dir.trim();
    if dir.is_empty() || dir.contains('/') {
        return None;
    }
    only_file(&root.join(dir))
}

/// Whether `pointer` was written after apt's package lists last changed
/// (`false` when either is missing).
fn pointer_is_fresh(pointer: &Path, lists_dir: &Path) -> bool {
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(written) = mtime(pointer) else {
        return false;
    };
    let Some(mut lists) = mtime(lists_dir) else {
        return false;
    };
    for e in fs::read_dir(lists_dir).into_iter().flatten().flatten() {
        if let Some(t) = mtime(&e.path()) {
            lists = lists.max(t);
        }
    }
    written >= lists
}

/// The single file in `dir`, if there is exactly one.
fn only_file(dir: &Path) -> Option<PathBuf> {
    let mut files = fs::read_dir(dir).ok()?.flatten().map(|e| e.path());
    let first = files.next()?;
    (files.next().is_none() && first.is_file()).then_some(first)
}

/// Extracts `member` (a `tar` pattern such as `./boot/vmlinuz-*`) from `deb`
/// into `dest`; returns the one regular file it produced.
fn extract_member(deb: &Path, member: &str, dest: &Path) -> Result<PathBuf, PrepError> {
    let fail = |detail: String| PrepError::Extract {
        deb: deb.to_path_buf(),
        member: member.to_string(),
        detail,
    };
    create_dir(dest)?;
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| PrepError::MissingTool {
            program: "dpkg-deb".into(),
            package: "dpkg".into(),
            source,
        })?;
    let tar_out = Command::new("tar")
        .args(["-x", "--wildcards", "-f", "-", "-C"])
        .arg(dest)
        .arg(member)
        .stdin(dpkg.stdout.take().expect("piped"))
        .output()
        .map_err(|source| PrepError::MissingTool {
            program: "tar".into(),
            package: "tar".into(),
            source,
        })?;
    let dpkg_out = dpkg
        .wait_with_output()
        .map_err(|e| fail(format!("dpkg-deb: {e}")))?;
    if !dpkg_out.status.success() {
        return Err(fail(format!("dpkg-deb failed: {}", stderr_tail(&dpkg_out))));
    }
    if !tar_out.status.success() {
        return Err(fail(format!("tar failed: {}", stderr_tail(&tar_out))));
    }
    let mut found = Vec::new();
    collect_files(dest, &mut found);
    match found.len() {
        1 => Ok(found.pop().expect("one file")),
        0 => Err(fail("the package holds no such file".into())),
        n => Err(fail(format!("the pattern matched {n} files: {found:?}"))),
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            collect_files(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

fn run(mut cmd: Command, program: &str, package: &str) -> Result<Output, PrepError> {
    cmd.output().map_err(|source| PrepError::MissingTool {
        program: program.to_string(),
        package: package.to_string(),
        source,
    })
}

/// The last lines of a command's stderr (apt's `E:` lines are at the end).
fn stderr_tail(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("N: Download is performed unsandboxed"))
        .collect();
    let tail = lines[lines.len().saturating_sub(6)..].join("\n");
    if tail.is_empty() {
        format!("exit status {}", out.status)
    } else {
        tail
    }
}

/// From `apt-cache depends META` output, the first real (not virtual,
/// `<...>`) `linux-image-*` package that META depends on.
pub(crate) fn metapackage_dependency(text: &str, meta: &str) -> Option<String> {
    let mut in_meta = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_meta = line.trim() == meta;
            continue;
        }
        let Some(rest) = line.trim().trim_start_matches('|').strip_prefix("Depends:") else {
            continue;
        };
        let dep = rest.trim();
        if in_meta && !dep.starts_with('<') && dep.starts_with("linux-image-") && dep != meta {
            return Some(dep.to_string());
        }
    }
    None
}

/// The `Candidate:` of `apt-cache policy` output, unless `(none)`.
pub(crate) fn candidate_from_policy(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "(none)")
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured on Debian 12 after `apt-get update`.
    const DEPENDS_AMD64: &str = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
    const DEPENDS_CLOUD: &str =
        "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
    /// The shape apt uses for alternatives, virtual packages and recommends.
    const DEPENDS_ODD: &str = "\
linux-image-amd64
 |Depends: <linux-image-virtual>
  Depends: linux-image-6.1.0-41-amd64
  Recommends: firmware-linux-free
linux-image-6.1.0-41-amd64
  Depends: linux-image-6.1.0-41-amd64-unsigned
";
    const POLICY: &str = "\
busybox-static:
  Installed: 1:1.35.0-4+deb12u1+b1
  Candidate: 1:1.35.0-4+deb12u1+b1
  Version table:
 *** 1:1.35.0-4+deb12u1+b1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
";

    #[test]
    fn parses_metapackage_dependency() {
        assert_eq!(
            metapackage_dependency(DEPENDS_AMD64, "linux-image-amd64").as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        assert_eq!(
            metapackage_dependency(DEPENDS_CLOUD, "linux-image-cloud-amd64").as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(
            metapackage_dependency(DEPENDS_ODD, "linux-image-amd64").as_deref(),
            Some("linux-image-6.1.0-41-amd64")
        );
        assert_eq!(metapackage_dependency("", "linux-image-amd64"), None);
        assert_eq!(
            metapackage_dependency(DEPENDS_AMD64, "linux-image-cloud-amd64"),
            None
        );
    }

    #[test]
    fn parses_candidate() {
        assert_eq!(
            candidate_from_policy(POLICY).as_deref(),
            Some("1:1.35.0-4+deb12u1+b1")
        );
        assert_eq!(
            candidate_from_policy("foo:\n  Installed: (none)\n  Candidate: (none)\n"),
            None
        );
        assert_eq!(candidate_from_policy(""), None);
    }

    #[test]
    fn pointer_freshness_follows_apt_lists() {
        use std::time::{Duration, SystemTime};
        let dir =
            std::env::temp_dir().join(format!("guestprep-fresh-{}", crate::cache::unique_suffix()));
        let lists = dir.join("lists");
        fs::create_dir_all(&lists).unwrap();
        let packages = lists.join("x_Packages");
        let pointer = dir.join("k.latest");
        assert!(!pointer_is_fresh(&pointer, &lists), "no pointer yet");
        fs::write(&packages, "").unwrap();
        fs::write(&pointer, "pkg_1").unwrap();
        let set = |p: &Path, t| {
            fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(t)
                .unwrap()
        };
        let now = SystemTime::now();
        set(&packages, now - Duration::from_secs(60));
        fs::File::open(&lists)
            .unwrap()
            .set_modified(now - Duration::from_secs(60))
            .unwrap();
        set(&pointer, now);
        assert!(pointer_is_fresh(&pointer, &lists));
        // `apt-get update` brought new lists: ask apt again.
        set(&packages, now + Duration::from_secs(60));
        assert!(!pointer_is_fresh(&pointer, &lists));
        assert!(!pointer_is_fresh(&pointer, &dir.join("missing")));
        // A pointer to nothing is no answer.
        assert_eq!(read_pointer(&dir, &pointer), None);
        fs::create_dir_all(dir.join("pkg_1")).unwrap();
        fs::write(dir.join("pkg_1/vmlinuz-1"), "k").unwrap();
        assert_eq!(
            read_pointer(&dir, &pointer),
            Some(dir.join("pkg_1/vmlinuz-1"))
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    fn empty_lists_apt() -> (Apt, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("guestprep-lists-{}", crate::cache::unique_suffix()));
        fs::create_dir_all(dir.join("partial")).unwrap();
        let apt = Apt {
            options: vec![
                format!("Dir::State::Lists={}", dir.display()),
                "Dir::Cache::pkgcache=".into(),
                "Dir::Cache::srcpkgcache=".into(),
            ],
            lists_dir: dir.clone(),
        };
        (apt, dir)
    }

    /// A machine that never ran `apt-get update` is told to run it.
    #[test]
    fn no_package_lists_says_run_apt_get_update() {
        let (apt, dir) = empty_lists_apt();
        let cache = dir.join("cache");
        let wanted = Wanted {
            key: "linux-image-amd64",
            package: "linux-image-amd64",
            via_metapackage: true,
            member: "./boot/vmlinuz-*",
            variant: "",
        };
        let err = apt.fetch(&cache, &wanted).unwrap_err();
        assert!(matches!(err, PrepError::NoPackageLists { .. }), "{err:?}");
        assert!(err.to_string().contains("apt-get update"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_package_is_named() {
        let err = Apt::default()
            .candidate_version("rxen-no-such-package")
            .unwrap_err();
        // With package lists: PackageMissing; on a machine without: NoPackageLists.
        assert!(err.to_string().contains("rxen-no-such-package"), "{err}");
    }

    /// An unreachable mirror gives a download error that names the package.
    #[test]
    fn unreachable_registry_is_a_download_error() {
        let apt = Apt {
            options: vec![
                // Nothing listens on the discard port of loopback.
                "Acquire::http::Proxy=http://127.0.0.1:9".into(),
                "Acquire::Retries=0".into(),
            ],
            ..Apt::default()
        };
        let Ok(version) = apt.candidate_version("busybox-static") else {
            eprintln!("apt does not know busybox-static here; skipping");
            return;
        };
        let dir = std::env::temp_dir().join(format!(
            "guestprep-offline-{}",
            crate::cache::unique_suffix()
        ));
        fs::create_dir_all(&dir).unwrap();
        let err = apt.download("busybox-static", &version, &dir).unwrap_err();
        assert!(matches!(err, PrepError::Download { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("busybox-static"), "{msg}");
        assert!(msg.contains("network"), "{msg}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
