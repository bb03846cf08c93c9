//! The vif's xenbus handshake against a frontend played by the test through
//! a real store, the way Linux's xen-netfront does it (one queue flat,
//! several under `queue-N/`).

use std::collections::HashMap;
use std::sync::Mutex;

use backends::vbd::FrontendLink;
use backends::vif::{Vif, VifConfig};
use backends::OwnedPage;
use xen_abi::io::xenbus::XenbusState;
use xenstore::{Xenstore, DOM0};

const DOM: u16 = 4;
const FE: &str = "/local/domain/4/device/vif/0";
const BE: &str = "/local/domain/0/backend/vif/4/0";

/// Ring pages by grant, and what is mapped and bound.
struct Link {
    pages: HashMap<u32, OwnedPage>,
    mapped: Mutex<Vec<u32>>,
    bound: Mutex<Vec<u32>>,
}

impl Link {
    fn new(grefs: &[u32]) -> Link {
        Link {
            pages: grefs.iter().map(|&g| (g, OwnedPage::new())).collect(),
            mapped: Mutex::default(),
            bound: Mutex::default(),
        }
    }
}

impl<'a> FrontendLink for &'a Link {
    type Page = &'a OwnedPage;
    fn map_ring(&self, gref: u32) -> Result<&'a OwnedPage, String> {
        let p = self.pages.get(&gref).ok_or(format!("no grant {gref}"))?;
        self.mapped.lock().unwrap().push(gref);
        Ok(p)
    }
    fn unmap_ring(&self, gref: u32) {
        self.mapped.lock().unwrap().retain(|&g| g != gref);
    }
    fn bind_event(&self, port: u32) -> Result<(), String> {
        if port == 666 {
            return Err("not an unbound port".into());
        }
        self.bound.lock().unwrap().push(port);
        Ok(())
    }
    fn unbind_event(&self, port: u32) {
        self.bound.lock().unwrap().retain(|&p| p != port);
    }
}

fn cfg(max_queues: u32) -> VifConfig {
    VifConfig {
        domid: DOM,
        devid: 0,
        mac: "00:16:3e:01:02:03".into(),
        vifname: "vif4.0".into(),
        bridge: Some("xenbr0".into()),
        ip: Some("10.0.0.2".into()),
        mtu: 1500,
        max_queues,
        script: None,
        rate: None,
    }
}

fn read(xs: &mut Xenstore, path: &str) -> String {
    String::from_utf8(xs.read(DOM0, path).unwrap()).unwrap()
}

/// What netfront's talk_to_netback writes, then Connected.
fn frontend_connects(xs: &mut Xenstore, queues: &[(u32, u32, u32)]) {
    let mut nodes: Vec<(String, String)> = Vec::new();
    if queues.len() > 1 {
        nodes.push(("multi-queue-num-queues".into(), queues.len().to_string()));
    }
    for (i, (tx, rx, port)) in queues.iter().enumerate() {
        let dir = if queues.len() == 1 {
            String::new()
        } else {
            format!("queue-{i}/")
        };
        nodes.push((format!("{dir}tx-ring-ref"), tx.to_string()));
        nodes.push((format!("{dir}rx-ring-ref"), rx.to_string()));
        nodes.push((format!("{dir}event-channel"), port.to_string()));
    }
    for k in [
        "request-rx-copy",
        "feature-rx-notify",
        "feature-sg",
        "feature-gso-tcpv4",
        "feature-gso-tcpv6",
        "feature-ipv6-csum-offload",
    ] {
        nodes.push((k.into(), "1".into()));
    }
    nodes.push(("state".into(), "4".into()));
    for (k, v) in nodes {
        xs.write(DOM, &format!("{FE}/{k}"), v.as_bytes()).unwrap();
    }
}

