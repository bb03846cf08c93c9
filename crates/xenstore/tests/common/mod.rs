//! Helpers shared by the integration tests.
#![allow(dead_code)]

use xenstore::{ConnId, DomId, Message, MsgType, Xenstore, XsError};

/// Sends one request on `conn` and returns the reply payload or error.
pub fn call(
    xs: &mut Xenstore,
    conn: ConnId,
    ty: MsgType,
    tx: u32,
    args: &[&[u8]],
) -> Result<Vec<u8>, XsError> {
    let msg = Message::request(ty, 7, tx, args);
    let replies = xs.handle(conn, &msg);
    assert_eq!(replies.len(), 1, "exactly one reply");
    let r = &replies[0];
    assert_eq!(r.req_id, 7, "req_id echoed");
    assert_eq!(r.tx_id, tx, "tx_id echoed");
    match r.error() {
        Some(e) => Err(e),
        None => {
            assert_eq!(r.ty, ty as u32, "reply type echoes request");
            Ok(r.payload.clone())
        }
    }
}

/// A connected client of one domain.
pub struct Client {
    pub conn: ConnId,
    pub domid: DomId,
    pub tx: u32,
}

impl Client {
    pub fn new(xs: &mut Xenstore, domid: DomId) -> Client {
        Client {
            conn: xs.connect(domid),
            domid,
            tx: 0,
        }
    }

    pub fn call(&self, xs: &mut Xenstore, ty: MsgType, args: &[&[u8]]) -> Result<Vec<u8>, XsError> {
        call(xs, self.conn, ty, self.tx, args)
    }

    pub fn read(&self, xs: &mut Xenstore, path: &str) -> Result<Vec<u8>, XsError> {
        self.call(xs, MsgType::Read, &[path.as_bytes()])
    }

    pub fn write(&self, xs: &mut Xenstore, path: &str, value: &str) -> Result<(), XsError> {
        let mut p = path.as_bytes().to_vec();
        p.push(0);
        p.extend_from_slice(value.as_bytes());
        let msg = Message::new(MsgType::Write, 1, self.tx, p);
        match xs.handle(self.conn, &msg)[0].error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn mkdir(&self, xs: &mut Xenstore, path: &str) -> Result<(), XsError> {
        self.call(xs, MsgType::Mkdir, &[path.as_bytes()]).map(drop)
    }

    pub fn rm(&self, xs: &mut Xenstore, path: &str) -> Result<(), XsError> {
        self.call(xs, MsgType::Rm, &[path.as_bytes()]).map(drop)
    }

    pub fn dir(&self, xs: &mut Xenstore, path: &str) -> Result<Vec<String>, XsError> {
        let p = self.call(xs, MsgType::Directory, &[path.as_bytes()])?;
        Ok(strings(&p))
    }

    pub fn get_perms(&self, xs: &mut Xenstore, path: &str) -> Result<Vec<String>, XsError> {
        Ok(strings(&self.call(
            xs,
            MsgType::GetPerms,
            &[path.as_bytes()],
        )?))
    }

    pub fn set_perms(&self, xs: &mut Xenstore, path: &str, perms: &[&str]) -> Result<(), XsError> {
        let mut args: Vec<&[u8]> = vec![path.as_bytes()];
        args.extend(perms.iter().map(|p| p.as_bytes()));
        self.call(xs, MsgType::SetPerms, &args).map(drop)
    }

    pub fn watch(&self, xs: &mut Xenstore, path: &str, token: &str) -> Result<(), XsError> {
        self.call(xs, MsgType::Watch, &[path.as_bytes(), token.as_bytes()])
            .map(drop)
    }

    pub fn unwatch(&self, xs: &mut Xenstore, path: &str, token: &str) -> Result<(), XsError> {
        self.call(xs, MsgType::Unwatch, &[path.as_bytes(), token.as_bytes()])
            .map(drop)
    }

    pub fn start(&mut self, xs: &mut Xenstore) -> Result<u32, XsError> {
        let p = self.call(xs, MsgType::TransactionStart, &[b""])?;
        let id = String::from_utf8(p)
            .unwrap()
            .trim_end_matches('\0')
            .parse()
            .unwrap();
        self.tx = id;
        Ok(id)
    }

    pub fn end(&mut self, xs: &mut Xenstore, commit: bool) -> Result<(), XsError> {
        let r = self.call(
            xs,
            MsgType::TransactionEnd,
            &[if commit { b"T" } else { b"F" }],
        );
        self.tx = 0;
        r.map(drop)
    }

    /// Pending events as (path, token).
    pub fn events(&self, xs: &mut Xenstore) -> Vec<(String, String)> {
        xs.take_events(self.conn)
            .into_iter()
            .map(|m| {
                assert_eq!(m.ty, MsgType::WatchEvent as u32);
                assert_eq!((m.req_id, m.tx_id), (0, 0));
                let s = strings(&m.payload);
                assert_eq!(s.len(), 2);
                (s[0].clone(), s[1].clone())
            })
            .collect()
    }
}

/// Splits a NUL-terminated string list.
pub fn strings(p: &[u8]) -> Vec<String> {
    xenstore::wire::split_strings(p)
        .expect("NUL-terminated")
        .into_iter()
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

/// A store where dom0 has given domains `domids` their home directories,
/// owned by them, as the toolstack does.
pub fn with_domains(domids: &[DomId]) -> Xenstore {
    let mut xs = Xenstore::default();
    for &d in domids {
        let home = format!("/local/domain/{d}");
        xs.mkdir(0, &home).unwrap();
        xs.set_perms(0, &home, xenstore::Perms::new(d, xenstore::Perm::None))
            .unwrap();
        xs.introduce_domain(d).unwrap();
    }
    xs
}
