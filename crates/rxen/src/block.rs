//! `rxen block-attach`, `block-detach`, `block-list`: disks of a running
//! domain, as with xl.

use anyhow::{Context, Result};
use domain::blk::BlockInfo;
use domain::control::{BlockSpec, Request};
use toolstack::client;
use toolstack::config::disk::DiskSpec;
use toolstack::registry::Registry;

pub const ATTACH_HELP: &str = "Example:\n  \
    $ rxen block-attach web 'format=qcow2, vdev=xvdb, access=rw, target=/srv/rxen/data.qcow2'\n  \
    (the spec is xl's, as in disk=[...]; the guest's xen-blkfront sees /dev/xvdb;\n  \
    a hot-plugged disk lasts until the domain reboots)";

pub const DETACH_HELP: &str = "Example:\n  \
    $ rxen block-detach web xvdb\n  \
    (the guest closes the device first; the image is then released)";

pub const LIST_HELP: &str = "Example:\n  \
    $ rxen block-list web\n  \
    Vdev  BE  handle state evt-ch path\n  \
    xvda  0   51712  4     9      /srv/rxen/root.qcow2";

fn socket(reg: &Registry, dom: &str) -> Result<(std::path::PathBuf, String)> {
    let e = crate::commands::find(reg, dom)?;
    Ok((
        reg.paths(e.id).control_socket,
        format!("domain '{}' (id {})", e.name, e.id),
    ))
}

pub fn attach(reg: &Registry, dom: &str, spec: &[String]) -> Result<()> {
    let parts: Vec<&str> = spec.iter().map(String::as_str).collect();
    let (d, notes) =
        DiskSpec::parse_parts(&parts).map_err(|e| anyhow::anyhow!("disk spec: {e}"))?;
    for n in notes {
        eprintln!("rxen: note: {n}");
    }
    let a = crate::disk_attach(&d)?
        .context("an empty CD-ROM drive cannot be attached (give a target)")?;
    let (sock, what) = socket(reg, dom)?;
    client::call(
        &sock,
        Request::BlockAttach {
            disk: BlockSpec::from_attach(&a),
        },
    )
    .with_context(|| format!("{what}: cannot attach {}", a.vdev))?;
    Ok(())
}

pub fn detach(reg: &Registry, dom: &str, vdev: &str) -> Result<()> {
    let (sock, what) = socket(reg, dom)?;
    client::call(&sock, Request::BlockDetach { vdev: vdev.into() })
        .with_context(|| format!("{what}: cannot detach {vdev}"))?;
    Ok(())
}

pub fn list(reg: &Registry, dom: &str) -> Result<()> {
    let (sock, what) = socket(reg, dom)?;
    let v = client::call(&sock, Request::BlockList).with_context(|| what.clone())?;
    let disks: Vec<BlockInfo> =
        serde_json::from_value(v).with_context(|| format!("{what}: unexpected answer"))?;
    println!(
        "{:<6}{:<4}{:<7}{:<6}{:<7}path",
        "Vdev", "BE", "handle", "state", "evt-ch"
    );
    for d in disks {
        println!(
            "{:<6}{:<4}{:<7}{:<6}{:<7}{}{}",
            d.vdev,
            0,
            d.devid,
            d.state,
            d.port.map_or("-1".to_string(), |p| p.to_string()),
            d.path,
            if d.read_only { " (ro)" } else { "" }
        );
    }
    Ok(())
}
