//! The typed domain configuration, and the step that turns a [`RawConfig`]
//! into it: look up each supported key, check its type and value, apply
//! xl's defaults and rules, and collect warnings for everything else.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::cpus::{CpuAffinity, CpuList};
use super::disk::DiskSpec;
use super::error::{ConfigError, ErrorKind, Location, NameError, Warning};
use super::lexer::parse_c_integer;
use super::syntax::{Origin, RawConfig, Setting, Spanned, Value};
use super::vif::VifSpec;

/// Everything the user asked for, as plain data. Built only by
/// [`super::parse_config`] / [`super::load_config`], so every field is
/// already validated; serializes to JSON for `list -l`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub domain_type: DomainType,
    /// `None`: the toolstack generates one.
    pub uuid: Option<Uuid>,
    /// Initial memory, MiB.
    pub memory: u64,
    /// Maximum memory, MiB (≥ `memory`).
    pub maxmem: u64,
    /// vCPUs online at boot.
    pub vcpus: u32,
    /// vCPUs the guest may bring up (≥ `vcpus`).
    pub maxvcpus: u32,
    /// Hard affinity; `None`: no pinning.
    pub cpus: Option<CpuAffinity>,
    /// The kernel image, as written (relative paths are relative to the
    /// directory `create` runs in, as with xl).
    pub kernel: PathBuf,
    pub ramdisk: Option<PathBuf>,
    /// The kernel command line to use: `cmdline=` if given, otherwise built
    /// from `root=` and `extra=` (`root=ROOT EXTRA`).
    pub cmdline: Option<String>,
    /// `root=` and `extra=` as written; already folded into `cmdline`.
    pub root: Option<String>,
    pub extra: Option<String>,
    pub on_poweroff: ShutdownAction,
    pub on_reboot: ShutdownAction,
    pub on_crash: ShutdownAction,
    pub disks: Vec<DiskSpec>,
    pub vifs: Vec<VifSpec>,
}

/// The guest type. Only PV exists in rxen today; `pvh` and `hvm` are
/// recognised and refused with "not supported yet".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainType {
    Pv,
}

/// What to do when the guest powers off, reboots or crashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShutdownAction {
    /// Destroy the domain.
    Destroy,
    /// Destroy it and create it again from the same config.
    Restart,
    /// Keep it (shown as shut down or crashed) until destroyed.
    Preserve,
    /// Rename the old domain, then create a new one from the same config.
    RenameRestart,
}

impl ShutdownAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownAction::Destroy => "destroy",
            ShutdownAction::Restart => "restart",
            ShutdownAction::Preserve => "preserve",
            ShutdownAction::RenameRestart => "rename-restart",
        }
    }
}

impl fmt::Display for ShutdownAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A domain UUID; reads `8-4-4-4-12` hex digits in either case and prints
/// in lower case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Uuid(pub [u8; 16]);

impl std::str::FromStr for Uuid {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let groups: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12]
            || !groups
                .iter()
                .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(());
        }
        let hex: String = groups.concat();
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| ())?;
        }
        Ok(Uuid(out))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for Uuid {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse().map_err(|_| format!("invalid UUID {s:?}"))
    }
}

impl From<Uuid> for String {
    fn from(u: Uuid) -> String {
        u.to_string()
    }
}

/// Longest accepted domain name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a domain name: 1 to 64 bytes of ASCII letters, digits and
/// `-_.+:@`, not starting with `-` or `.`, and not all digits (a DOM
/// argument that is all digits is a domain id, as in xl). The name is
/// also used as a file name under the state directory, hence no `/`.
pub fn validate_domain_name(name: &str) -> Result<(), NameError> {
    let first = name.chars().next().ok_or(NameError::Empty)?;
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { max: MAX_NAME_LEN });
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "-_.+:@".contains(c)))
    {
        return Err(NameError::BadChar(c));
    }
    if first == '-' || first == '.' {
        return Err(NameError::BadStart(first));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::AllDigits);
    }
    Ok(())
}

/// Keys rxen reads.
#[rustfmt::skip]
const SUPPORTED: &[&str] = &[
    "name", "type", "builder", "memory", "maxmem", "vcpus", "maxvcpus", "cpus", "kernel",
    "ramdisk", "cmdline", "root", "extra", "on_poweroff", "on_reboot", "on_crash", "uuid",
    "disk", "vif",
];

/// Keys of `xl.cfg(5)` that would change how the guest boots: refusing them
/// is better than silently booting something else.
const REFUSED: &[(&str, &str)] = &[
    (
        "bootloader",
        "use kernel=, ramdisk= and cmdline= (direct kernel boot)",
    ),
    (
        "firmware",
        "use kernel=, ramdisk= and cmdline= (direct kernel boot)",
    ),
];

