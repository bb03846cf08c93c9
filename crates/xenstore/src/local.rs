//! [`StoreOps`] on an in-process [`Xenstore`]: requests go straight to
//! [`Xenstore::handle`] on a connection of the acting domain, so they are
//! checked exactly as a guest's or a socket client's would be.

use crate::conn::ConnId;
use crate::error::{XsError, XsResult};
use crate::ops::{FiredWatch, StoreOps};
use crate::perms::{DomId, DOM0};
use crate::server::Xenstore;
use crate::transaction::TxId;
use crate::wire::{Message, MsgType};

/// An in-process store acting as one domain (see [`Xenstore::acting_as`]).
#[derive(Debug)]
pub struct Local<'a> {
    xs: &'a mut Xenstore,
    conn: ConnId,
}

impl Xenstore {
    /// Access to this store as `domid`, through a connection kept for it
    /// (so watches and transactions persist between calls).
    pub fn acting_as(&mut self, domid: DomId) -> Local<'_> {
        let conn = self.own_conn(domid);
        Local { xs: self, conn }
    }
}

impl StoreOps for Local<'_> {
    fn request(&mut self, ty: MsgType, tx: TxId, payload: &[u8]) -> XsResult<Vec<u8>> {
        local_request(self.xs, self.conn, ty, tx, payload)
    }

    fn take_watch_events(&mut self, token: &str) -> Vec<FiredWatch> {
        self.xs.take_events_of(self.conn, token)
    }
}

/// The store itself acts as dom0 (the toolstack).
impl StoreOps for Xenstore {
    fn request(&mut self, ty: MsgType, tx: TxId, payload: &[u8]) -> XsResult<Vec<u8>> {
        let conn = self.own_conn(DOM0);
        local_request(self, conn, ty, tx, payload)
    }

    fn take_watch_events(&mut self, token: &str) -> Vec<FiredWatch> {
        let conn = self.own_conn(DOM0);
        self.take_events_of(conn, token)
    }
}

fn local_request(
    xs: &mut Xenstore,
    conn: ConnId,
    ty: MsgType,
    tx: TxId,
    payload: &[u8],
) -> XsResult<Vec<u8>> {
    let msg = Message::new(ty, 0, tx, payload);
    let reply = xs.handle(conn, &msg).pop().ok_or(XsError::Io)?;
    if reply.ty == MsgType::Error as u32 {
        return Err(reply.error().unwrap_or(XsError::Inval));
    }
    Ok(reply.payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perms::{Perm, Perms};

    #[test]
    fn acting_as_a_domain_is_checked_like_a_guest() {
        let mut xs = Xenstore::default();
        xs.write_with_perms(
            "/local/domain/1/name",
            b"one",
            &Perms::new(DOM0, Perm::None),
        )
        .unwrap();
        assert_eq!(
            xs.acting_as(1).read("/local/domain/1/name"),
            Err(XsError::Acces)
        );
        StoreOps::set_perms(
            &mut xs,
            "/local/domain/1/name",
            &Perms::new(DOM0, Perm::None).with(1, Perm::Read),
        )
        .unwrap();
        assert_eq!(xs.acting_as(1).read("name").unwrap(), b"one");
        assert_eq!(xs.acting_as(1).write("name", b"x"), Err(XsError::Acces));
        assert_eq!(
            StoreOps::get_perms(&mut xs, "/local/domain/1/name").unwrap(),
            Perms::new(DOM0, Perm::None).with(1, Perm::Read)
        );
        assert_eq!(
            StoreOps::directory(&mut xs, "/local/domain").unwrap(),
            vec!["1".to_string()]
        );
    }

    #[test]
    fn watch_events_are_taken_per_token() {
        let mut xs = Xenstore::default();
        StoreOps::watch(&mut xs, "/a", "ta").unwrap();
        StoreOps::watch(&mut xs, "/b", "tb").unwrap();
        StoreOps::write(&mut xs, "/a/x", b"1").unwrap();
        StoreOps::write(&mut xs, "/b", b"2").unwrap();
        let a: Vec<String> = xs
            .take_watch_events("ta")
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(a, ["/a", "/a/x"]);
        let b: Vec<String> = xs
            .take_watch_events("tb")
            .into_iter()
            .map(|e| e.path)
            .collect();
        // Identical pending events are merged, as in xenstored.
        assert_eq!(b, ["/b"]);
        assert!(xs.take_watch_events("ta").is_empty());
        StoreOps::unwatch(&mut xs, "/a", "ta").unwrap();
        StoreOps::write(&mut xs, "/a/y", b"1").unwrap();
        assert!(xs.take_watch_events("ta").is_empty());
    }

    #[test]
    fn transactions_conflict_with_eagain() {
        let mut xs = Xenstore::default();
        StoreOps::write(&mut xs, "/n", b"0").unwrap();
        let t1 = xs.acting_as(DOM0).transaction_start().unwrap();
        xs.acting_as(DOM0).write_tx(t1, "/n", b"1").unwrap();
        assert_eq!(xs.acting_as(DOM0).read_tx(t1, "/n").unwrap(), b"1");
        // A change outside the transaction makes its commit fail.
        StoreOps::write(&mut xs, "/n", b"2").unwrap();
        assert_eq!(
            xs.acting_as(DOM0).transaction_end(t1, true),
            Err(XsError::Again)
        );
        assert_eq!(StoreOps::read(&mut xs, "/n").unwrap(), b"2");
    }
}
