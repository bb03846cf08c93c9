//! Watches: registration, matching, permissions, special events.

mod common;

use common::{with_domains, Client};
use xenstore::{MsgType, Quotas, Xenstore, XsError};

fn ev(path: &str, token: &str) -> (String, String) {
    (path.to_string(), token.to_string())
}

#[test]
fn fires_on_registration_child_change_not_sibling() {
    let mut xs = Xenstore::default();
    let w = Client::new(&mut xs, 0);
    let c = Client::new(&mut xs, 0);
    w.watch(&mut xs, "/a", "tok").unwrap();
    assert_eq!(w.events(&mut xs), [ev("/a", "tok")]);
    c.write(&mut xs, "/a/b/c", "1").unwrap();
    assert_eq!(w.events(&mut xs), [ev("/a/b/c", "tok")]);
    c.write(&mut xs, "/ab", "sibling").unwrap();
    c.write(&mut xs, "/b", "other").unwrap();
    assert!(w.events(&mut xs).is_empty());
    c.write(&mut xs, "/a", "self").unwrap();
    assert_eq!(w.events(&mut xs), [ev("/a", "tok")]);
    // Changes to a parent do not fire watches below it.
    w.watch(&mut xs, "/a/b/c", "deep").unwrap();
    w.events(&mut xs);
    c.write(&mut xs, "/a/b", "x").unwrap();
    assert_eq!(w.events(&mut xs), [ev("/a/b", "tok")]);
}

#[test]
fn mkdir_rm_and_set_perms_fire() {
    let mut xs = Xenstore::default();
    let w = Client::new(&mut xs, 0);
    let c = Client::new(&mut xs, 0);
    c.write(&mut xs, "/a/b/c", "1").unwrap();
    w.watch(&mut xs, "/a", "top").unwrap();
    w.watch(&mut xs, "/a/b/c", "leaf").unwrap();
    w.watch(&mut xs, "/a/b/c/missing", "below").unwrap();
    w.events(&mut xs);
    c.mkdir(&mut xs, "/a/m").unwrap();
    assert_eq!(w.events(&mut xs), [ev("/a/m", "top")]);
    // An existing node: no change, no event.
    c.mkdir(&mut xs, "/a/m").unwrap();
    assert!(w.events(&mut xs).is_empty());
    c.set_perms(&mut xs, "/a/m", &["n0", "r3"]).unwrap();
    assert_eq!(w.events(&mut xs), [ev("/a/m", "top")]);
    // rm fires for the removed nodes that are watched exactly, and for the
    // root of the removal on watches above it.
    c.rm(&mut xs, "/a/b").unwrap();
    let mut got = w.events(&mut xs);
    got.sort();
    assert_eq!(got, [ev("/a/b", "top"), ev("/a/b/c", "leaf")]);
}

#[test]
fn relative_watches_report_relative_paths() {
    let mut xs = with_domains(&[4]);
    let d = Client::new(&mut xs, 4);
    d.watch(&mut xs, "control", "c").unwrap();
    assert_eq!(d.events(&mut xs), [ev("control", "c")]);
    xs.write(0, "/local/domain/4/control/shutdown", b"poweroff")
        .unwrap();
    assert_eq!(d.events(&mut xs), [ev("control/shutdown", "c")]);
    d.unwatch(&mut xs, "control", "c").unwrap();
    xs.write(0, "/local/domain/4/control/shutdown", b"reboot")
        .unwrap();
    assert!(d.events(&mut xs).is_empty());
}

#[test]
fn events_only_for_readable_nodes() {
    let mut xs = with_domains(&[1, 2]);
    let d1 = Client::new(&mut xs, 1);
    let d2 = Client::new(&mut xs, 2);
    d2.watch(&mut xs, "/local/domain/1", "spy").unwrap();
    d2.events(&mut xs);
    d1.write(&mut xs, "secret", "s").unwrap();
    assert!(d2.events(&mut xs).is_empty());
    d1.write(&mut xs, "public", "p").unwrap();
    d1.set_perms(&mut xs, "public", &["n1", "r2"]).unwrap();
    assert_eq!(d2.events(&mut xs), [ev("/local/domain/1/public", "spy")]);
    d1.write(&mut xs, "public", "again").unwrap();
    assert_eq!(d2.events(&mut xs), [ev("/local/domain/1/public", "spy")]);
    // Losing read access still reports that change (old permissions count).
    d1.set_perms(&mut xs, "public", &["n1"]).unwrap();
    assert_eq!(d2.events(&mut xs), [ev("/local/domain/1/public", "spy")]);
    d1.write(&mut xs, "public", "hidden").unwrap();
    assert!(d2.events(&mut xs).is_empty());
}

