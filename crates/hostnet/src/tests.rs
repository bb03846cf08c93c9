//! TAP and bridge tests, each in a network namespace of its own (the test
//! thread's), so they never touch the host's interfaces.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::netlink::{Netlink, NetlinkError};
use crate::tap::{Offload, Tap, TapError, MAX_FRAME};
use crate::vif::{HostNetError, HostVif, HostVifConfig};
use crate::vnet::{VnetHdr, F_NEEDS_CSUM};
use crate::{netns, HOST_SIDE_MAC};

fn ip(args: &str) {
    let st = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .expect("run ip");
    assert!(st.success(), "ip {args}");
}

/// Waits until `name` is gone (closing a TAP deletes it at once, but leave
/// the kernel a moment).
fn gone(nl: &mut Netlink, name: &str) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        if nl.link(name).unwrap().is_none() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn plugged_vif_is_an_up_bridge_port_and_goes_with_its_fd() {
    netns::enter_new().unwrap();
    let mut nl = Netlink::open().unwrap();
    nl.create_bridge("brt0").unwrap();
    nl.set_mtu("brt0", 1500).unwrap();
    let br = nl.link("brt0").unwrap().unwrap();
    assert_eq!(br.kind.as_deref(), Some("bridge"));
    assert!(br.up);

    let mut cfg = HostVifConfig::new(3, 0);
    cfg.bridge = Some("brt0".into());
    let vif = HostVif::plug(&cfg).unwrap();
    assert_eq!(vif.name(), "vif3.0");
    assert_eq!(vif.bridge(), Some("brt0"));
    let l = nl.link("vif3.0").unwrap().expect("vif3.0 exists");
    assert!(l.up);
    assert_eq!(l.kind.as_deref(), Some("tun"));
    assert_eq!(l.mac, Some(HOST_SIDE_MAC));
    assert_eq!(l.mtu, Some(1500));
    assert_eq!(l.controller, Some(br.index));

    // A second vif with another name and its own MTU.
    let mut cfg2 = HostVifConfig::new(3, 1);
    cfg2.bridge = Some("brt0".into());
    cfg2.vifname = Some("web-eth1".into());
    cfg2.mtu = Some(9000);
    let vif2 = HostVif::plug(&cfg2).unwrap();
    let l2 = nl.link("web-eth1").unwrap().unwrap();
    assert_eq!((l2.mtu, l2.controller), (Some(9000), Some(br.index)));

    // The same name again: refused, and the first is untouched.
    let e = HostVif::plug(&cfg).unwrap_err();
    assert!(
        matches!(&e, HostNetError::Tap { source: TapError::Exists(n), .. } if n == "vif3.0"),
        "{e}"
    );
    assert!(nl.link("vif3.0").unwrap().is_some());

    drop(vif);
    assert!(gone(&mut nl, "vif3.0"), "vif3.0 outlived its descriptor");
    vif2.unplug().unwrap();
    assert!(gone(&mut nl, "web-eth1"));
    assert!(nl.link("brt0").unwrap().is_some(), "the bridge stays");
    nl.delete("brt0").unwrap();
    assert!(gone(&mut nl, "brt0"));
}

#[test]
fn a_missing_bridge_is_named_with_how_to_create_it() {
    netns::enter_new().unwrap();
    let mut nl = Netlink::open().unwrap();
    let cfg = HostVifConfig::new(5, 0);
    let e = HostVif::plug(&cfg).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, HostNetError::Netlink { source: NetlinkError::NoBridge(b), .. } if b == "xenbr0"),
        "{msg}"
    );
    assert!(
        msg.contains("bridge xenbr0 does not exist")
            && msg.contains("ip link add xenbr0 type bridge && ip link set xenbr0 up"),
        "{msg}"
    );
    assert!(
        nl.link("vif5.0").unwrap().is_none(),
        "nothing was left behind"
    );

    let mut cfg = HostVifConfig::new(5, 0);
    cfg.bridge = Some("lo".into());
    let e = HostVif::plug(&cfg).unwrap_err();
    assert!(e.to_string().contains("lo is not a bridge"), "{e}");
    assert!(nl.link("vif5.0").unwrap().is_none());

    let e = Tap::create("bad/name", 1, Offload::ALL).unwrap_err();
    assert!(matches!(e, TapError::BadName(_)), "{e}");
    let e = Tap::create("sixteen-chars-xx", 1, Offload::ALL).unwrap_err();
    assert!(matches!(e, TapError::BadName(_)), "{e}");
}

