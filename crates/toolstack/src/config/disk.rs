//! `disk=[...]` entries: the DISKSPEC syntax of `xl-disk-configuration(5)`.
//!
//! A spec is a comma-separated series of `key=value` parameters, flags and
//! positional parameters (`target, format, vdev, access`, in that order,
//! each filling the first one not yet given). `target=` swallows the rest of
//! the spec. The deprecated xend forms (`raw:/path,hda,w`,
//! `phy:/dev/x,xvda,w`, `,hdc:cdrom,r`, `iscsi:...`) are read as xl reads
//! them. The vdev is also decoded into the xenstore device number
//! (`xen-vbd-interface(7)`).

use serde::{Deserialize, Serialize};

/// The image format of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
    Qcow,
    Qcow2,
    Vhd,
    Qed,
    /// No medium: an empty CD-ROM drive.
    Empty,
}

/// How the guest may use the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    #[serde(rename = "ro")]
    ReadOnly,
    #[serde(rename = "rw")]
    ReadWrite,
}

/// What kind of device the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DevType {
    Disk,
    /// Removable and read-only; may have no target (empty drive).
    Cdrom,
}

/// `backendtype=`: which backend implementation to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendType {
    Phy,
    Tap,
    Qdisk,
    Standalone,
}

/// `specification=`: the protocol the guest speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Specification {
    Xen,
    Virtio,
}

/// The naming scheme a vdev was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VdevKind {
    /// `xvdX[N]` or `dNpM`: a Xen virtual disk.
    Xvd,
    /// `hdX[N]`: IDE disk 0..3, partition 0..63.
    Hd,
    /// `sdX[N]`: SCSI disk 0..15, partition 0..15.
    Sd,
    /// A raw xenstore device number (decimal, octal or hex).
    Number,
}

/// A virtual device as the guest sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vdev {
    /// As written (`xvda`, `hdc`, `d0p1`, `51712`).
    pub name: String,
    /// The xenstore `virtual-device` number; also the device id.
    pub devid: u32,
    pub kind: VdevKind,
    /// Disk and partition numbers (none for a raw device number).
    pub disk: Option<u32>,
    pub partition: Option<u32>,
}

/// One parsed and validated `disk=` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// Block device, image file or (with `script`) script argument; `None`
    /// for an empty CD-ROM drive.
    pub target: Option<String>,
    pub format: DiskFormat,
    pub vdev: Vdev,
    pub access: Access,
    pub devtype: DevType,
    /// Backend domain name (default: domain 0).
    pub backend: Option<String>,
    pub backendtype: Option<BackendType>,
    pub specification: Option<Specification>,
    /// Hotplug script (`block-SCRIPT`); the target is then its argument.
    pub script: Option<String>,
    pub direct_io_safe: bool,
    /// `discard` / `no-discard`; unset means the default (discard).
    pub discard: Option<bool>,
    /// `trusted` / `untrusted`; unset means the default.
    pub trusted: Option<bool>,
    /// `grant_usage=0|1`; unset means the default.
    pub grant_usage: Option<bool>,
}

impl DiskSpec {
    /// Parses one DISKSPEC string. Besides the spec, returns notes about
    /// parameters that are accepted but ignored (COLO).
    pub fn parse(spec: &str) -> Result<(DiskSpec, Vec<String>), DiskSpecError> {
        Self::parse_parts(&[spec])
    }

    /// Parses a spec given in several pieces (as `xl block-attach` takes
    /// them, one per argument); the pieces are read as one spec.
    pub fn parse_parts(parts: &[&str]) -> Result<(DiskSpec, Vec<String>), DiskSpecError> {
        let mut p = SpecParser::default();
        for part in parts {
            p.part(part)?;
        }
        p.finish()
    }

    /// Whether the guest may write to the disk.
    pub fn is_writable(&self) -> bool {
        self.access == Access::ReadWrite
    }

    /// The host path of the target when it is a path (no `script`): a target
    /// not starting with `/` is taken relative to `/dev`, as the manual says.
    pub fn host_path(&self) -> Option<std::path::PathBuf> {
        if self.script.is_some() {
            return None;
        }
        let t = self.target.as_deref()?;
        Some(if t.starts_with('/') {
            t.into()
        } else {
            std::path::Path::new("/dev").join(t)
        })
    }
}

/// A DISKSPEC error and where in the spec it is (a character offset).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct DiskSpecError {
    pub offset: Option<usize>,
    pub error: DiskError,
}

