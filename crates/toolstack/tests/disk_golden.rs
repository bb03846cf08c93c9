//! Golden tests for DISKSPEC strings, from `xl-disk-configuration(5)` and
//! the cases of Xen's `tools/xl/check-xl-disk-parse`: every spelling in a
//! group must parse to the same disk, and that disk must be the one the
//! manual describes.

use toolstack::config::{
    parse_config, Access, BackendType, DevType, DiskError, DiskFormat, DiskSpec, VdevKind,
};

fn parse(spec: &str) -> DiskSpec {
    DiskSpec::parse(spec)
        .unwrap_or_else(|e| panic!("{spec:?}: {e}"))
        .0
}

/// Parses every spelling and checks they all agree; returns the disk.
fn same(spellings: &[&str]) -> DiskSpec {
    let first = parse(spellings[0]);
    for s in &spellings[1..] {
        assert_eq!(parse(s), first, "{s:?} differs from {:?}", spellings[0]);
    }
    first
}

fn error(spec: &str) -> DiskError {
    DiskSpec::parse(spec)
        .map(|d| panic!("{spec:?} parsed as {d:?}"))
        .unwrap_err()
        .error
}

#[test]
fn guest_volume_as_hda() {
    let d = same(&[
        "/dev/vg/guest-volume,,hda",
        "/dev/vg/guest-volume,raw,hda,rw",
        "format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume",
        "raw:/dev/vg/guest-volume,hda,w",
    ]);
    // check-xl-disk-parse also passes the named form as separate arguments.
    let parts = DiskSpec::parse_parts(&[
        "format=raw",
        "vdev=hda",
        "access=rw",
        "target=/dev/vg/guest-volume",
    ])
    .unwrap()
    .0;
    assert_eq!(parts, d);
    assert_eq!(d.target.as_deref(), Some("/dev/vg/guest-volume"));
    assert_eq!(d.format, DiskFormat::Raw);
    assert_eq!(d.vdev.name, "hda");
    assert_eq!(d.vdev.kind, VdevKind::Hd);
    assert_eq!(d.vdev.devid, 3 << 8);
    assert_eq!(d.access, Access::ReadWrite);
    assert_eq!(d.devtype, DevType::Disk);
    assert_eq!(d.script, None);
}

#[test]
fn iso_as_hdc_cdrom() {
    let d = same(&[
        "/root/image.iso,,hdc,cdrom",
        "/root/image.iso,,hdc,,cdrom",
        "/root/image.iso,raw,hdc,devtype=cdrom",
        "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso",
        "raw:/root/image.iso,hdc:cdrom,ro",
    ]);
    assert_eq!(d.target.as_deref(), Some("/root/image.iso"));
    assert_eq!(d.format, DiskFormat::Raw);
    assert_eq!(d.vdev.name, "hdc");
    assert_eq!(d.vdev.devid, 22 << 8);
    assert_eq!(d.access, Access::ReadOnly);
    assert_eq!(d.devtype, DevType::Cdrom);
}

#[test]
fn backendtype_phy() {
    let d = parse("backendtype=phy,vdev=xvdb,access=w,target=/dev/vg/guest-volume");
    assert_eq!(d.backendtype, Some(BackendType::Phy));
    assert_eq!(d.vdev.devid, (202 << 8) | (1 << 4));
    assert_eq!(d.access, Access::ReadWrite);
    assert_eq!(d.target.as_deref(), Some("/dev/vg/guest-volume"));
}

#[test]
fn empty_cdrom_drive() {
    let d = same(&[
        "devtype=cdrom,,,hdc",
        ",,hdc:cdrom,r",
        ",hdc:cdrom,r",
        "vdev=hdc,access=r,devtype=cdrom,target=",
        ",empty,hdc:cdrom,r",
        "vdev=hdc,access=r,devtype=cdrom,format=empty",
        "vdev=hdc,access=r,devtype=cdrom",
    ]);
    assert_eq!(d.target, None);
    assert_eq!(d.format, DiskFormat::Empty);
    assert_eq!(d.devtype, DevType::Cdrom);
    assert_eq!(d.access, Access::ReadOnly);
    assert_eq!(d.vdev.name, "hdc");
}

#[test]
fn iscsi_script_prefix() {
    let target = "iqn.2001-05.com.equallogic:0-8a0906-23fe93404-c82797962054a96d-examplehost";
    let d = same(&[
        &format!("iscsi:{target},xvda,w"),
        &format!("vdev=xvda,access=w,script=block-iscsi,target={target}"),
    ]);
    assert_eq!(d.target.as_deref(), Some(target));
    assert_eq!(d.script.as_deref(), Some("block-iscsi"));
    assert_eq!(d.vdev.devid, 202 << 8);
    assert_eq!(d.access, Access::ReadWrite);
    assert_eq!(d.host_path(), None);
}

