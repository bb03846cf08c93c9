//! Store semantics on the tree alone: writes, reads, permissions,
//! transactions, quotas.

mod common;

use common::{with_domains, Client};
use xenstore::{MsgType, Quotas, Xenstore, XsError};

#[test]
fn write_creates_parents_and_reads_back() {
    let mut xs = Xenstore::default();
    let c = Client::new(&mut xs, 0);
    c.write(&mut xs, "/a/b/c", "v").unwrap();
    assert_eq!(c.read(&mut xs, "/a/b/c").unwrap(), b"v");
    assert_eq!(c.read(&mut xs, "/a/b").unwrap(), b"");
    assert_eq!(c.dir(&mut xs, "/a").unwrap(), ["b"]);
    assert_eq!(c.dir(&mut xs, "/").unwrap(), ["tool", "a"]);
    // Values are bytes and may contain NULs.
    let msg = xenstore::Message::new(MsgType::Write, 1, 0, &b"/bin\0x\0y"[..]);
    assert!(xs.handle(c.conn, &msg)[0].error().is_none());
    assert_eq!(c.read(&mut xs, "/bin").unwrap(), b"x\0y");
    assert_eq!(c.read(&mut xs, "/nope"), Err(XsError::NoEnt));
    assert_eq!(c.dir(&mut xs, "/nope"), Err(XsError::NoEnt));
}

#[test]
fn mkdir_keeps_values_and_rm_is_recursive() {
    let mut xs = Xenstore::default();
    let c = Client::new(&mut xs, 0);
    c.write(&mut xs, "/a", "keep").unwrap();
    c.mkdir(&mut xs, "/a").unwrap();
    assert_eq!(c.read(&mut xs, "/a").unwrap(), b"keep");
    c.mkdir(&mut xs, "/a/x/y").unwrap();
    assert_eq!(c.dir(&mut xs, "/a/x").unwrap(), ["y"]);
    let before = xs.store().node_count();
    c.rm(&mut xs, "/a").unwrap();
    assert_eq!(xs.store().node_count(), before - 3);
    assert_eq!(c.read(&mut xs, "/a/x/y"), Err(XsError::NoEnt));
    assert_eq!(c.dir(&mut xs, "/").unwrap(), ["tool"]);
    // Removing a missing node is fine if its parent exists...
    c.rm(&mut xs, "/a").unwrap();
    // ...and ENOENT if not.
    assert_eq!(c.rm(&mut xs, "/a/b"), Err(XsError::NoEnt));
    assert_eq!(c.rm(&mut xs, "/"), Err(XsError::Inval));
}

#[test]
fn relative_paths_are_under_the_domain_home() {
    let mut xs = with_domains(&[3]);
    let c = Client::new(&mut xs, 3);
    c.write(&mut xs, "data/x", "1").unwrap();
    let dom0 = Client::new(&mut xs, 0);
    assert_eq!(dom0.read(&mut xs, "/local/domain/3/data/x").unwrap(), b"1");
    assert_eq!(c.read(&mut xs, "/local/domain/3/data/x").unwrap(), b"1");
    let p = c.call(&mut xs, MsgType::GetDomainPath, &[b"3"]).unwrap();
    assert_eq!(p, b"/local/domain/3\0");
}

#[test]
fn bad_paths_are_einval() {
    let mut xs = Xenstore::default();
    let c = Client::new(&mut xs, 0);
    for p in ["/a/", "/a//b", "/a b", "/a.b", "@releaseDomain"] {
        assert_eq!(c.write(&mut xs, p, "x"), Err(XsError::Inval), "{p}");
    }
    let long = format!("/{}", "x".repeat(3072));
    assert_eq!(c.read(&mut xs, &long), Err(XsError::Inval));
}