/// What is wrong with a DISKSPEC.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    /// unknown parameter `{0}`
    #[error("unknown parameter `{0}`")]
    UnknownParameter(String),
    /// unknown deprecated disk prefix `{0}:`
    #[error("unknown deprecated disk prefix `{0}:`")]
    UnknownPrefix(String),
    /// unknown value {value:?} for {param} (expected {expected})
    #[error("unknown value {value:?} for {param} (expected {expected})")]
    UnknownValue {
        param: &'static str,
        value: String,
        expected: &'static str,
    },
    /// {0} respecified
    #[error("{0} respecified")]
    Respecified(&'static str),
    /// too many positional parameters: `{0}`
    #[error("too many positional parameters: `{0}`")]
    TooManyPositional(String),
    /// no vdev specified
    #[error("no vdev specified")]
    NoVdev,
    /// no target specified (and device not removable)
    #[error("no target specified (and device not removable)")]
    NoTarget,
    /// invalid vdev {0:?}: expected xvdX, hdX or sdX with an optional partition number, dNpM, or a device number
    #[error("invalid vdev {0:?}: expected xvdX, hdX or sdX with an optional partition number, dNpM, or a device number")]
    BadVdev(String),
}

const FORMATS: &str = "raw, qcow, qcow2, vhd, qed or empty";

#[derive(Default)]
struct SpecParser {
    target: Option<String>,
    format: Option<DiskFormat>,
    vdev: Option<(String, usize)>,
    access: Option<Access>,
    positional_access: bool,
    cdrom: bool,
    had_deprecated_prefix: bool,
    backend: Option<String>,
    backendtype: Option<BackendType>,
    specification: Option<Specification>,
    script: Option<String>,
    direct_io_safe: bool,
    discard: Option<bool>,
    trusted: Option<bool>,
    grant_usage: Option<bool>,
    notes: Vec<String>,
    /// Character offset of the piece being read within the spec.
    offset: usize,
}

fn err(offset: usize, error: DiskError) -> DiskSpecError {
    DiskSpecError {
        offset: Some(offset),
        error,
    }
}

/// Sets a string parameter; setting one that already has a non-empty value
/// is an error (an empty value may be overwritten).
fn save(
    slot: &mut Option<String>,
    what: &'static str,
    v: &str,
    at: usize,
) -> Result<(), DiskSpecError> {
    if slot.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(err(at, DiskError::Respecified(what)));
    }
    *slot = Some(v.to_string());
    Ok(())
}

/// Sets an enum parameter; setting it again to a different value is an error.
fn set_enum<T: PartialEq + Copy>(
    slot: &mut Option<T>,
    what: &'static str,
    v: T,
    at: usize,
) -> Result<(), DiskSpecError> {
    match slot {
        Some(old) if *old != v => Err(err(at, DiskError::Respecified(what))),
        _ => {
            *slot = Some(v);
            Ok(())
        }
    }
}

impl SpecParser {
    fn part(&mut self, s: &str) -> Result<(), DiskSpecError> {
        let mut i = 0;
        while i < s.len() {
            let rest = &s[i..];
            let trimmed = rest.trim_start_matches([' ', '\t', '\n']);
            if trimmed.is_empty() {
                break;
            }
            i += rest.len() - trimmed.len();
            let at = self.offset + s[..i].chars().count();
            let rest = &s[i..];

            if let Some(v) = rest.strip_prefix("target=") {
                let v = v.strip_suffix(',').unwrap_or(v);
                save(&mut self.target, "target", v, at)?;
                break;
            }
            if let Some(len) = self.deprecated_prefix(rest, at)? {
                i += len;
                continue;
            }
            let (tok, used) = match rest.find(',') {
                Some(j) => (&rest[..j], j + 1),
                None => (rest, rest.len()),
            };
            match tok.split_once('=') {
                Some((key, value)) => self.named(key, value, at)?,
                None if self.flag(tok) => {}
                None => self.positional(tok, at)?,
            }
            i += used;
        }
        self.offset += s.chars().count() + 1;
        Ok(())
    }

