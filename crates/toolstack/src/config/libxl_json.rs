//! A [`DomainConfig`] in the layout `xl list -l` prints: libxl's
//! `libxl_domain_config` as JSON (`c_info`, `b_info`, `disks`, `nics`,
//! `on_*`), with libxl's field names and enum spellings. As libxl does,
//! fields left at their default are omitted; fields rxen has no counterpart
//! for (device model, HVM, ...) never appear.

use serde_json::{json, Map, Value};

use super::disk::{Access, BackendType, DevType, DiskFormat, DiskSpec, Specification};
use super::domain::{DomainConfig, DomainType, ShutdownAction};
use super::vif::{NicType, VifSpec};

/// libxl's `libxl_domain_config` for `cfg`. `uuid` is the domain's actual
/// uuid (the monitor makes one when the config has none).
pub fn domain_config(cfg: &DomainConfig, uuid: Option<&str>) -> Value {
    let mut c_info = Map::new();
    c_info.insert(
        "type".into(),
        json!(match cfg.domain_type {
            DomainType::Pv => "pv",
        }),
    );
    c_info.insert("name".into(), json!(cfg.name));
    let uuid = uuid
        .map(str::to_string)
        .or_else(|| cfg.uuid.map(|u| u.to_string()));
    if let Some(u) = uuid {
        c_info.insert("uuid".into(), json!(u));
    }
    c_info.insert("run_hotplug_scripts".into(), json!("True"));

    let mut b_info = Map::new();
    b_info.insert("max_vcpus".into(), json!(cfg.maxvcpus.max(cfg.vcpus)));
    b_info.insert(
        "avail_vcpus".into(),
        json!((0..cfg.vcpus).collect::<Vec<_>>()),
    );
    b_info.insert("max_memkb".into(), json!(cfg.maxmem.max(cfg.memory) * 1024));
    b_info.insert("target_memkb".into(), json!(cfg.memory * 1024));
    b_info.insert("kernel".into(), json!(cfg.kernel));
    if let Some(c) = &cfg.cmdline {
        b_info.insert("cmdline".into(), json!(c));
    }
    if let Some(r) = &cfg.ramdisk {
        b_info.insert("ramdisk".into(), json!(r));
    }
    b_info.insert("type.pv".into(), json!({}));

    json!({
        "c_info": c_info,
        "b_info": b_info,
        "disks": cfg.disks.iter().map(disk).collect::<Vec<_>>(),
        "nics": cfg.vifs.iter().map(nic).collect::<Vec<_>>(),
        "on_poweroff": action(cfg.on_poweroff),
        "on_reboot": action(cfg.on_reboot),
        "on_crash": action(cfg.on_crash),
    })
}

/// `libxl_action_on_shutdown`'s names.
fn action(a: ShutdownAction) -> &'static str {
    match a {
        ShutdownAction::Destroy => "destroy",
        ShutdownAction::Restart => "restart",
        ShutdownAction::Preserve => "preserve",
        ShutdownAction::RenameRestart => "restart_rename",
    }
}

/// `libxl_device_disk`.
fn disk(d: &DiskSpec) -> Value {
    let mut m = Map::new();
    if let Some(b) = &d.backend {
        m.insert("backend_domname".into(), json!(b));
    }
    if let Some(t) = &d.target {
        m.insert("pdev_path".into(), json!(t));
    }
    m.insert("vdev".into(), json!(d.vdev.name));
    if let Some(b) = d.backendtype {
        let name = match b {
            BackendType::Phy => "phy",
            BackendType::Tap => "tap",
            BackendType::Qdisk => "qdisk",
            BackendType::Standalone => "standalone",
        };
        m.insert("backend".into(), json!(name));
    }
    let format = match d.format {
        DiskFormat::Raw => "raw",
        DiskFormat::Qcow => "qcow",
        DiskFormat::Qcow2 => "qcow2",
        DiskFormat::Vhd => "vhd",
        DiskFormat::Qed => "qed",
        DiskFormat::Empty => "empty",
    };
    m.insert("format".into(), json!(format));
    if let Some(s) = &d.script {
        m.insert("script".into(), json!(s));
    }
    let cdrom = d.devtype == DevType::Cdrom;
    if cdrom {
        m.insert("removable".into(), json!(1));
    }
    if d.access == Access::ReadWrite {
        m.insert("readwrite".into(), json!(1));
    }
    if cdrom {
        m.insert("is_cdrom".into(), json!(1));
    }
    if d.direct_io_safe {
        m.insert("direct_io_safe".into(), json!(true));
    }
    if let Some(v) = d.discard {
        m.insert("discard_enable".into(), defbool(v));
    }
    if let Some(s) = d.specification {
        let name = match s {
            Specification::Xen => "xen",
            Specification::Virtio => "virtio",
        };
        m.insert("specification".into(), json!(name));
    }
    if let Some(v) = d.trusted {
        m.insert("trusted".into(), defbool(v));
    }
    Value::Object(m)
}