#[test]
fn domu_cannot_read_another_domains_subtree() {
    let mut xs = with_domains(&[1, 2]);
    let d1 = Client::new(&mut xs, 1);
    let d2 = Client::new(&mut xs, 2);
    d1.write(&mut xs, "secret", "s").unwrap();
    assert_eq!(
        d2.read(&mut xs, "/local/domain/1/secret"),
        Err(XsError::Acces)
    );
    assert_eq!(d2.dir(&mut xs, "/local/domain/1"), Err(XsError::Acces));
    assert_eq!(
        d2.write(&mut xs, "/local/domain/1/secret", "x"),
        Err(XsError::Acces)
    );
    assert_eq!(
        d2.rm(&mut xs, "/local/domain/1/secret"),
        Err(XsError::Acces)
    );
    // A missing node below an unreadable one does not reveal its absence.
    assert_eq!(
        d2.read(&mut xs, "/local/domain/1/missing"),
        Err(XsError::Acces)
    );
    assert_eq!(d1.read(&mut xs, "missing"), Err(XsError::NoEnt));
    // Nor can a domU create outside its home, or touch the root.
    assert_eq!(d2.write(&mut xs, "/evil", "x"), Err(XsError::Acces));
    assert_eq!(d2.rm(&mut xs, "/"), Err(XsError::Acces));
    // Dom0 sees everything.
    let dom0 = Client::new(&mut xs, 0);
    assert_eq!(dom0.read(&mut xs, "/local/domain/1/secret").unwrap(), b"s");
}

#[test]
fn permissions_inherit_and_grant() {
    let mut xs = with_domains(&[1, 2]);
    let d1 = Client::new(&mut xs, 1);
    let d2 = Client::new(&mut xs, 2);
    d1.write(&mut xs, "shared/x", "1").unwrap();
    // Created by domU 1: owned by it, inheriting the default of its parent.
    assert_eq!(d1.get_perms(&mut xs, "shared/x").unwrap(), ["n1"]);
    d1.set_perms(&mut xs, "shared", &["n1", "r2"]).unwrap();
    assert_eq!(d2.read(&mut xs, "/local/domain/1/shared").unwrap(), b"");
    assert_eq!(
        d2.write(&mut xs, "/local/domain/1/shared", "x"),
        Err(XsError::Acces)
    );
    // x kept the permissions it was created with.
    assert_eq!(
        d2.read(&mut xs, "/local/domain/1/shared/x"),
        Err(XsError::Acces)
    );
    // New children inherit the parent's (now shared) permissions.
    d1.write(&mut xs, "shared/y", "2").unwrap();
    assert_eq!(d1.get_perms(&mut xs, "shared/y").unwrap(), ["n1", "r2"]);
    assert_eq!(d2.read(&mut xs, "/local/domain/1/shared/y").unwrap(), b"2");
    // "b" grants both; domain 2 creating a node there owns it.
    d1.set_perms(&mut xs, "shared", &["n1", "b2"]).unwrap();
    d2.write(&mut xs, "/local/domain/1/shared/z", "3").unwrap();
    let dom0 = Client::new(&mut xs, 0);
    assert_eq!(
        dom0.get_perms(&mut xs, "/local/domain/1/shared/z").unwrap(),
        ["n2", "b2"]
    );
    // The owner of the parent has no special rights on it...
    assert_eq!(d1.read(&mut xs, "shared/z"), Err(XsError::Acces));
    assert_eq!(d1.get_perms(&mut xs, "shared/z"), Err(XsError::Acces));
    // ...but dom0 does.
    assert_eq!(
        dom0.read(&mut xs, "/local/domain/1/shared/z").unwrap(),
        b"3"
    );
    // "w" is write only.
    d1.set_perms(&mut xs, "shared/y", &["n1", "w2"]).unwrap();
    d2.write(&mut xs, "/local/domain/1/shared/y", "w").unwrap();
    assert_eq!(
        d2.read(&mut xs, "/local/domain/1/shared/y"),
        Err(XsError::Acces)
    );
}