    /// Handles `raw:`, `qcow2:`, `iscsi:`, `phy:`, `tap:aio:` ... at the start
    /// of a parameter; returns how many bytes were consumed.
    fn deprecated_prefix(&mut self, rest: &str, at: usize) -> Result<Option<usize>, DiskSpecError> {
        let word_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            .count();
        if word_len == 0
            || !rest.as_bytes()[0].is_ascii_lowercase()
            || rest.as_bytes().get(word_len) != Some(&b':')
        {
            return Ok(None);
        }
        let word = &rest[..word_len];
        match word {
            "raw" | "qcow" | "qcow2" | "vhd" => {
                self.had_deprecated_prefix = true;
                self.set_format(word, at)?;
            }
            "iscsi" | "nbd" | "enbd" | "drbd" => {
                self.had_deprecated_prefix = true;
                save(&mut self.script, "script", &format!("block-{word}"), at)?;
            }
            "tapdisk" | "tap" | "tap2" | "aio" | "ioemu" | "file" | "phy" => {
                self.had_deprecated_prefix = true;
            }
            _ => {
                // `hdc:cdrom` and targets such as `iqn...:0-8a09` are not prefixes.
                let next = rest.as_bytes().get(word_len + 1);
                if next.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
                    return Ok(None);
                }
                return Err(err(at, DiskError::UnknownPrefix(word.into())));
            }
        }
        Ok(Some(word_len + 1))
    }

    fn flag(&mut self, tok: &str) -> bool {
        match tok {
            "cdrom" => self.cdrom = true,
            "direct-io-safe" => self.direct_io_safe = true,
            "discard" => self.discard = Some(true),
            "no-discard" => self.discard = Some(false),
            "trusted" => self.trusted = Some(true),
            "untrusted" => self.trusted = Some(false),
            "colo" | "no-colo" => self.notes.push(format!(
                "`{tok}` is ignored: COLO replication is not supported"
            )),
            _ => return false,
        }
        true
    }

    fn named(&mut self, key: &str, v: &str, at: usize) -> Result<(), DiskSpecError> {
        let unknown = |param, expected| {
            err(
                at,
                DiskError::UnknownValue {
                    param,
                    value: v.into(),
                    expected,
                },
            )
        };
        match key {
            "format" => self.set_format(v, at)?,
            "devtype" => match v {
                "cdrom" => self.cdrom = true,
                "disk" => self.cdrom = false,
                _ => return Err(unknown("devtype", "cdrom or disk")),
            },
            "access" => {
                self.access =
                    Some(parse_access(v).ok_or_else(|| unknown("access", "ro, r, rw or w"))?)
            }
            "backend" => save(&mut self.backend, "backend", v, at)?,
            "backendtype" => {
                let t = match v {
                    "phy" => BackendType::Phy,
                    "tap" => BackendType::Tap,
                    "qdisk" => BackendType::Qdisk,
                    "standalone" => BackendType::Standalone,
                    _ => return Err(unknown("backendtype", "phy, tap, qdisk or standalone")),
                };
                set_enum(&mut self.backendtype, "backendtype", t, at)?;
            }
            "specification" => {
                let t = match v {
                    "xen" => Specification::Xen,
                    "virtio" => Specification::Virtio,
                    _ => return Err(unknown("specification", "xen or virtio")),
                };
                set_enum(&mut self.specification, "specification", t, at)?;
            }
            "vdev" => {
                if self.vdev.as_ref().is_some_and(|(s, _)| !s.is_empty()) {
                    return Err(err(at, DiskError::Respecified("vdev")));
                }
                self.vdev = Some((v.into(), at + 5));
            }
            "script" => save(&mut self.script, "script", v, at)?,
            "grant_usage" => {
                self.grant_usage = Some(match v {
                    "1" => true,
                    "0" => false,
                    _ => return Err(unknown("grant_usage", "0 or 1")),
                })
            }
            "colo-host" | "colo-port" | "colo-export" | "active-disk" | "hidden-disk" => {
                self.notes.push(format!(
                    "`{key}` is ignored: COLO replication is not supported"
                ))
            }
            _ => return Err(err(at, DiskError::UnknownParameter(key.into()))),
        }
        Ok(())
    }

    fn positional(&mut self, tok: &str, at: usize) -> Result<(), DiskSpecError> {
        if self.target.is_none() {
            self.target = Some(tok.into());
        } else if !self.had_deprecated_prefix && self.format.is_none() {
            if self.target.as_deref() == Some("") && self.vdev_and_devtype(tok, at)? {
                self.format = Some(DiskFormat::Empty);
            } else {
                self.set_format(tok, at)?;
            }
        } else if self.vdev.is_none() {
            if !self.vdev_and_devtype(tok, at)? {
                self.vdev = Some((tok.into(), at));
            }
        } else if !self.positional_access {
            self.positional_access = true;
            self.access = Some(parse_access(tok).ok_or_else(|| {
                err(
                    at,
                    DiskError::UnknownValue {
                        param: "access",
                        value: tok.into(),
                        expected: "ro, r, rw or w",
                    },
                )
            })?);
        } else {
            return Err(err(at, DiskError::TooManyPositional(tok.into())));
        }
        Ok(())
    }

    /// The deprecated `vdev:devtype` form; false if `tok` has no colon.
    fn vdev_and_devtype(&mut self, tok: &str, at: usize) -> Result<bool, DiskSpecError> {
        let Some((vdev, devtype)) = tok.rsplit_once(':') else {
            return Ok(false);
        };
        if self.vdev.as_ref().is_some_and(|(s, _)| !s.is_empty()) {
            return Err(err(at, DiskError::Respecified("vdev")));
        }
        self.vdev = Some((vdev.into(), at));
        match devtype {
            "cdrom" => self.cdrom = true,
            "disk" => self.cdrom = false,
            _ => {
                return Err(err(
                    at + vdev.chars().count() + 1,
                    DiskError::UnknownValue {
                        param: "deprecated device type",
                        value: devtype.into(),
                        expected: "cdrom or disk",
                    },
                ))
            }
        }
        Ok(true)
    }

    fn set_format(&mut self, v: &str, at: usize) -> Result<(), DiskSpecError> {
        let f = match v {
            "" | "raw" => DiskFormat::Raw,
            "qcow" => DiskFormat::Qcow,
            "qcow2" => DiskFormat::Qcow2,
            "vhd" => DiskFormat::Vhd,
            "qed" => DiskFormat::Qed,
            "empty" => DiskFormat::Empty,
            _ => {
                return Err(err(
                    at,
                    DiskError::UnknownValue {
                        param: "format",
                        value: v.into(),
                        expected: FORMATS,
                    },
                ))
            }
        };
        set_enum(&mut self.format, "format", f, at)
    }

    fn finish(self) -> Result<(DiskSpec, Vec<String>), DiskSpecError> {
        let mut format = self.format.unwrap_or(DiskFormat::Raw);
        let mut access = self.access.unwrap_or(Access::ReadWrite);
        let target = self.target.filter(|t| !t.is_empty());
        if self.cdrom {
            access = Access::ReadOnly;
            if target.is_none() {
                format = DiskFormat::Empty;
            }
        }
        let Some((name, at)) = self.vdev.filter(|(v, _)| !v.is_empty()) else {
            return Err(DiskSpecError {
                offset: None,
                error: DiskError::NoVdev,
            });
        };
        if target.is_none() && !self.cdrom {
            return Err(DiskSpecError {
                offset: None,
                error: DiskError::NoTarget,
            });
        }
        let vdev = parse_vdev(&name).ok_or_else(|| err(at, DiskError::BadVdev(name.clone())))?;
        let spec = DiskSpec {
            target,
            format,
            vdev,
            access,
            devtype: if self.cdrom {
                DevType::Cdrom
            } else {
                DevType::Disk
            },
            backend: self.backend.filter(|s| !s.is_empty()),
            backendtype: self.backendtype,
            specification: self.specification,
            script: self.script.filter(|s| !s.is_empty()),
            direct_io_safe: self.direct_io_safe,
            discard: self.discard,
            trusted: self.trusted,
            grant_usage: self.grant_usage,
        };
        Ok((spec, self.notes))
    }
}