#[test]
fn the_nodes_netfront_reads_are_there_and_guarded() {
    let mut xs = Xenstore::default();
    let _vif: Vif<&OwnedPage> = Vif::create(&mut xs, cfg(2)).unwrap();
    assert_eq!(read(&mut xs, &format!("{BE}/state")), "2");
    assert_eq!(read(&mut xs, &format!("{FE}/state")), "1");
    // The guest reads its MAC and the backend's features...
    assert_eq!(
        xs.read(DOM, &format!("{FE}/mac")).unwrap(),
        b"00:16:3e:01:02:03"
    );
    for (k, v) in [
        ("feature-rx-copy", "1"),
        ("feature-rx-flip", "0"),
        ("feature-sg", "1"),
        ("feature-gso-tcpv4", "1"),
        ("feature-gso-tcpv6", "1"),
        ("feature-ipv6-csum-offload", "1"),
        ("multi-queue-max-queues", "2"),
        ("frontend-id", "4"),
        ("frontend", FE),
        ("handle", "0"),
        ("bridge", "xenbr0"),
        ("ip", "10.0.0.2"),
        ("mac", "00:16:3e:01:02:03"),
        ("online", "1"),
    ] {
        assert_eq!(
            String::from_utf8(xs.read(DOM, &format!("{BE}/{k}")).unwrap()).unwrap(),
            v,
            "{k}"
        );
    }
    // ...and cannot change them; other guests see nothing.
    assert!(xs.write(DOM, &format!("{BE}/feature-sg"), b"0").is_err());
    assert!(xs.read(7, &format!("{FE}/mac")).is_err());
    assert!(xs.read(7, &format!("{BE}/mac")).is_err());
}

#[test]
fn one_queue_connects_and_closes() {
    let mut xs = Xenstore::default();
    let link = Link::new(&[10, 11]);
    let mut vif: Vif<&OwnedPage> = Vif::create(&mut xs, cfg(1)).unwrap();
    assert!(vif.poll_store(&mut xs, &&link));
    assert!(!vif.connected());
    frontend_connects(&mut xs, &[(10, 11, 7)]);
    assert!(vif.poll_store(&mut xs, &&link));
    assert_eq!(vif.state(), XenbusState::Connected);
    assert_eq!(read(&mut xs, &format!("{BE}/state")), "4");
    assert_eq!(vif.ports(), vec![7]);
    let f = vif.features().unwrap();
    assert!(f.sg && f.gso_tcpv4 && f.gso_tcpv6 && f.ip_csum && f.ipv6_csum);
    assert_eq!(*link.bound.lock().unwrap(), vec![7]);
    let g = vif.generation();
    // The frontend closes: rings unmapped, port unbound, Closing.
    xs.write(DOM, &format!("{FE}/state"), b"5").unwrap();
    vif.poll_store(&mut xs, &&link);
    assert_eq!(vif.state(), XenbusState::Closing);
    assert!(!vif.connected());
    assert_ne!(vif.generation(), g);
    assert!(link.mapped.lock().unwrap().is_empty());
    assert!(link.bound.lock().unwrap().is_empty());
    // Closed, then a new frontend (module reload) starts over.
    xs.write(DOM, &format!("{FE}/state"), b"6").unwrap();
    vif.poll_store(&mut xs, &&link);
    assert_eq!(vif.state(), XenbusState::Closed);
    xs.write(DOM, &format!("{FE}/state"), b"1").unwrap();
    vif.poll_store(&mut xs, &&link);
    assert_eq!(vif.state(), XenbusState::InitWait);
    frontend_connects(&mut xs, &[(10, 11, 7)]);
    vif.poll_store(&mut xs, &&link);
    assert!(vif.connected());
}