#[test]
fn set_perms_rules() {
    let mut xs = with_domains(&[1, 2]);
    let d1 = Client::new(&mut xs, 1);
    let d2 = Client::new(&mut xs, 2);
    d1.write(&mut xs, "n", "").unwrap();
    d1.set_perms(&mut xs, "n", &["b1", "r2"]).unwrap();
    // Non-owners with write access cannot change permissions.
    assert_eq!(
        d2.set_perms(&mut xs, "/local/domain/1/n", &["b2"]),
        Err(XsError::Acces)
    );
    // Owners cannot give nodes away.
    assert_eq!(d1.set_perms(&mut xs, "n", &["n2"]), Err(XsError::Perm));
    // Malformed permission strings.
    assert_eq!(d1.set_perms(&mut xs, "n", &["x1"]), Err(XsError::Inval));
    assert_eq!(d1.set_perms(&mut xs, "n", &[]), Err(XsError::Inval));
    assert_eq!(d1.set_perms(&mut xs, "n", &["r99999"]), Err(XsError::Inval));
    // Dom0 can, and can read them back.
    let dom0 = Client::new(&mut xs, 0);
    dom0.set_perms(&mut xs, "/local/domain/1/n", &["n2", "r1"])
        .unwrap();
    assert_eq!(
        dom0.get_perms(&mut xs, "/local/domain/1/n").unwrap(),
        ["n2", "r1"]
    );
    assert_eq!(xs.store().nodes_owned(2), 2);
    // Special nodes have permissions too.
    assert_eq!(dom0.get_perms(&mut xs, "@releaseDomain").unwrap(), ["n0"]);
}

#[test]
fn set_target_lets_a_domain_act_for_another() {
    let mut xs = with_domains(&[1, 5]);
    let d1 = Client::new(&mut xs, 1);
    let stub = Client::new(&mut xs, 5);
    d1.write(&mut xs, "x", "1").unwrap();
    assert_eq!(stub.read(&mut xs, "/local/domain/1/x"), Err(XsError::Acces));
    assert_eq!(
        stub.call(&mut xs, MsgType::SetTarget, &[b"5", b"1"]),
        Err(XsError::Acces)
    );
    let dom0 = Client::new(&mut xs, 0);
    dom0.call(&mut xs, MsgType::SetTarget, &[b"5", b"1"])
        .unwrap();
    assert_eq!(stub.read(&mut xs, "/local/domain/1/x").unwrap(), b"1");
}

#[test]
fn transactions_see_their_own_writes_and_commit() {
    let mut xs = Xenstore::default();
    let mut t = Client::new(&mut xs, 0);
    let other = Client::new(&mut xs, 0);
    t.start(&mut xs).unwrap();
    t.write(&mut xs, "/t/a", "1").unwrap();
    assert_eq!(t.read(&mut xs, "/t/a").unwrap(), b"1");
    assert_eq!(t.dir(&mut xs, "/t").unwrap(), ["a"]);
    assert_eq!(other.read(&mut xs, "/t/a"), Err(XsError::NoEnt));
    t.end(&mut xs, true).unwrap();
    assert_eq!(other.read(&mut xs, "/t/a").unwrap(), b"1");
}

#[test]
fn transaction_abort_discards() {
    let mut xs = Xenstore::default();
    let mut t = Client::new(&mut xs, 0);
    t.write(&mut xs, "/keep", "old").unwrap();
    t.start(&mut xs).unwrap();
    t.write(&mut xs, "/keep", "new").unwrap();
    t.rm(&mut xs, "/keep").unwrap();
    assert_eq!(t.read(&mut xs, "/keep"), Err(XsError::NoEnt));
    t.end(&mut xs, false).unwrap();
    assert_eq!(t.read(&mut xs, "/keep").unwrap(), b"old");
}

#[test]
fn conflicting_transaction_gets_eagain() {
    let mut xs = Xenstore::default();
    let mut t = Client::new(&mut xs, 0);
    let other = Client::new(&mut xs, 0);
    other.write(&mut xs, "/x", "0").unwrap();
    t.start(&mut xs).unwrap();
    assert_eq!(t.read(&mut xs, "/x").unwrap(), b"0");
    t.write(&mut xs, "/y", "1").unwrap();
    other.write(&mut xs, "/x", "changed").unwrap();
    assert_eq!(t.end(&mut xs, true), Err(XsError::Again));
    // Nothing of the transaction was applied, and it is gone.
    assert_eq!(other.read(&mut xs, "/y"), Err(XsError::NoEnt));
    t.tx = 1;
    assert_eq!(t.read(&mut xs, "/x"), Err(XsError::NoEnt));
}

