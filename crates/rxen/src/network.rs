//! `rxen network-attach`, `network-detach`, `network-list`: vifs of a
//! running domain, as with xl.

use anyhow::{Context, Result};
use domain::control::{NetInfo, NetRate, NetSpec, Request};
use toolstack::client;
use toolstack::config::vif::VifSpec;
use toolstack::registry::Registry;

pub const ATTACH_HELP: &str = "Example:\n  \
    $ rxen network-attach web bridge=xenbr0 mac=00:16:3e:12:34:56 rate=10Mb/s\n  \
    (each argument is one key=value of xl's VIFSPEC, as in vif=[...]: mac, bridge,\n  \
    vifname, ip, mtu, rate, script, devid, gatewaydev; the guest's xen-netfront\n  \
    sees a new eth device, the host a TAP vifDOMID.DEVID on the bridge;\n  \
    without devid= the next free one is used)";

pub const DETACH_HELP: &str = "Example:\n  \
    $ rxen network-detach web 1\n  \
    $ rxen network-detach web 00:16:3e:12:34:56\n  \
    (by device id or MAC; the vif's TAP and bridge port go with it)";

pub const LIST_HELP: &str = "Example:\n  \
    $ rxen network-list web\n  \
    Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path\n  \
    0   0  00:16:3e:5d:0a:11     0     4     10   768/769         /local/domain/0/backend/vif/3/0";

fn socket(reg: &Registry, dom: &str) -> Result<(std::path::PathBuf, String, u16)> {
    let e = crate::commands::find(reg, dom)?;
    Ok((
        reg.paths(e.id).control_socket,
        format!("domain '{}' (id {})", e.name, e.id),
        e.id,
    ))
}

/// What the monitor needs of a parsed `vif=` entry; notes about the
/// parameters that do not apply to a PV vif on rxen.
pub fn net_spec(v: &VifSpec) -> (NetSpec, Vec<String>) {
    let mut notes = Vec::new();
    if let Some(b) = &v.backend {
        if b != "0" && b != "Domain-0" {
            notes.push(format!(
                "backend={b} is ignored: rxen's vifs are served by the host (domain 0)"
            ));
        }
    }
    if v.model.is_some() || v.nic_type.is_some() {
        notes.push("model= and type= only matter to HVM guests and are ignored".into());
    }
    let spec = NetSpec {
        devid: v.devid,
        mac: v.mac.map(|m| m.to_string()),
        bridge: v.bridge.clone(),
        vifname: v.vifname.clone(),
        script: v.script.clone(),
        ip: v.ip.clone(),
        gatewaydev: v.gatewaydev.clone(),
        mtu: v.mtu,
        rate: v.rate.map(|r| NetRate {
            bytes_per_sec: r.bytes_per_sec,
            interval_usecs: r.interval_usecs,
        }),
    };
    (spec, notes)
}

fn vifs(sock: &std::path::Path, what: &str) -> Result<Vec<NetInfo>> {
    let v = client::call(sock, Request::NetworkList).with_context(|| what.to_string())?;
    serde_json::from_value(v).with_context(|| format!("{what}: unexpected answer"))
}

pub fn attach(reg: &Registry, dom: &str, args: &[String]) -> Result<()> {
    let (sock, what, _) = socket(reg, dom)?;
    // xl gives a new vif the lowest device id above the existing ones.
    let next = vifs(&sock, &what)?
        .iter()
        .map(|n| n.devid + 1)
        .max()
        .unwrap_or(0);
    let (v, notes) =
        VifSpec::parse(&args.join(","), next).map_err(|e| anyhow::anyhow!("vif spec: {e}"))?;
    let (spec, more) = net_spec(&v);
    for n in notes.into_iter().chain(more) {
        eprintln!("rxen: note: {n}");
    }
    client::call(&sock, Request::NetworkAttach { vif: spec })
        .with_context(|| format!("{what}: cannot attach vif {}", v.devid))?;
    Ok(())
}

pub fn detach(reg: &Registry, dom: &str, dev: &str) -> Result<()> {
    let (sock, what, _) = socket(reg, dom)?;
    client::call(&sock, Request::NetworkDetach { dev: dev.into() })
        .with_context(|| format!("{what}: cannot detach vif {dev}"))?;
    Ok(())
}

/// xl's header line.
pub fn header() -> String {
    format!(
        "{:<3} {:<2} {:<17} {:<6} {:<5} {:<6} {:>5}/{:<5} {:<30}",
        "Idx", "BE", "Mac Addr.", "handle", "state", "evt-ch", "tx-", "rx-ring-ref", "BE-path"
    )
}

/// One vif's line, as xl prints it (-1 where the frontend has not
/// connected yet).
pub fn row(n: &NetInfo) -> String {
    let num = |v: Option<u32>| v.map_or(-1, |v| v as i64);
    format!(
        "{:<3} {:<2} {}{:>6} {:>5} {:>6} {:>5}/{:<11} {:<30}",
        n.devid,
        0,
        n.mac,
        n.devid,
        n.state,
        num(n.port),
        num(n.tx_ring_ref),
        num(n.rx_ring_ref),
        n.backend_path
    )
}

pub fn list(reg: &Registry, doms: &[String]) -> Result<()> {
    println!("{}", header().trim_end());
    for dom in doms {
        let (sock, what, _) = socket(reg, dom)?;
        for n in vifs(&sock, &what)? {
            println!("{}", row(&n).trim_end());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_lines_are_xls() {
        let n = NetInfo {
            devid: 0,
            mac: "00:16:3e:5d:0a:11".into(),
            state: 4,
            port: Some(10),
            tx_ring_ref: Some(768),
            rx_ring_ref: Some(769),
            backend_path: "/local/domain/0/backend/vif/3/0".into(),
            vif: "vif3.0".into(),
            bridge: Some("xenbr0".into()),
        };
        assert_eq!(
            header().trim_end(),
            "Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path"
        );
        assert_eq!(
            row(&n).trim_end(),
            "0   0  00:16:3e:5d:0a:11     0     4     10   768/769         /local/domain/0/backend/vif/3/0"
        );
        let m = NetInfo {
            mac: n.mac.clone(),
            backend_path: n.backend_path.clone(),
            port: None,
            tx_ring_ref: None,
            rx_ring_ref: None,
            state: 1,
            devid: 12,
            ..n.clone()
        };
        assert!(row(&m).starts_with("12  0  00:16:3e:5d:0a:11    12     1     -1    -1/-1 "));
        // The example in --help is what the code prints.
        assert!(LIST_HELP.contains(header().trim_end()));
        assert!(LIST_HELP.contains(row(&n).trim_end()));
    }

    #[test]
    fn vif_specs_become_net_specs() {
        let (v, _) = VifSpec::parse(
            "mac=00:16:3E:00:00:07,bridge=br1,rate=10Mb/s@20ms,mtu=9000,model=e1000",
            2,
        )
        .unwrap();
        let (s, notes) = net_spec(&v);
        assert_eq!(s.devid, 2);
        assert_eq!(s.mac.as_deref(), Some("00:16:3e:00:00:07"));
        assert_eq!(s.bridge.as_deref(), Some("br1"));
        assert_eq!(
            s.rate,
            Some(NetRate {
                bytes_per_sec: 1_250_000,
                interval_usecs: 20_000
            })
        );
        assert_eq!(s.mtu, Some(9000));
        assert_eq!(notes.len(), 1, "{notes:?}");
    }
}