#[test]
fn watch_errors_and_duplicates() {
    let mut xs = Xenstore::default();
    let w = Client::new(&mut xs, 0);
    w.watch(&mut xs, "/a", "t").unwrap();
    assert_eq!(w.watch(&mut xs, "/a", "t"), Err(XsError::Exist));
    w.watch(&mut xs, "/a", "u").unwrap();
    assert_eq!(w.unwatch(&mut xs, "/a", "v"), Err(XsError::NoEnt));
    assert_eq!(w.watch(&mut xs, "/a/", "t"), Err(XsError::Inval));
    assert_eq!(
        w.call(&mut xs, MsgType::Watch, &[b"/a"]),
        Err(XsError::Inval)
    );
    assert_eq!(xs.watch_count(w.conn), 2);
    // Identical pending events are merged.
    w.events(&mut xs);
    xs.write(0, "/a", b"1").unwrap();
    xs.write(0, "/a", b"2").unwrap();
    let mut got = w.events(&mut xs);
    got.sort();
    assert_eq!(got, [ev("/a", "t"), ev("/a", "u")]);
    // RESET_WATCHES drops them all.
    w.call(&mut xs, MsgType::ResetWatches, &[]).unwrap();
    assert_eq!(xs.watch_count(w.conn), 0);
    xs.write(0, "/a", b"3").unwrap();
    assert!(w.events(&mut xs).is_empty());
}

#[test]
fn watch_quota() {
    let quotas = Quotas {
        watches: 3,
        ..Quotas::default()
    };
    let mut xs = Xenstore::new(quotas);
    let d = Client::new(&mut xs, 1);
    let d_again = Client::new(&mut xs, 1);
    for i in 0..2 {
        d.watch(&mut xs, &format!("/w{i}"), "t").unwrap();
    }
    d_again.watch(&mut xs, "/w2", "t").unwrap();
    // The quota is per domain, across its connections.
    assert_eq!(d.watch(&mut xs, "/w3", "t"), Err(XsError::TooBig));
    let dom0 = Client::new(&mut xs, 0);
    for i in 0..10 {
        dom0.watch(&mut xs, &format!("/w{i}"), "t").unwrap();
    }
}

#[test]
fn transaction_events_fire_on_commit_only() {
    let mut xs = Xenstore::default();
    let w = Client::new(&mut xs, 0);
    let mut t = Client::new(&mut xs, 0);
    w.watch(&mut xs, "/t", "tok").unwrap();
    w.events(&mut xs);
    t.start(&mut xs).unwrap();
    t.write(&mut xs, "/t/a", "1").unwrap();
    assert!(w.events(&mut xs).is_empty());
    t.end(&mut xs, true).unwrap();
    assert_eq!(w.events(&mut xs), [ev("/t/a", "tok")]);
    t.start(&mut xs).unwrap();
    t.write(&mut xs, "/t/b", "1").unwrap();
    t.end(&mut xs, false).unwrap();
    assert!(w.events(&mut xs).is_empty());
}

#[test]
fn special_watches_and_domain_lifecycle() {
    let mut xs = Xenstore::default();
    let dom0 = Client::new(&mut xs, 0);
    dom0.watch(&mut xs, "@introduceDomain", "in").unwrap();
    dom0.watch(&mut xs, "@releaseDomain", "out").unwrap();
    assert_eq!(
        dom0.events(&mut xs),
        [ev("@introduceDomain", "in"), ev("@releaseDomain", "out")]
    );

    let d = Client::new(&mut xs, 7);
    // A domU without permission on the special node sees no events.
    d.watch(&mut xs, "@releaseDomain", "mine").unwrap();
    d.watch(&mut xs, "/", "root").unwrap();
    d.events(&mut xs);

    dom0.call(&mut xs, MsgType::Introduce, &[b"7", b"12345", b"3"])
        .unwrap();
    assert_eq!(dom0.events(&mut xs), [ev("@introduceDomain", "in")]);
    let intro = xs.take_introductions();
    assert_eq!(intro.len(), 1);
    assert_eq!(
        (intro[0].domid, intro[0].mfn, intro[0].evtchn),
        (7, 12345, 3)
    );
    assert_eq!(
        dom0.call(&mut xs, MsgType::IsDomainIntroduced, &[b"7"])
            .unwrap(),
        b"T\0"
    );
    assert_eq!(
        d.call(&mut xs, MsgType::IsDomainIntroduced, &[b"7"]),
        Err(XsError::Acces)
    );
    assert_eq!(
        d.call(&mut xs, MsgType::Introduce, &[b"8", b"1", b"1"]),
        Err(XsError::Acces)
    );

    let mut dt = Client {
        conn: d.conn,
        domid: 7,
        tx: 0,
    };
    dt.start(&mut xs).unwrap();
    dom0.call(&mut xs, MsgType::Release, &[b"7"]).unwrap();
    assert_eq!(dom0.events(&mut xs), [ev("@releaseDomain", "out")]);
    assert!(d.events(&mut xs).is_empty());
    // Its watches and transactions are gone.
    assert_eq!(xs.watch_count(d.conn), 0);
    assert_eq!(dt.read(&mut xs, "/"), Err(XsError::NoEnt));
    assert_eq!(
        dom0.call(&mut xs, MsgType::IsDomainIntroduced, &[b"7"])
            .unwrap(),
        b"F\0"
    );
    assert_eq!(
        dom0.call(&mut xs, MsgType::Release, &[b"7"]),
        Err(XsError::NoEnt)
    );

    // Dom0 can let a domain see the special events.
    dom0.set_perms(&mut xs, "@releaseDomain", &["n0", "r7"])
        .unwrap();
    d.watch(&mut xs, "@releaseDomain", "mine").unwrap();
    d.events(&mut xs);
    xs.introduce_domain(9).unwrap();
    xs.release_domain(9).unwrap();
    assert_eq!(d.events(&mut xs), [ev("@releaseDomain", "mine")]);
}