/// Other `xl.cfg(5)` keys: accepted with a warning that rxen ignores them.
#[rustfmt::skip]
const IGNORED: &[&str] = &[
    "pool", "cpus_soft", "cpu_weight", "cap", "vnuma", "on_watchdog", "on_soft_reset",
    "seclabel", "init_seclabel", "max_event_channels", "max_grant_frames",
    "max_maptrack_frames", "max_grant_version", "nomigrate", "driver_domain", "device_tree",
    "e820_host", "pci", "rdm", "dtdev", "ioports", "iomem", "irqs", "vtpm", "p9", "vfb", "vkb",
    "channel", "usbctrl", "usbdev", "vdispl", "vsnd", "virtio", "pvcalls", "tsc_mode",
    "localtime", "rtc_timeoffset", "vncviewer", "vnc", "vnclisten", "vncpasswd", "vncdisplay",
    "vncunused", "sdl", "opengl", "serial", "soundhw", "boot", "acpi", "apic", "pae", "hap",
    "oos", "shadow_memory", "viridian", "hpet", "vpt_align", "timer_mode", "nestedhvm",
    "cpuid", "claim_mode", "xen_platform_pci", "device_model_version",
    "device_model_override", "device_model_args", "device_model_stubdomain_override",
    "stdvga", "videoram", "gfx_passthru", "usb", "usbdevice", "passthrough", "altp2m",
    "altp2mhvm", "ms_vm_genid", "feature_flags", "pvshim", "pvshim_path", "pvshim_cmdline",
    "pvshim_extra", "bootloader_args", "period", "slice", "latency", "extratime",
    "blkdev_start", "dm_restrict", "suppress_vmdesc", "vuart", "llc_colors",
    "trap_unmapped_accesses", "mca_caps", "vga",
];

/// Turns a raw config into a [`DomainConfig`], with warnings.
pub fn build(raw: &RawConfig) -> Result<(DomainConfig, Vec<Warning>), ConfigError> {
    let mut b = Builder {
        raw,
        warnings: Vec::new(),
    };
    b.check_keys()?;
    let cfg = b.config()?;
    Ok((cfg, b.warnings))
}

/// The effective kernel command line and the `root`/`extra` it came from.
struct KernelArgs {
    cmdline: Option<String>,
    root: Option<String>,
    extra: Option<String>,
}

struct Builder<'a> {
    raw: &'a RawConfig,
    warnings: Vec<Warning>,
}

fn at(loc: &Location, kind: ErrorKind) -> ConfigError {
    ConfigError::at(loc.clone(), kind)
}

impl<'a> Builder<'a> {
    fn warn(&mut self, location: &Location, message: String) {
        self.warnings.push(Warning {
            location: location.clone(),
            message,
        });
    }

    /// Warns about unknown, ignored and repeated keys; refuses keys that
    /// would change how the guest boots.
    fn check_keys(&mut self) -> Result<(), ConfigError> {
        let mut first_in_file: HashMap<&str, &Location> = HashMap::new();
        for s in &self.raw.settings {
            let key = s.key.as_str();
            if let Some((_, instead)) = REFUSED.iter().find(|(k, _)| *k == key) {
                return Err(at(
                    &s.key_loc,
                    ErrorKind::Unsupported {
                        what: format!("`{key}`"),
                        why: format!(": {instead}"),
                    },
                ));
            }
            if IGNORED.contains(&key) {
                self.warn(
                    &s.key_loc,
                    format!("`{key}` is not supported by rxen and is ignored"),
                );
            } else if !SUPPORTED.contains(&key) {
                self.warn(&s.key_loc, format!("unknown key `{key}` is ignored"));
            }
            if s.origin == Origin::File {
                if let Some(prev) = first_in_file.get(key) {
                    let msg = format!(
                        "`{key}` is set again (first at line {}); the last value counts",
                        prev.line
                    );
                    self.warn(&s.key_loc, msg);
                } else {
                    first_in_file.insert(key, &s.key_loc);
                }
            }
        }
        Ok(())
    }