#[test]
fn two_queues_each_get_their_rings_and_port() {
    let mut xs = Xenstore::default();
    let link = Link::new(&[10, 11, 12, 13]);
    let mut vif: Vif<&OwnedPage> = Vif::create(&mut xs, cfg(4)).unwrap();
    vif.poll_store(&mut xs, &&link);
    frontend_connects(&mut xs, &[(10, 11, 7), (12, 13, 8)]);
    vif.poll_store(&mut xs, &&link);
    assert_eq!(vif.state(), XenbusState::Connected);
    assert_eq!(vif.ports(), vec![7, 8]);
    assert_eq!(link.mapped.lock().unwrap().len(), 4);
    // A broken queue takes the device down and says why.
    vif.fail("tx ring: corrupt".into(), &&link);
    assert!(vif.wants_store());
    assert!(vif.poll_store(&mut xs, &&link));
    assert_eq!(vif.state(), XenbusState::Closing);
    assert!(read(&mut xs, &format!("{BE}/error")).contains("corrupt"));
    assert!(link.mapped.lock().unwrap().is_empty());
}

#[test]
fn bad_frontend_nodes_are_refused_and_nothing_stays_mapped() {
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("rx-ring-ref", vec![("rx-ring-ref", "99")]),
        ("tx-ring-ref", vec![("tx-ring-ref", "x")]),
        ("event-channel", vec![("event-channel", "666")]),
        ("queues", vec![("multi-queue-num-queues", "9")]),
        ("queues", vec![("multi-queue-num-queues", "0")]),
        ("rx-copy", vec![("request-rx-copy", "0")]),
        ("rx-notify", vec![("feature-rx-notify", "0")]),
        ("split", vec![("event-channel-tx", "3")]),
    ];
    for (what, nodes) in cases {
        let link = Link::new(&[10, 11]);
        // The bad nodes first, then the good ones it did not replace.
        let mut xs = Xenstore::default();
        let mut vif: Vif<&OwnedPage> = Vif::create(&mut xs, cfg(2)).unwrap();
        vif.poll_store(&mut xs, &&link);
        for (k, v) in &nodes {
            xs.write(DOM, &format!("{FE}/{k}"), v.as_bytes()).unwrap();
        }
        for (k, v) in [
            ("tx-ring-ref", "10"),
            ("rx-ring-ref", "11"),
            ("event-channel", "7"),
            ("request-rx-copy", "1"),
            ("feature-rx-notify", "1"),
        ] {
            if !nodes.iter().any(|(n, _)| *n == k) {
                xs.write(DOM, &format!("{FE}/{k}"), v.as_bytes()).unwrap();
            }
        }
        xs.write(DOM, &format!("{FE}/state"), b"4").unwrap();
        vif.poll_store(&mut xs, &&link);
        assert_ne!(vif.state(), XenbusState::Connected, "{what}");
        assert!(!read(&mut xs, &format!("{BE}/error")).is_empty(), "{what}");
        assert!(link.mapped.lock().unwrap().is_empty(), "{what}");
        assert!(link.bound.lock().unwrap().is_empty(), "{what}");
    }
}

#[test]
fn hot_unplug_waits_for_the_frontend_then_removes_the_nodes() {
    let mut xs = Xenstore::default();
    let link = Link::new(&[10, 11]);
    let mut vif: Vif<&OwnedPage> = Vif::create(&mut xs, cfg(1)).unwrap();
    vif.poll_store(&mut xs, &&link);
    frontend_connects(&mut xs, &[(10, 11, 7)]);
    vif.poll_store(&mut xs, &&link);
    vif.request_remove(&mut xs);
    assert_eq!(read(&mut xs, &format!("{BE}/online")), "0");
    assert_eq!(vif.state(), XenbusState::Closing);
    assert!(!vif.removed());
    xs.write(DOM, &format!("{FE}/state"), b"6").unwrap();
    vif.poll_store(&mut xs, &&link);
    assert!(vif.removed());
    vif.remove(&mut xs, &&link);
    assert!(xs.read(DOM0, FE).is_err());
    assert!(xs.read(DOM0, BE).is_err());
    assert!(link.mapped.lock().unwrap().is_empty());
}