#[test]
fn conflicts_on_creation_and_removal() {
    let mut xs = Xenstore::default();
    let mut t = Client::new(&mut xs, 0);
    let other = Client::new(&mut xs, 0);
    // Read a missing node; someone creates it.
    t.start(&mut xs).unwrap();
    assert_eq!(t.read(&mut xs, "/n"), Err(XsError::NoEnt));
    other.write(&mut xs, "/n", "1").unwrap();
    assert_eq!(t.end(&mut xs, true), Err(XsError::Again));
    // Write a node; someone removes it.
    t.start(&mut xs).unwrap();
    t.write(&mut xs, "/n", "2").unwrap();
    other.rm(&mut xs, "/n").unwrap();
    assert_eq!(t.end(&mut xs, true), Err(XsError::Again));
    // Unrelated changes do not conflict.
    other.write(&mut xs, "/n", "3").unwrap();
    t.start(&mut xs).unwrap();
    t.write(&mut xs, "/n", "4").unwrap();
    other.write(&mut xs, "/elsewhere/deep", "x").unwrap();
    t.end(&mut xs, true).unwrap();
    assert_eq!(other.read(&mut xs, "/n").unwrap(), b"4");
}

#[test]
fn transaction_ids_are_checked() {
    let mut xs = with_domains(&[1]);
    let mut a = Client::new(&mut xs, 0);
    let mut b = Client::new(&mut xs, 0);
    let id = a.start(&mut xs).unwrap();
    // Another connection cannot use it.
    b.tx = id;
    assert_eq!(b.read(&mut xs, "/"), Err(XsError::NoEnt));
    b.tx = 999;
    assert_eq!(b.read(&mut xs, "/"), Err(XsError::NoEnt));
    // No nesting.
    assert_eq!(
        a.call(&mut xs, MsgType::TransactionStart, &[b""]),
        Err(XsError::Busy)
    );
    assert_eq!(
        a.call(&mut xs, MsgType::TransactionEnd, &[b"X"]),
        Err(XsError::Inval)
    );
    b.tx = 0;
    assert_eq!(b.end(&mut xs, true), Err(XsError::NoEnt));
    // Disconnecting drops open transactions.
    xs.disconnect(a.conn);
    assert!(!xs.store().transaction_exists(id));
}

/// A store with `quotas` where domain 1 owns its home directory.
fn store_with_domain_1(quotas: Quotas) -> Xenstore {
    let mut xs = Xenstore::new(quotas);
    xs.mkdir(0, "/local/domain/1").unwrap();
    xs.set_perms(
        0,
        "/local/domain/1",
        xenstore::Perms::new(1, xenstore::Perm::None),
    )
    .unwrap();
    xs
}

#[test]
fn node_quota() {
    let quotas = Quotas {
        nodes: 5,
        ..Quotas::default()
    };
    let mut xs = store_with_domain_1(quotas);
    let d1 = Client::new(&mut xs, 1);
    // The home counts as one.
    for i in 0..4 {
        d1.write(&mut xs, &format!("n{i}"), "x").unwrap();
    }
    assert_eq!(d1.write(&mut xs, "n4", "x"), Err(XsError::NoSpc));
    assert_eq!(d1.write(&mut xs, "a/b", "x"), Err(XsError::NoSpc));
    // Rewriting existing nodes is fine; removing frees quota.
    d1.write(&mut xs, "n0", "y").unwrap();
    d1.rm(&mut xs, "n0").unwrap();
    d1.write(&mut xs, "n4", "x").unwrap();
    // Dom0 is exempt.
    for i in 0..10 {
        xs.write(0, &format!("/local/domain/1/dom0-{i}"), b"x")
            .unwrap();
    }
}

#[test]
fn node_quota_in_transactions() {
    let quotas = Quotas {
        nodes: 3,
        ..Quotas::default()
    };
    let mut xs = store_with_domain_1(quotas);
    let mut d1 = Client::new(&mut xs, 1);
    d1.start(&mut xs).unwrap();
    d1.write(&mut xs, "a", "x").unwrap();
    d1.write(&mut xs, "b", "x").unwrap();
    assert_eq!(d1.write(&mut xs, "c", "x"), Err(XsError::NoSpc));
    d1.end(&mut xs, true).unwrap();
    assert_eq!(xs.store().nodes_owned(1), 3);
}