    fn config(&mut self) -> Result<DomainConfig, ConfigError> {
        let name = self.name()?;
        let domain_type = self.domain_type()?;
        let uuid = match self.string("uuid")? {
            None => None,
            Some((u, loc)) => Some(u.parse::<Uuid>().map_err(|_| {
                at(
                    &loc,
                    ErrorKind::InvalidValue {
                        key: "uuid".into(),
                        value: u,
                        expected: "a UUID such as \"3b2a6e1c-8e4f-4c55-9d1a-0f6b2c7d8e90\"".into(),
                    },
                )
            })?),
        };
        let (memory, maxmem) = self.memory()?;
        let (vcpus, maxvcpus) = self.vcpus()?;
        let cpus = self.cpus()?;
        let kernel = match self.string("kernel")? {
            Some((k, _)) => PathBuf::from(k),
            None => {
                return Err(at(
                    &self.end(),
                    ErrorKind::MissingKey {
                        key: "kernel",
                        expected: "kernel=\"PATH\": rxen boots PV guests from a kernel image",
                    },
                ))
            }
        };
        let ramdisk = self.string("ramdisk")?.map(|(r, _)| PathBuf::from(r));
        let KernelArgs {
            cmdline,
            root,
            extra,
        } = self.cmdline()?;
        Ok(DomainConfig {
            name,
            domain_type,
            uuid,
            memory,
            maxmem,
            vcpus,
            maxvcpus,
            cpus,
            kernel,
            ramdisk,
            cmdline,
            root,
            extra,
            on_poweroff: self.action("on_poweroff", ShutdownAction::Destroy)?,
            on_reboot: self.action("on_reboot", ShutdownAction::Restart)?,
            on_crash: self.action("on_crash", ShutdownAction::Destroy)?,
            disks: self.disks()?,
            vifs: self.vifs()?,
        })
    }

    /// Where the file ends: the place errors about missing keys point to.
    fn end(&self) -> Location {
        self.raw.end.clone().unwrap_or(Location {
            source: "<config>".into(),
            line: 1,
            column: 1,
        })
    }

    fn string(&self, key: &str) -> Result<Option<(String, Location)>, ConfigError> {
        let Some(s) = self.raw.get(key) else {
            return Ok(None);
        };
        match &s.value.value {
            // xl keeps numbers as text, so `name = 123` is the string "123".
            Value::Str { text, .. } | Value::Number(text) => {
                Ok(Some((text.clone(), s.value.loc.clone())))
            }
            v => Err(wrong_type(s, "a string", v)),
        }
    }

    /// A whole number in `min..=max`, written as a number or a string holding one.
    fn number(
        &self,
        key: &str,
        min: u64,
        max: u64,
    ) -> Result<Option<(u64, Location)>, ConfigError> {
        let Some(s) = self.raw.get(key) else {
            return Ok(None);
        };
        let n = match &s.value.value {
            Value::Number(t) => parse_c_integer(t),
            Value::Str { text, .. } => parse_c_integer(text.trim()),
            Value::List(_) => None,
        }
        .ok_or_else(|| wrong_type(s, "a number", &s.value.value))?;
        if n < min as i128 || n > max as i128 {
            return Err(at(
                &s.value.loc,
                ErrorKind::OutOfRange {
                    key: key.into(),
                    value: n,
                    min,
                    max,
                },
            ));
        }
        Ok(Some((n as u64, s.value.loc.clone())))
    }

