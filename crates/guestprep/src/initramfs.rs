//! Busybox initramfs images: the layout, the applet links and `/init`.

use crate::cpio::{self, S_IFLNK, S_IFMT, S_IFREG};
use crate::{Initramfs, PrepError};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Applets every image links even if `busybox --list-full` cannot be run.
pub(crate) const REQUIRED_APPLETS: &[&str] = &[
    "bin/sh",
    "bin/mount",
    "bin/umount",
    "bin/mkdir",
    "bin/cat",
    "bin/echo",
    "bin/uname",
    "bin/date",
    "bin/sleep",
    "bin/dmesg",
    "bin/ls",
    "bin/grep",
    "bin/true",
    "bin/false",
    "bin/cttyhack",
    "bin/hostname",
    "sbin/poweroff",
    "sbin/reboot",
    "sbin/halt",
    "usr/bin/free",
    "usr/bin/seq",
    "usr/bin/setsid",
    "usr/bin/uptime",
    "usr/bin/nproc",
    "usr/bin/tr",
];

/// `/init` of the default guest: mounts, a banner, then an interactive shell
/// with job control on `hvc0` (on the kernel's primary console when there is no
/// `hvc0`, e.g. `ttyS0` under QEMU); powers off when the shell exits.
pub const DEFAULT_INIT: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=linux
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts 2>/dev/null
hostname rxen-guest
tty=/dev/hvc0
if [ ! -e $tty ]; then
    # Not on Xen: the kernel's primary console (listed last), e.g. ttyS0.
    for t in $(cat /sys/class/tty/console/active); do tty=/dev/$t; done
fi
echo
echo "rxen default guest: Linux $(uname -r), $(grep MemTotal /proc/meminfo | tr -s ' ')"
echo "busybox shell on $tty; 'poweroff' or 'exit' ends the domain."
# busybox's poweroff, reboot and halt signal PID 1 (USR2, TERM, USR1); this
# script is PID 1, so it acts on them. A shell runs traps only between
# commands, hence the shell in the background and `wait`, which a signal ends.
trap 'poweroff -f' USR2
trap 'reboot -f' TERM
trap 'halt -f' USR1
setsid sh -c "exec sh -l <$tty >$tty 2>&1" &
wait $!
echo "shell exited: powering off"
poweroff -f
"#;

/// Directories of every image, with their permissions.
const DIRS: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("run", 0o755),
    ("sbin", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
];

/// Device nodes: the kernel opens `/dev/console` for `/init` before anything
/// is mounted; the rest serve until (or without) devtmpfs.
const DEVICES: &[(&str, u32, u32, u32)] = &[
    ("dev/console", 0o600, 5, 1),
    ("dev/hvc0", 0o620, 229, 0),
    ("dev/null", 0o666, 1, 3),
    ("dev/tty", 0o666, 5, 0),
];

enum Node {
    Dir(u32),
    File(u32, Vec<u8>),
    Symlink(String),
    CharDev(u32, u32, u32),
}

/// The applets the busybox binary at `busybox` provides, as paths such as
/// `usr/bin/seq`, plus [`REQUIRED_APPLETS`].
pub(crate) fn applets(busybox: &Path) -> Vec<String> {
    let mut list: Vec<String> = Command::new(busybox)
        .arg("--list-full")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim().trim_start_matches('/').to_string())
                .filter(|l| !l.is_empty() && !l.contains(".."))
                .collect()
        })
        .unwrap_or_default();
    list.extend(REQUIRED_APPLETS.iter().map(|s| s.to_string()));
    list.sort();
    list.dedup();
    list
}

/// Normalises a path from a spec: no leading `/`, no empty, `.` or `..` parts.
fn clean_path(path: &str) -> Result<String, PrepError> {
    let parts: Vec<_> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || parts.iter().any(|p| *p == "." || *p == "..") || path.contains('\0') {
        return Err(PrepError::InvalidSpec(format!(
            "file path {path:?} must name a file below / without `.` or `..`"
        )));
    }
    Ok(parts.join("/"))
}