#[test]
fn value_size_quota() {
    let mut xs = with_domains(&[1]);
    let d1 = Client::new(&mut xs, 1);
    let big = "x".repeat(2049);
    assert_eq!(d1.write(&mut xs, "big", &big), Err(XsError::NoSpc));
    d1.write(&mut xs, "ok", &big[..2048]).unwrap();
    let dom0 = Client::new(&mut xs, 0);
    dom0.write(&mut xs, "/local/domain/1/big", &big).unwrap();
}

#[test]
fn transaction_quota() {
    let mut xs = with_domains(&[1]);
    let mut d1 = Client::new(&mut xs, 1);
    for _ in 0..10 {
        d1.start(&mut xs).unwrap();
        d1.tx = 0;
    }
    assert_eq!(d1.start(&mut xs), Err(XsError::NoSpc));
    let mut dom0 = Client::new(&mut xs, 0);
    for _ in 0..20 {
        dom0.start(&mut xs).unwrap();
        dom0.tx = 0;
    }
}

#[test]
fn permission_entry_quota() {
    let mut xs = with_domains(&[1]);
    let d1 = Client::new(&mut xs, 1);
    d1.write(&mut xs, "n", "").unwrap();
    d1.set_perms(&mut xs, "n", &["n1", "r2", "r3", "r4", "r5"])
        .unwrap();
    assert_eq!(
        d1.set_perms(&mut xs, "n", &["n1", "r2", "r3", "r4", "r5", "r6"]),
        Err(XsError::NoSpc)
    );
}

#[test]
fn directory_part_pages_long_lists() {
    let mut xs = Xenstore::default();
    let c = Client::new(&mut xs, 0);
    let names: Vec<String> = (0..400)
        .map(|i| format!("child-with-a-long-name-{i:04}"))
        .collect();
    for n in &names {
        c.write(&mut xs, &format!("/big/{n}"), "").unwrap();
    }
    // Plain DIRECTORY is too big for one message.
    assert_eq!(c.dir(&mut xs, "/big"), Err(XsError::TooBig));
    let mut got = Vec::new();
    let mut offset = 0usize;
    loop {
        let p = c
            .call(
                &mut xs,
                MsgType::DirectoryPart,
                &[b"/big", offset.to_string().as_bytes()],
            )
            .unwrap();
        assert!(p.len() <= 4096);
        let s = common::strings(&p);
        let (_gen, rest) = s.split_first().unwrap();
        let done = rest.last().is_some_and(|l| l.is_empty());
        for name in rest.iter().filter(|n| !n.is_empty()) {
            offset += name.len() + 1;
            got.push(name.clone());
        }
        if done {
            break;
        }
    }
    assert_eq!(got, names);
}

/// A domain's open transaction cannot grow without bound: reads of absent
/// nodes, writes and removes all count, and the next operation past the
/// quota gets ENOSPC. Ending the transaction frees it.
#[test]
fn a_transaction_holds_at_most_its_quota_of_nodes() {
    let quotas = Quotas {
        transaction_nodes: 50,
        ..Quotas::default()
    };
    let mut xs = store_with_domain_1(quotas);
    let mut d1 = Client::new(&mut xs, 1);
    d1.start(&mut xs).unwrap();
    let mut refused = None;
    for i in 0..1000 {
        match d1.read(&mut xs, &format!("absent-{i}")) {
            Err(XsError::NoEnt) => {}
            Err(XsError::NoSpc) => {
                refused = Some(i);
                break;
            }
            other => panic!("read {i}: {other:?}"),
        }
    }
    let at = refused.expect("1000 reads in one transaction were all accepted");
    assert!(at <= 50, "refused only after {at} reads");
    assert_eq!(d1.write(&mut xs, "w", "x"), Err(XsError::NoSpc));
    // Ending it frees the slot; a fresh transaction works again.
    let _ = d1.end(&mut xs, false);
    d1.start(&mut xs).unwrap();
    d1.write(&mut xs, "w", "x").unwrap();
    d1.end(&mut xs, true).unwrap();
}