#[test]
fn a_script_vif_runs_online_and_offline_with_the_tap_there() {
    netns::enter_new().unwrap();
    let dir = std::env::temp_dir().join(format!("hostnet-vifscript-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log");
    let script = dir.join("vif-custom");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1 $vif $XENBUS_PATH $(ip -br link show dev $vif | awk '{{print $3}}')\" >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut cfg = HostVifConfig::new(9, 2);
    cfg.script = Some("vif-custom".into());
    cfg.script_dir = Some(dir.clone());
    let records = dir.join("records");
    std::fs::create_dir_all(&records).unwrap();
    cfg.record_dir = Some(records.clone());
    // No bridge is needed: the script does the host side.
    let vif = HostVif::plug(&cfg).unwrap();
    assert_eq!(vif.bridge(), None);
    // Its offline call is on file while it is online, and only then.
    let rec = crate::script::record_path(&records, 2);
    assert!(rec.exists());
    drop(vif);
    assert!(!rec.exists());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "online vif9.2 backend/vif/9/2 fe:ff:ff:ff:ff:ff");
    // At offline the TAP is still there for the script to undo its work.
    assert_eq!(lines[1], "offline vif9.2 backend/vif/9/2 fe:ff:ff:ff:ff:ff");
    assert_eq!(lines.len(), 2);

    // A failing script fails the plug and leaves no TAP.
    std::fs::write(&script, "#!/bin/sh\necho refused >&2\nexit 1\n").unwrap();
    let e = HostVif::plug(&cfg).unwrap_err();
    assert!(e.to_string().contains("refused"), "{e}");
    assert!(!rec.exists(), "a failed online leaves no offline to make");
    let mut nl = Netlink::open().unwrap();
    assert!(gone(&mut nl, "vif9.2"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run by [`a_killed_owner_leaves_no_tap`] in a child process: holds a
/// plugged vif until killed.
#[test]
#[ignore = "helper process for a_killed_owner_leaves_no_tap"]
fn tap_holder() {
    let Ok(bridge) = std::env::var("HOSTNET_HOLD_BRIDGE") else {
        return;
    };
    let mut cfg = HostVifConfig::new(77, 0);
    cfg.bridge = Some(bridge);
    let _vif = HostVif::plug(&cfg).unwrap();
    println!("ready");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_owner_leaves_no_tap() {
    netns::enter_new().unwrap();
    let mut nl = Netlink::open().unwrap();
    nl.create_bridge("brk0").unwrap();
    // The child inherits this thread's namespace.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "tests::tap_holder", "--ignored", "--nocapture"])
        .env("HOSTNET_HOLD_BRIDGE", "brk0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!("holder exited: {:?}", child.wait());
        }
    }
    let l = nl.link("vif77.0").unwrap().expect("holder's vif exists");
    assert!(l.controller.is_some());
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert!(gone(&mut nl, "vif77.0"), "kill -9 left vif77.0 behind");
    assert!(nl.link("brk0").unwrap().is_some());
}

fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    for c in data.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// An Ethernet/IPv4/UDP frame from 10.200.0.2:4000 to 10.200.0.1:`port`;
/// the UDP checksum field holds `udp_csum`.
fn udp_frame(dst_mac: [u8; 6], port: u16, payload: &[u8], udp_csum: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 2, 8, 0]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut iph = vec![
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 200, 0, 2, 10, 200, 0, 1,
    ];
    iph[2..4].copy_from_slice(&total.to_be_bytes());
    let c = !csum_fold(csum_add(0, &iph));
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&iph);
    f.extend_from_slice(&4000u16.to_be_bytes());
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&udp_csum.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The UDP pseudo-header sum (what a sender leaves for offload to finish).
fn udp_pseudo(len: u16) -> u16 {
    let mut p = vec![10, 200, 0, 2, 10, 200, 0, 1, 0, 17];
    p.extend_from_slice(&len.to_be_bytes());
    csum_fold(csum_add(0, &p))
}

#[test]
fn frames_cross_the_tap_with_offloads_as_configured() {
    netns::enter_new().unwrap();
    let tap = Tap::create("tapd0", 2, Offload::ALL).unwrap();
    assert_eq!(tap.queues().len(), 2);
    let mut nl = Netlink::open().unwrap();
    nl.set_up("tapd0", true).unwrap();
    ip("addr add 10.200.0.1/24 dev tapd0");
    ip("neigh replace 10.200.0.2 lladdr 00:16:3e:00:00:02 dev tapd0 nud permanent");
    let tap_mac = nl.link("tapd0").unwrap().unwrap().mac.unwrap();

    // Host to guest: with checksum offload the host leaves it to us.
    let host = UdpSocket::bind("10.200.0.1:5555").unwrap();
    host.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // A flow hashes to one queue; read both.
    let recv_any = |port| {
        let t = Instant::now();
        loop {
            for q in tap.queues() {
                let mut buf = vec![0u8; MAX_FRAME];
                if let Some((h, n)) = q.recv(&mut buf).unwrap() {
                    let f = &buf[..n];
                    if n >= 42
                        && f[12..14] == [8, 0]
                        && f[23] == 17
                        && f[36..38] == u16::to_be_bytes(port)
                    {
                        return (h, f.to_vec());
                    }
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "no frame to port {port}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    host.send_to(b"hello guest", "10.200.0.2:9").unwrap();
    let (h, f) = recv_any(9);
    assert!(h.needs_csum(), "{h:?}");
    assert_eq!((h.csum_start, h.csum_offset), (34, 6));
    assert!(f.ends_with(b"hello guest"));

    tap.set_offload(Offload::NONE).unwrap();
    host.send_to(b"complete", "10.200.0.2:10").unwrap();
    let (h, f) = recv_any(10);
    assert!(!h.needs_csum(), "{h:?}");
    // The kernel finished the checksum: the frame's UDP sum verifies.
    let len = (f.len() - 34) as u16;
    let mut pseudo = f[26..34].to_vec();
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&len.to_be_bytes());
    assert_eq!(csum_fold(csum_add(csum_add(0, &pseudo), &f[34..])), 0xffff);

    // Guest to host: a partial checksum with NEEDS_CSUM is accepted...
    let q = &tap.queues()[0];
    let payload = b"from the guest";
    let plen = 8 + payload.len() as u16;
    let partial = udp_frame(tap_mac.0, 5555, payload, udp_pseudo(plen));
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 6,
        ..VnetHdr::default()
    };
    assert!(q.send(&hdr, &[&partial[..20], &partial[20..]]).unwrap());
    let mut buf = [0u8; 64];
    let (n, from) = host.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], payload);
    assert_eq!(from.to_string(), "10.200.0.2:4000");
    // ...while the same frame without the flag has a bad checksum and is dropped.
    assert!(q.send(&VnetHdr::default(), &[&partial]).unwrap());
    host.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        host.recv_from(&mut buf).is_err(),
        "a bad checksum got through"
    );
}