#[test]
fn drbd_script_prefix() {
    let d = parse("drbd:app01,hda,w");
    assert_eq!(d.target.as_deref(), Some("app01"));
    assert_eq!(d.script.as_deref(), Some("block-drbd"));
    assert_eq!(d.vdev.name, "hda");
}

#[test]
fn discard_and_trusted_flags() {
    let d = DiskSpec::parse_parts(&["discard", "vdev=hda", "target=/some/disk/image.raw"])
        .unwrap()
        .0;
    assert_eq!(d.discard, Some(true));
    assert_eq!(d.target.as_deref(), Some("/some/disk/image.raw"));
    let d = DiskSpec::parse_parts(&[
        "cdrom",
        "no-discard",
        "vdev=hda",
        "target=/some/disk/image.iso",
    ])
    .unwrap()
    .0;
    assert_eq!(d.discard, Some(false));
    assert_eq!(d.devtype, DevType::Cdrom);
    assert_eq!(d.access, Access::ReadOnly);
    assert_eq!(parse("trusted,vdev=hda,target=/x").trusted, Some(true));
    assert_eq!(parse("untrusted,vdev=hda,target=/x").trusted, Some(false));
    assert!(parse("direct-io-safe,vdev=xvda,target=/x").direct_io_safe);
}

#[test]
fn ignored_deprecated_prefixes() {
    let d = same(&[
        "phy:/dev/vg/root,xvda,w",
        "tap:aio:/dev/vg/root,xvda,w",
        "file:/dev/vg/root,xvda,w",
        "tap2:tapdisk:/dev/vg/root,xvda,w",
    ]);
    assert_eq!(d.target.as_deref(), Some("/dev/vg/root"));
    assert_eq!(d.format, DiskFormat::Raw);
    assert_eq!(
        parse("qcow2:/images/a.qcow2,xvda,w").format,
        DiskFormat::Qcow2
    );
}

#[test]
fn target_swallows_the_rest() {
    let d = parse("vdev=xvda, target=/images/a,b:c.img");
    assert_eq!(d.target.as_deref(), Some("/images/a,b:c.img"));
}

#[test]
fn target_relative_to_dev() {
    assert_eq!(
        parse("vg/root,,xvda").host_path(),
        Some("/dev/vg/root".into())
    );
    assert_eq!(parse("/img,,xvda").host_path(), Some("/img".into()));
}

#[test]
fn errors() {
    assert_eq!(error("foo"), DiskError::NoVdev);
    assert_eq!(error("vdev=xvda"), DiskError::NoTarget);
    assert_eq!(
        error("/x,raw,xvda,rw,extra"),
        DiskError::TooManyPositional("extra".into())
    );
    assert_eq!(
        error("/x,,xvda,rw,size=1"),
        DiskError::UnknownParameter("size".into())
    );
    assert_eq!(
        error("bogus:/x,xvda,w"),
        DiskError::UnknownPrefix("bogus".into())
    );
    assert_eq!(error("/x,,xvdz9x"), DiskError::BadVdev("xvdz9x".into()));
    assert_eq!(
        error("/x,raw,xvda,vdev=xvdb"),
        DiskError::Respecified("vdev")
    );
    assert_eq!(
        error("qcow2:/x,xvda,w,format=raw"),
        DiskError::Respecified("format")
    );
    assert!(matches!(
        error("/x,vmdk,xvda"),
        DiskError::UnknownValue {
            param: "format",
            ..
        }
    ));
    assert!(matches!(
        error("/x,,xvda,rx"),
        DiskError::UnknownValue {
            param: "access",
            ..
        }
    ));
    assert!(matches!(
        error("/x,,xvda,devtype=floppy"),
        DiskError::UnknownValue {
            param: "devtype",
            ..
        }
    ));
}

#[test]
fn error_offsets_point_into_the_spec() {
    let e = DiskSpec::parse("/x,raw,xvda,rw,extra").unwrap_err();
    assert_eq!(e.offset, Some(15));
    let e = DiskSpec::parse("/x, raw, xvda, size=1").unwrap_err();
    assert_eq!(e.offset, Some(15));
}

#[test]
fn config_file_example() {
    let (cfg, warnings) = parse_config(
        "name='d'\nkernel='k'\ndisk = [ '/dev/vg/guest-volume,,hda', '/root/image.iso,,hdc,cdrom' ]\n",
        "d.cfg",
        &[] as &[&str],
    )
    .unwrap();
    assert!(warnings.is_empty());
    assert_eq!(cfg.disks.len(), 2);
    assert_eq!(cfg.disks[0].vdev.name, "hda");
    assert_eq!(cfg.disks[1].devtype, DevType::Cdrom);
}
