//! `rxen network-attach`, `network-detach`, `network-list`: vifs of a
//! running domain, as with xl.

use anyhow::{Context, Result};
use domain::control::Request;
use domain::net::NetInfo;
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

fn socket(reg: &Registry, dom: &str) -> Result<(std::path::PathBuf, String)> {
    let e = crate::commands::find(reg, dom)?;
    Ok((
        reg.paths(e.id).control_socket,
        format!("domain '{}' (id {})", e.name, e.id),
    ))
}

fn vifs(sock: &std::path::Path, what: &str) -> Result<Vec<NetInfo>> {
    let v = client::call(sock, Request::NetworkList).with_context(|| what.to_string())?;
    serde_json::from_value(v).with_context(|| format!("{what}: unexpected answer"))
}

pub fn attach(reg: &Registry, dom: &str, args: &[String]) -> Result<()> {
    let (sock, what) = socket(reg, dom)?;
    // xl gives a new vif the lowest device id above the existing ones.
    let next = vifs(&sock, &what)?
        .iter()
        .map(|n| n.devid + 1)
        .max()
        .unwrap_or(0);
    let (v, notes) =
        VifSpec::parse(&args.join(","), next).map_err(|e| anyhow::anyhow!("vif spec: {e}"))?;
    for n in notes {
        eprintln!("rxen: note: {n}");
    }
    let nic = crate::nic_attach(&v, "network-attach")?;
    client::call(&sock, Request::NetworkAttach { vif: nic })
        .with_context(|| format!("{what}: cannot attach vif {}", v.devid))?;
    Ok(())
}

pub fn detach(reg: &Registry, dom: &str, dev: &str) -> Result<()> {
    let (sock, what) = socket(reg, dom)?;
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
        num(n.ports.first().copied()),
        num(n.tx_ring_ref),
        num(n.rx_ring_ref),
        n.backend_path
    )
}

pub fn list(reg: &Registry, doms: &[String]) -> Result<()> {
    println!("{}", header().trim_end());
    for dom in doms {
        let (sock, what) = socket(reg, dom)?;
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
            vifname: "vif3.0".into(),
            bridge: Some("xenbr0".into()),
            state: 4,
            ports: vec![10, 11],
            tx_ring_ref: Some(768),
            rx_ring_ref: Some(769),
            backend_path: "/local/domain/0/backend/vif/3/0".into(),
            tx_packets: 0,
            tx_bytes: 0,
            rx_packets: 0,
            rx_bytes: 0,
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
            ports: vec![],
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
}