/// The complete image: layout, busybox and its applet links, the spec's files
/// and `/init`. Deterministic for the same inputs.
pub(crate) fn build(
    spec: &Initramfs,
    busybox: &[u8],
    applets: &[String],
) -> Result<Vec<u8>, PrepError> {
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    for (d, perm) in DIRS {
        nodes.insert(d.to_string(), Node::Dir(*perm));
    }
    for (name, perm, major, minor) in DEVICES {
        nodes.insert(name.to_string(), Node::CharDev(*perm, *major, *minor));
    }
    nodes.insert("bin/busybox".into(), Node::File(0o755, busybox.to_vec()));
    for a in applets {
        if a != "bin/busybox" {
            nodes.insert(a.clone(), Node::Symlink("/bin/busybox".into()));
        }
    }
    let mut init = spec.init_script.clone();
    if !init.starts_with("#!") {
        init.insert_str(0, "#!/bin/sh\n");
    }
    // The spec's files override links of the same name.
    for (path, data, mode) in &spec.files {
        let path = clean_path(path)?;
        let node = match mode & S_IFMT {
            0 | S_IFREG => Node::File(mode & 0o7777, data.clone()),
            S_IFLNK => Node::Symlink(String::from_utf8(data.clone()).map_err(|_| {
                PrepError::InvalidSpec(format!("symlink target of {path:?} is not UTF-8"))
            })?),
            _ => {
                return Err(PrepError::InvalidSpec(format!(
                    "{path:?}: mode {mode:o} is neither a regular file nor a symlink"
                )))
            }
        };
        if matches!(nodes.get(&path), Some(Node::Dir(_))) {
            return Err(PrepError::InvalidSpec(format!(
                "{path:?} is a directory of the image"
            )));
        }
        nodes.insert(path, node);
    }
    nodes.insert("init".into(), Node::File(0o755, init.into_bytes()));
    // Parents of every path, so the kernel never meets a missing directory.
    let parents: Vec<String> = nodes
        .keys()
        .flat_map(|p| {
            p.match_indices('/')
                .map(|(i, _)| p[..i].to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    for p in parents {
        match nodes.get(&p) {
            None => {
                nodes.insert(p, Node::Dir(0o755));
            }
            Some(Node::Dir(_)) => {}
            Some(_) => {
                return Err(PrepError::InvalidSpec(format!(
                    "{p:?} is a file but the image needs it as a directory"
                )))
            }
        }
    }
    // Sorted paths put every directory before its contents.
    let mut w = cpio::Writer::new();
    for (path, node) in &nodes {
        match node {
            Node::Dir(perm) => w.dir(path, *perm),
            Node::File(perm, data) => w.file(path, *perm, data),
            Node::Symlink(target) => w.symlink(path, target),
            Node::CharDev(perm, major, minor) => w.char_dev(path, *perm, *major, *minor),
        }
    }
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::{S_IFCHR, S_IFDIR};

    fn spec() -> Initramfs {
        Initramfs {
            init_script: "echo hello".into(),
            files: vec![
                ("/etc/motd".into(), b"hi\n".to_vec(), 0o644),
                ("/opt/test/run".into(), b"\x7fELF".to_vec(), 0o100755),
                ("bin/ls".into(), b"/bin/true".to_vec(), S_IFLNK | 0o777),
            ],
        }
    }

    fn applet_list() -> Vec<String> {
        applets(Path::new("/nonexistent/busybox"))
    }

    #[test]
    fn image_layout() {
        let img = build(&spec(), b"BUSYBOX", &applet_list()).unwrap();
        let entries = cpio::parse(&img).unwrap();
        let get = |n: &str| {
            entries
                .iter()
                .find(|e| e.name == n)
                .unwrap_or_else(|| panic!("{n} missing"))
        };
        let init = get("init");
        assert_eq!(init.mode, S_IFREG | 0o755);
        assert_eq!(init.data, b"#!/bin/sh\necho hello");
        assert_eq!(get("bin/busybox").data, b"BUSYBOX");
        assert_eq!(get("dev/console").rdev, (5, 1));
        assert_eq!(get("dev/console").mode & S_IFMT, S_IFCHR);
        assert_eq!(get("dev/hvc0").rdev, (229, 0));
        for d in ["proc", "sys", "dev", "tmp", "etc", "opt", "opt/test"] {
            assert_eq!(get(d).mode & S_IFMT, S_IFDIR, "{d}");
        }
        for a in REQUIRED_APPLETS {
            let e = get(a);
            if *a != "bin/ls" {
                assert_eq!(e.mode & S_IFMT, S_IFLNK, "{a}");
                assert_eq!(e.data, b"/bin/busybox", "{a}");
            }
        }
        assert_eq!(get("etc/motd").mode, S_IFREG | 0o644);
        assert_eq!(get("opt/test/run").mode, S_IFREG | 0o755);
        assert_eq!(
            get("bin/ls").data,
            b"/bin/true",
            "spec overrides applet links"
        );
        // Every entry's parent comes before it.
        for (i, e) in entries.iter().enumerate() {
            if let Some((parent, _)) = e.name.rsplit_once('/') {
                let p = entries.iter().position(|x| x.name == parent).unwrap();
                assert!(p < i, "{} before its parent", e.name);
            }
        }
    }

    #[test]
    fn image_is_deterministic() {
        let a = build(&spec(), b"BB", &applet_list()).unwrap();
        let b = build(&spec(), b"BB", &applet_list()).unwrap();
        assert_eq!(a, b);
        let mut other = spec();
        other.init_script.push('!');
        assert_ne!(a, build(&other, b"BB", &applet_list()).unwrap());
    }

    #[test]
    fn bad_specs_are_refused() {
        for (path, mode) in [
            ("../x", 0o644),
            ("/", 0o644),
            ("a/./b", 0o644),
            ("/tmp", 0o644),
            ("dev/x", 0o020644),
        ] {
            let s = Initramfs {
                init_script: String::new(),
                files: vec![(path.into(), vec![], mode)],
            };
            let err = build(&s, b"", &[]).unwrap_err();
            assert!(matches!(err, PrepError::InvalidSpec(_)), "{path}: {err}");
        }
        let s = Initramfs {
            init_script: String::new(),
            files: vec![("/a".into(), vec![], 0o644), ("/a/b".into(), vec![], 0o644)],
        };
        assert!(build(&s, b"", &[]).is_err());
    }

    #[test]
    fn default_init_runs_a_shell_on_hvc0() {
        assert!(DEFAULT_INIT.starts_with("#!/bin/sh\n"));
        assert!(DEFAULT_INIT.contains("tty=/dev/hvc0"));
        assert!(DEFAULT_INIT.contains("setsid sh -c"));
        assert!(DEFAULT_INIT.contains("trap 'poweroff -f' USR2"));
        assert!(DEFAULT_INIT.trim_end().ends_with("poweroff -f"));
    }
}