    fn list(&self, key: &str) -> Result<Option<&'a [Spanned]>, ConfigError> {
        let Some(s) = self.raw.get(key) else {
            return Ok(None);
        };
        match &s.value.value {
            Value::List(items) => Ok(Some(items)),
            v => Err(wrong_type(s, "a list such as [ '...', '...' ]", v)),
        }
    }

    fn name(&self) -> Result<String, ConfigError> {
        let Some((name, loc)) = self.string("name")? else {
            return Err(at(
                &self.end(),
                ErrorKind::MissingKey {
                    key: "name",
                    expected: "name=\"NAME\"",
                },
            ));
        };
        validate_domain_name(&name).map_err(|reason| {
            at(
                &loc,
                ErrorKind::InvalidName {
                    name: name.clone(),
                    reason,
                },
            )
        })?;
        Ok(name)
    }

    /// `type=` (pv, pvh, hvm) and the deprecated `builder=` (generic, hvm).
    fn domain_type(&self) -> Result<DomainType, ConfigError> {
        let unsupported = |t: &str, loc: &Location| {
            at(
                loc,
                ErrorKind::Unsupported {
                    what: format!("guest type {t:?}"),
                    why: ": rxen runs PV guests only (type=\"pv\")".into(),
                },
            )
        };
        let ty = self.string("type")?;
        if let Some((t, loc)) = &ty {
            match t.as_str() {
                "pv" => {}
                "pvh" | "hvm" => return Err(unsupported(t, loc)),
                _ => return Err(invalid("type", t, loc, "pv, pvh or hvm")),
            }
        }
        if let Some((b, loc)) = self.string("builder")? {
            let builder_type = match b.as_str() {
                "generic" => "pv",
                "hvm" => "hvm",
                _ => return Err(invalid("builder", &b, &loc, "generic or hvm")),
            };
            if let Some((t, _)) = &ty {
                if t != builder_type {
                    return Err(at(
                        &loc,
                        ErrorKind::Conflict(format!(
                            "`builder` ({b:?}) contradicts `type` ({t:?}); `builder` is deprecated, use `type`"
                        )),
                    ));
                }
            }
            if builder_type == "hvm" {
                return Err(unsupported("hvm", &loc));
            }
        }
        Ok(DomainType::Pv)
    }

    /// `memory` and `maxmem` in MiB. Either defaults to the other; with
    /// neither, 32 MiB (libxl's default).
    fn memory(&self) -> Result<(u64, u64), ConfigError> {
        const MAX_MIB: u64 = 1 << 24; // 16 TiB
        let memory = self.number("memory", 1, MAX_MIB)?;
        let maxmem = self.number("maxmem", 1, MAX_MIB)?;
        Ok(match (memory, maxmem) {
            (Some((m, _)), Some((x, loc))) => {
                if x < m {
                    return Err(at(
                        &loc,
                        ErrorKind::Conflict(format!(
                            "`maxmem` ({x}) must be at least `memory` ({m})"
                        )),
                    ));
                }
                (m, x)
            }
            (Some((m, _)), None) => (m, m),
            (None, Some((x, _))) => (x, x),
            (None, None) => (32, 32),
        })
    }

    /// `vcpus` (default 1) and `maxvcpus` (default `vcpus`).
    fn vcpus(&self) -> Result<(u32, u32), ConfigError> {
        const MAX_VCPUS: u64 = 4096;
        let vcpus = self.number("vcpus", 1, MAX_VCPUS)?;
        let maxvcpus = self.number("maxvcpus", 1, MAX_VCPUS)?;
        let v = vcpus.as_ref().map_or(1, |(v, _)| *v);
        let m = match maxvcpus {
            Some((m, loc)) if m < v => {
                return Err(at(
                    &loc,
                    ErrorKind::Conflict(format!("`maxvcpus` ({m}) must be at least `vcpus` ({v})")),
                ))
            }
            Some((m, _)) => m,
            None => v,
        };
        Ok((v as u32, m as u32))
    }

    fn cpus(&self) -> Result<Option<CpuAffinity>, ConfigError> {
        let Some(s) = self.raw.get("cpus") else {
            return Ok(None);
        };
        let one = |text: &str, loc: &Location| {
            CpuList::parse(text).map_err(|e| {
                at(
                    loc,
                    ErrorKind::InvalidValue {
                        key: "cpus".into(),
                        value: text.into(),
                        expected: format!("a CPU list such as \"0-3,^1\" or \"nodes:0\" ({e})"),
                    },
                )
            })
        };
        Ok(Some(match &s.value.value {
            Value::Str { text, .. } | Value::Number(text) => {
                CpuAffinity::All(one(text, &s.value.loc)?)
            }
            Value::List(items) => CpuAffinity::PerVcpu(
                items
                    .iter()
                    .map(|i| match &i.value {
                        Value::Str { text, .. } | Value::Number(text) => one(text, &i.loc),
                        v => Err(at(
                            &i.loc,
                            ErrorKind::WrongType {
                                key: "cpus".into(),
                                expected: "a string or a list of strings",
                                found: format!("{} inside the list", v.describe()),
                            },
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            ),
        }))
    }

    /// xl's rule: `cmdline` wins (with a warning if `root`/`extra` are also
    /// set); otherwise `root=ROOT EXTRA`, `root=ROOT` or `EXTRA`.
    fn cmdline(&mut self) -> Result<KernelArgs, ConfigError> {
        let cmdline = self.string("cmdline")?;
        let root = self.string("root")?.map(|(r, _)| r);
        let extra = self.string("extra")?.map(|(e, _)| e);
        let effective = match (cmdline, &root, &extra) {
            (Some((c, loc)), r, e) => {
                if r.is_some() || e.is_some() {
                    self.warn(
                        &loc,
                        "ignoring `root` and `extra` in favour of `cmdline`".into(),
                    );
                }
                Some(c)
            }
            (None, Some(r), Some(e)) => Some(format!("root={r} {e}")),
            (None, Some(r), None) => Some(format!("root={r}")),
            (None, None, e) => e.clone(),
        };
        Ok(KernelArgs {
            cmdline: effective,
            root,
            extra,
        })
    }

    fn action(&self, key: &str, default: ShutdownAction) -> Result<ShutdownAction, ConfigError> {
        let Some((v, loc)) = self.string(key)? else {
            return Ok(default);
        };
        Ok(match v.as_str() {
            "destroy" => ShutdownAction::Destroy,
            "restart" => ShutdownAction::Restart,
            "preserve" => ShutdownAction::Preserve,
            "rename-restart" => ShutdownAction::RenameRestart,
            "coredump-destroy" | "coredump-restart" | "soft-reset" => {
                return Err(at(
                    &loc,
                    ErrorKind::Unsupported {
                        what: format!("`{key}` action {v:?}"),
                        why: " (supported: destroy, restart, preserve, rename-restart)".into(),
                    },
                ))
            }
            _ => {
                return Err(invalid(
                    key,
                    &v,
                    &loc,
                    "destroy, restart, preserve or rename-restart",
                ))
            }
        })
    }

    /// The items of a list of spec strings, each with its position.
    fn spec_strings(&self, key: &str) -> Result<Vec<(&'a str, &'a Spanned)>, ConfigError> {
        let Some(items) = self.list(key)? else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .map(|i| match &i.value {
                Value::Str { text, .. } => Ok((text.as_str(), i)),
                v => Err(at(
                    &i.loc,
                    ErrorKind::WrongType {
                        key: key.into(),
                        expected: "a list of quoted spec strings",
                        found: format!("{} inside the list", v.describe()),
                    },
                )),
            })
            .collect()
    }

    fn disks(&mut self) -> Result<Vec<DiskSpec>, ConfigError> {
        let mut disks: Vec<DiskSpec> = Vec::new();
        for (index, (spec, item)) in self.spec_strings("disk")?.into_iter().enumerate() {
            let (disk, notes) = DiskSpec::parse(spec).map_err(|e| {
                at(
                    &inside(item, e.offset),
                    ErrorKind::Disk {
                        index,
                        spec: spec.into(),
                        error: e.error,
                    },
                )
            })?;
            for n in notes {
                self.warn(&item.loc, format!("disk {index}: {n}"));
            }
            if let Some(j) = disks.iter().position(|d| d.vdev.devid == disk.vdev.devid) {
                return Err(at(
                    &item.loc,
                    ErrorKind::Conflict(format!(
                        "disk {index} (vdev {}) is the same device as disk {j} (vdev {}): device number {}",
                        disk.vdev.name, disks[j].vdev.name, disk.vdev.devid
                    )),
                ));
            }
            disks.push(disk);
        }
        Ok(disks)
    }

    fn vifs(&mut self) -> Result<Vec<VifSpec>, ConfigError> {
        let mut vifs: Vec<VifSpec> = Vec::new();
        for (index, (spec, item)) in self.spec_strings("vif")?.into_iter().enumerate() {
            let (vif, notes) = VifSpec::parse(spec, index as u32).map_err(|e| {
                at(
                    &inside(item, Some(e.offset)),
                    ErrorKind::Vif {
                        index,
                        spec: spec.into(),
                        error: e.error,
                    },
                )
            })?;
            for n in notes {
                self.warn(&item.loc, format!("vif {index}: {n}"));
            }
            if let Some(j) = vifs.iter().position(|v| v.devid == vif.devid) {
                return Err(at(
                    &item.loc,
                    ErrorKind::Conflict(format!(
                        "vif {index} has the same devid ({}) as vif {j}",
                        vif.devid
                    )),
                ));
            }
            if let Some(mac) = vif.mac {
                if let Some(j) = vifs.iter().position(|v| v.mac == Some(mac)) {
                    return Err(at(
                        &item.loc,
                        ErrorKind::Conflict(format!(
                            "vif {index} has the same mac ({mac}) as vif {j}"
                        )),
                    ));
                }
            }
            vifs.push(vif);
        }
        Ok(vifs)
    }
}

/// The source position of character `offset` inside a quoted spec string:
/// exact when the string was written without escapes, else its opening quote.
fn inside(item: &Spanned, offset: Option<usize>) -> Location {
    match (&item.value, offset) {
        (Value::Str { verbatim: true, .. }, Some(o)) => item.loc.shifted(1 + o),
        _ => item.loc.clone(),
    }
}

fn wrong_type(s: &Setting, expected: &'static str, v: &Value) -> ConfigError {
    at(
        &s.value.loc,
        ErrorKind::WrongType {
            key: s.key.clone(),
            expected,
            found: v.describe(),
        },
    )
}

fn invalid(key: &str, value: &str, loc: &Location, expected: &str) -> ConfigError {
    at(
        loc,
        ErrorKind::InvalidValue {
            key: key.into(),
            value: value.into(),
            expected: expected.into(),
        },
    )
}