fn parse_access(v: &str) -> Option<Access> {
    match v {
        "r" | "ro" => Some(Access::ReadOnly),
        "" | "w" | "rw" => Some(Access::ReadWrite),
        _ => None,
    }
}

/// Decodes a vdev name into its xenstore device number, following
/// `xen-vbd-interface(7)`:
///
/// ```text
///  1 << 28 | disk << 8 | partition      xvd, disks or partitions 16 onwards
/// 202 << 8 | disk << 4 | partition      xvd, disks and partitions up to 15
///   8 << 8 | disk << 4 | partition      sd, disks and partitions up to 15
///   3 << 8 | disk << 6 | partition      hd, disks 0..1, partitions 0..63
///  22 << 8 | (disk-2) << 6 | partition  hd, disks 2..3, partitions 0..63
/// ```
pub fn parse_vdev(name: &str) -> Option<Vdev> {
    let xvd = |disk: u32, partition: u32| {
        let devid = if disk <= 15 && partition <= 15 {
            (202 << 8) | (disk << 4) | partition
        } else {
            (1 << 28) | (disk << 8) | partition
        };
        (VdevKind::Xvd, devid, disk, partition)
    };
    let (kind, devid, disk, partition) = if let Some((d, p)) = d_form(name) {
        if d >= 1 << 20 || p > 255 {
            return None;
        }
        xvd(d, p)
    } else if let Some((d, p)) = letters_form(name, "xvd", (1 << 20) - 1, 255) {
        xvd(d, p)
    } else if let Some(n) =
        super::lexer::parse_c_integer(name).filter(|n| (0..=i32::MAX as i128).contains(n))
    {
        return Some(Vdev {
            name: name.into(),
            devid: n as u32,
            kind: VdevKind::Number,
            disk: None,
            partition: None,
        });
    } else if let Some((d, p)) = letters_form(name, "hd", 3, 63) {
        let major = if d < 2 { 3 } else { 22 };
        (VdevKind::Hd, (major << 8) | ((d & 1) << 6) | p, d, p)
    } else if let Some((d, p)) = letters_form(name, "sd", 15, 15) {
        (VdevKind::Sd, (8 << 8) | (d << 4) | p, d, p)
    } else {
        return None;
    };
    Some(Vdev {
        name: name.into(),
        devid,
        kind,
        disk: Some(disk),
        partition: Some(partition),
    })
}

