//! Golden tests for VIFSPEC strings, from `xl-network-configuration(5)`.

use toolstack::config::{parse_config, MacAddr, NicType, VifError, VifSpec};

fn parse(spec: &str, index: u32) -> VifSpec {
    VifSpec::parse(spec, index)
        .unwrap_or_else(|e| panic!("{spec:?}: {e}"))
        .0
}

fn mac(s: &str) -> Option<MacAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn examples_from_the_manual() {
    let v = parse("mac=00:16:3E:74:3d:76,model=rtl8139,bridge=xenbr0", 0);
    assert_eq!(v.mac, mac("00:16:3e:74:3d:76"));
    assert_eq!(v.model.as_deref(), Some("rtl8139"));
    assert_eq!(v.bridge.as_deref(), Some("xenbr0"));

    let v = parse("mac=00:16:3E:74:34:32", 0);
    assert_eq!(v.mac, mac("00:16:3e:74:34:32"));
    assert_eq!(v.bridge, None);

    // The empty string: a NIC with every default.
    assert_eq!(
        parse("", 3),
        VifSpec {
            devid: 3,
            ..VifSpec::default()
        }
    );
}

#[test]
fn config_file_example() {
    let (cfg, warnings) = parse_config(
        "name='n'\nkernel='k'\nvif = [ 'mac=00:16:3E:74:34:32', 'mac=00:16:3e:5f:48:e4,bridge=xenbr1' ]\n",
        "n.cfg",
        &[] as &[&str],
    )
    .unwrap();
    assert!(warnings.is_empty());
    assert_eq!(cfg.vifs.len(), 2);
    assert_eq!((cfg.vifs[0].devid, cfg.vifs[1].devid), (0, 1));
    assert_eq!(cfg.vifs[1].mac, mac("00:16:3e:5f:48:e4"));
    assert_eq!(cfg.vifs[1].bridge.as_deref(), Some("xenbr1"));
}

#[test]
fn rate_examples() {
    let r = parse("rate=10Mb/s", 0).rate.unwrap();
    assert_eq!(r.bytes_per_sec, 10_000_000 / 8);
    let r = parse("rate=250KB/s", 0).rate.unwrap();
    assert_eq!(r.bytes_per_sec, 250_000);
    // "1MB/s@20ms": 20,000 bytes replenished every 20,000 us.
    let r = parse("rate=1MB/s@20ms", 0).rate.unwrap();
    assert_eq!((r.bytes_per_interval, r.interval_usecs), (20_000, 20_000));
}

#[test]
fn every_keyword() {
    let v = parse(
        "mac=00:16:3e:00:00:01, bridge=br0, gatewaydev=eth0, type=vif, model=e1000, \
         vifname=guest0, script=vif-route, ip=192.0.2.10 2001:db8::1, backend=netdom, \
         rate=1MB/s, devid=7, mtu=9000",
        0,
    );
    assert_eq!(v.devid, 7);
    assert_eq!(v.gatewaydev.as_deref(), Some("eth0"));
    assert_eq!(v.nic_type, Some(NicType::Vif));
    assert_eq!(v.vifname.as_deref(), Some("guest0"));
    assert_eq!(v.script.as_deref(), Some("vif-route"));
    assert_eq!(v.ip.as_deref(), Some("192.0.2.10 2001:db8::1"));
    assert_eq!(v.backend.as_deref(), Some("netdom"));
    assert_eq!(v.mtu, Some(9000));
}

#[test]
fn netdev_is_a_deprecated_alias() {
    let (v, notes) = VifSpec::parse("netdev=eth1", 0).unwrap();
    assert_eq!(v.gatewaydev.as_deref(), Some("eth1"));
    assert_eq!(notes.len(), 1);
}

#[test]
fn errors() {
    let err = |s: &str| VifSpec::parse(s, 0).unwrap_err();
    assert_eq!(err("bridge").error, VifError::Unrecognized("bridge".into()));
    assert_eq!(
        err("colour=red").error,
        VifError::Unrecognized("colour=red".into())
    );
    assert_eq!(
        err("mac=00:16:3e:00:00").error,
        VifError::BadMac("00:16:3e:00:00".into())
    );
    assert_eq!(err("type=tap").error, VifError::BadType("tap".into()));
    assert_eq!(err("rate=fast").error, VifError::BadRate("fast".into()));
    assert_eq!(
        err("ip=300.1.1.1").error,
        VifError::BadIp("300.1.1.1".into())
    );
    assert_eq!(
        err("vifname=a-very-long-interface").error,
        VifError::BadVifname("a-very-long-interface".into())
    );
    assert!(matches!(
        err("mtu=10").error,
        VifError::BadNumber { key: "mtu", .. }
    ));
    assert_eq!(err("bridge=br0, mac=x").offset, 12);
}

#[test]
fn json_round_trip() {
    let v = parse("mac=00:16:3e:00:00:01,rate=1MB/s@20ms,type=ioemu", 2);
    let json = serde_json::to_string(&v).unwrap();
    assert!(json.contains("\"mac\":\"00:16:3e:00:00:01\""), "{json}");
    assert!(json.contains("\"type\":\"ioemu\""), "{json}");
    let back: VifSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, v);
}