/// `libxl_device_nic`.
fn nic(v: &VifSpec) -> Value {
    let mut m = Map::new();
    if let Some(b) = &v.backend {
        m.insert("backend_domname".into(), json!(b));
    }
    m.insert("devid".into(), json!(v.devid));
    if let Some(mtu) = v.mtu {
        m.insert("mtu".into(), json!(mtu));
    }
    if let Some(model) = &v.model {
        m.insert("model".into(), json!(model));
    }
    if let Some(mac) = &v.mac {
        m.insert("mac".into(), json!(mac.to_string()));
    }
    if let Some(ip) = &v.ip {
        m.insert("ip".into(), json!(ip));
    }
    if let Some(b) = &v.bridge {
        m.insert("bridge".into(), json!(b));
    }
    if let Some(n) = &v.vifname {
        m.insert("ifname".into(), json!(n));
    }
    if let Some(s) = &v.script {
        m.insert("script".into(), json!(s));
    }
    if let Some(t) = v.nic_type {
        let name = match t {
            NicType::Vif => "vif",
            NicType::Ioemu => "vif_ioemu",
        };
        m.insert("nictype".into(), json!(name));
    }
    if let Some(r) = &v.rate {
        m.insert(
            "rate_bytes_per_interval".into(),
            json!(r.bytes_per_interval),
        );
        m.insert("rate_interval_usecs".into(), json!(r.interval_usecs));
    }
    if let Some(g) = &v.gatewaydev {
        m.insert("gatewaydev".into(), json!(g));
    }
    Value::Object(m)
}

/// libxl's `libxl_defbool` spelling.
fn defbool(v: bool) -> Value {
    json!(if v { "True" } else { "False" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> DomainConfig {
        crate::config::parse_config::<&str>(text, "t.cfg", &[])
            .unwrap()
            .0
    }

    #[test]
    fn a_pv_domain_in_libxls_layout() {
        let cfg = parse(
            "name = \"web\"\nkernel = \"/boot/vmlinuz\"\nramdisk = \"/boot/initrd\"\n\
             memory = 256\nmaxmem = 512\nvcpus = 2\nextra = \"console=hvc0\"\n\
             on_crash = \"rename-restart\"\n\
             disk = [ '/srv/web.qcow2,qcow2,xvda,rw', 'format=raw,vdev=xvdc,access=ro,devtype=cdrom,target=/srv/cd.iso' ]\n\
             vif = [ 'mac=00:16:3e:01:02:03,bridge=xenbr0,rate=10MB/s' ]\n",
        );
        let v = domain_config(&cfg, Some("6c4d3b8e-0000-4000-8000-000000000001"));
        assert_eq!(
            v["c_info"],
            json!({"type": "pv", "name": "web",
                   "uuid": "6c4d3b8e-0000-4000-8000-000000000001",
                   "run_hotplug_scripts": "True"})
        );
        let b = &v["b_info"];
        assert_eq!(b["max_vcpus"], 2);
        assert_eq!(b["avail_vcpus"], json!([0, 1]));
        assert_eq!(b["max_memkb"], 512 * 1024);
        assert_eq!(b["target_memkb"], 256 * 1024);
        assert_eq!(b["kernel"], "/boot/vmlinuz");
        assert_eq!(b["ramdisk"], "/boot/initrd");
        assert_eq!(b["cmdline"], "console=hvc0");
        assert_eq!(b["type.pv"], json!({}));
        assert_eq!(
            v["disks"][0],
            json!({"pdev_path": "/srv/web.qcow2", "vdev": "xvda", "format": "qcow2",
                   "readwrite": 1})
        );
        assert_eq!(
            v["disks"][1],
            json!({"pdev_path": "/srv/cd.iso", "vdev": "xvdc", "format": "raw",
                   "removable": 1, "is_cdrom": 1})
        );
        let n = &v["nics"][0];
        assert_eq!(n["devid"], 0);
        assert_eq!(n["mac"], "00:16:3e:01:02:03");
        assert_eq!(n["bridge"], "xenbr0");
        assert_eq!(n["rate_interval_usecs"], 50_000);
        let rate = cfg.vifs[0].rate.unwrap();
        assert_eq!(n["rate_bytes_per_interval"], rate.bytes_per_interval);
        assert_eq!(v["on_poweroff"], "destroy");
        assert_eq!(v["on_reboot"], "restart");
        assert_eq!(v["on_crash"], "restart_rename");
        // Nothing rxen-specific or unset leaks in.
        let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "b_info",
                "c_info",
                "disks",
                "nics",
                "on_crash",
                "on_poweroff",
                "on_reboot"
            ]
        );
    }

    #[test]
    fn the_configs_uuid_when_the_monitor_gives_none() {
        let cfg =
            parse("name=\"a\"\nkernel=\"/k\"\nuuid=\"11111111-2222-3333-4444-555555555555\"\n");
        let v = domain_config(&cfg, None);
        assert_eq!(v["c_info"]["uuid"], "11111111-2222-3333-4444-555555555555");
        assert!(v["b_info"].get("ramdisk").is_none());
        assert_eq!(v["disks"], json!([]));
    }
}