/// `dN` or `dNpM` (decimal).
fn d_form(name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix('d')?;
    let (d, p) = match rest.split_once('p') {
        Some((d, p)) => (d, Some(p)),
        None => (rest, None),
    };
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    Some((num(d)?, p.map_or(Some(0), num)?))
}

/// `PREFIX` + drive letters (bijective base 26: a=0 .. z=25, aa=26 ...) +
/// optional partition number without leading zeros.
fn letters_form(name: &str, prefix: &str, max_disk: u32, max_part: u32) -> Option<(u32, u32)> {
    let rest = name.strip_prefix(prefix)?;
    let letters = rest.bytes().take_while(|b| b.is_ascii_lowercase()).count();
    if letters == 0 {
        return None;
    }
    let mut disk: u32 = 0;
    for (i, b) in rest.bytes().take(letters).enumerate() {
        let digit = (b - b'a') as u32;
        disk = if i == 0 {
            digit
        } else {
            (disk + 1) * 26 + digit
        };
        if disk > max_disk {
            return None;
        }
    }
    let part = &rest[letters..];
    if part.is_empty() {
        return Some((disk, 0));
    }
    if part.starts_with('0') || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let p: u32 = part.parse().ok()?;
    (p <= max_part).then_some((disk, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vdev_numbers_from_the_vbd_interface_manual() {
        let id = |n: &str| parse_vdev(n).map(|v| v.devid);
        assert_eq!(id("xvda"), Some(202 << 8));
        assert_eq!(id("d0"), Some(202 << 8));
        assert_eq!(id("d0p0"), Some(202 << 8));
        assert_eq!(id("xvdb2"), Some((202 << 8) | (1 << 4) | 2));
        assert_eq!(id("d1p2"), id("xvdb2"));
        assert_eq!(id("d536p37"), Some((1 << 28) | (536 << 8) | 37));
        assert_eq!(id("xvdtq37"), id("d536p37"));
        assert_eq!(id("sdb3"), Some((8 << 8) | (1 << 4) | 3));
        assert_eq!(id("hdc2"), Some((22 << 8) | 2));
        assert_eq!(id("hda"), Some(3 << 8));
        assert_eq!(id("hdb"), Some((3 << 8) | (1 << 6)));
        assert_eq!(id("51712"), Some(51712));
        assert_eq!(id("0xca00"), Some(51712));
        assert_eq!(id("xvdaa"), Some((1 << 28) | (26 << 8)));
    }

    #[test]
    fn bad_vdevs() {
        for n in [
            "xvd", "hde", "sdq", "sda16", "hda64", "xvda0", "xvda01", "vda", "d", "dxp1", "",
        ] {
            assert_eq!(parse_vdev(n), None, "{n}");
        }
    }
}
