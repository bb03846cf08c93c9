//! A monitor's guest connection (`CONTROL rxen-guest <domid>`): requests
//! on it are the guest's, and closing it releases the domain.

use xenstore::wire::Message;
use xenstore::{MsgType, Perm, Perms, StoreOps, Xenstore, XsError, DOM0};

fn control(xs: &mut Xenstore, conn: xenstore::ConnId, args: &[&[u8]]) -> Result<(), XsError> {
    let reply = xs
        .handle(conn, &Message::request(MsgType::Control, 1, 0, args))
        .pop()
        .unwrap();
    match reply.error() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn read(xs: &mut Xenstore, conn: xenstore::ConnId, path: &str) -> Result<Vec<u8>, XsError> {
    let reply = xs
        .handle(
            conn,
            &Message::request(MsgType::Read, 2, 0, &[path.as_bytes()]),
        )
        .pop()
        .unwrap();
    match reply.error() {
        Some(e) => Err(e),
        None => Ok(reply.payload),
    }
}

#[test]
fn a_guest_connection_speaks_for_its_domain_and_releases_it_when_closed() {
    let mut xs = Xenstore::default();
    let ro = Perms::new(DOM0, Perm::None).with(5, Perm::Read);
    for (path, value) in [
        ("/local/domain/5/name", "five"),
        ("/local/domain/5/vm", "/vm/abc"),
        ("/vm/abc/name", "five"),
        ("/local/domain/0/backend/vbd/5/51712/state", "4"),
        ("/local/domain/0/backend/vbd/6/51712/state", "4"),
    ] {
        xs.write_with_perms(path, value.as_bytes(), &ro).unwrap();
    }
    let six = Perms::new(DOM0, Perm::None).with(6, Perm::Read);
    xs.write_with_perms("/local/domain/6/name", b"six", &six)
        .unwrap();
    StoreOps::watch(&mut xs, "@releaseDomain", "rel").unwrap();
    StoreOps::watch(&mut xs, "@introduceDomain", "intro").unwrap();
    xs.take_watch_events("rel");
    xs.take_watch_events("intro");

    let guest = xs.connect(DOM0);
    control(&mut xs, guest, &[b"rxen-guest", b"5"]).unwrap();
    assert!(xs.is_introduced(5) && xs.has_guest(5));
    assert_eq!(xs.take_watch_events("intro").len(), 1);
    // Now it is domain 5: its own tree yes, another domain's no, and no
    // more privileged commands.
    assert_eq!(read(&mut xs, guest, "name").unwrap(), b"five");
    assert_eq!(
        read(&mut xs, guest, "/local/domain/6/name"),
        Err(XsError::Acces)
    );
    assert_eq!(
        control(&mut xs, guest, &[b"rxen-guest", b"6"]),
        Err(XsError::Acces)
    );
    // One connection per domain.
    let other = xs.connect(DOM0);
    assert_eq!(
        control(&mut xs, other, &[b"rxen-guest", b"5"]),
        Err(XsError::Exist)
    );
    assert_eq!(
        control(&mut xs, other, &[b"rxen-guest", b"0"]),
        Err(XsError::Inval)
    );

    xs.disconnect(guest);
    assert!(!xs.is_introduced(5));
    assert_eq!(xs.take_watch_events("rel").len(), 1);
    for gone in [
        "/local/domain/5",
        "/vm/abc",
        "/local/domain/0/backend/vbd/5",
    ] {
        assert_eq!(StoreOps::read(&mut xs, gone), Err(XsError::NoEnt), "{gone}");
    }
    for kept in [
        "/local/domain/6/name",
        "/local/domain/0/backend/vbd/6/51712/state",
    ] {
        assert!(StoreOps::read(&mut xs, kept).is_ok(), "{kept}");
    }
    // The id is free again.
    control(&mut xs, other, &[b"rxen-guest", b"5"]).unwrap();
}

#[test]
fn release_by_dom0_cleans_up_and_a_late_close_does_not_touch_the_next_boot() {
    let mut xs = Xenstore::default();
    let first = xs.connect(DOM0);
    control(&mut xs, first, &[b"rxen-guest", b"3"]).unwrap();
    xs.write_with_perms("/local/domain/3/name", b"a", &Perms::new(DOM0, Perm::None))
        .unwrap();
    // A reboot: the monitor releases the domain, then boots it again.
    xs.request(MsgType::Release, 0, b"3\0").unwrap();
    assert_eq!(
        StoreOps::read(&mut xs, "/local/domain/3/name"),
        Err(XsError::NoEnt)
    );
    StoreOps::write(&mut xs, "/local/domain/3/name", b"b").unwrap();
    let second = xs.connect(DOM0);
    control(&mut xs, second, &[b"rxen-guest", b"3"]).unwrap();
    // The first boot's connection closes late: the new tree stays.
    xs.disconnect(first);
    assert_eq!(
        StoreOps::read(&mut xs, "/local/domain/3/name").unwrap(),
        b"b"
    );
    assert!(xs.is_introduced(3));
}
