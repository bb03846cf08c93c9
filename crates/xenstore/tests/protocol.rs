//! The wire protocol: codec, replies, malformed input.

mod common;

use common::Client;
use xenstore::wire::{Decoder, Header, WireError, HEADER_LEN, PAYLOAD_MAX};
use xenstore::{Message, MsgType, Xenstore, XsError};

#[test]
fn header_is_four_little_endian_words() {
    let m = Message::new(MsgType::Read, 0x01020304, 5, &b"/a\0"[..]);
    let bytes = m.encode();
    assert_eq!(
        &bytes[..HEADER_LEN],
        &[2, 0, 0, 0, 4, 3, 2, 1, 5, 0, 0, 0, 3, 0, 0, 0]
    );
    assert_eq!(&bytes[HEADER_LEN..], b"/a\0");
    let h = Header::parse(bytes[..HEADER_LEN].try_into().unwrap());
    assert_eq!(h, m.header());
}

#[test]
fn decoder_handles_any_split() {
    let msgs = [
        Message::new(MsgType::Write, 1, 0, &b"/a\0value"[..]),
        Message::new(MsgType::Read, 2, 9, &b"/a\0"[..]),
        Message::new(MsgType::TransactionStart, 3, 0, Vec::new()),
        Message::new(MsgType::Write, 4, 0, vec![b'x'; PAYLOAD_MAX]),
    ];
    let stream: Vec<u8> = msgs.iter().flat_map(|m| m.encode()).collect();
    for chunk in [1, 2, 3, 7, 16, 17, 100, 4113, stream.len()] {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            d.push(piece);
            while let Some(m) = d.next_message().unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, msgs, "chunk size {chunk}");
        assert_eq!(d.buffered(), 0);
    }
}

#[test]
fn decoder_rejects_overlong_payload() {
    let mut d = Decoder::new();
    let h = Header {
        ty: 2,
        req_id: 0,
        tx_id: 0,
        len: PAYLOAD_MAX as u32 + 1,
    };
    d.push(&h.to_bytes());
    assert_eq!(d.next_message(), Err(WireError::PayloadTooLong(4097)));
}

#[test]
fn error_replies_carry_the_name_and_nul() {
    let mut xs = Xenstore::default();
    let conn = xs.connect(0);
    let req = Message::request(MsgType::Read, 42, 0, &[b"/missing"]);
    let r = &xs.handle(conn, &req)[0];
    assert_eq!(r.ty, MsgType::Error as u32);
    assert_eq!(r.req_id, 42);
    assert_eq!(r.payload, b"ENOENT\0");
    let ok = &xs.handle(conn, &Message::request(MsgType::Mkdir, 43, 0, &[b"/x"]))[0];
    assert_eq!(
        (ok.ty, ok.req_id, &ok.payload[..]),
        (MsgType::Mkdir as u32, 43, &b"OK\0"[..])
    );
}

#[test]
fn malformed_requests_get_errors() {
    let mut xs = Xenstore::default();
    let c = Client::new(&mut xs, 0);
    let raw = |xs: &mut Xenstore, ty: u32, payload: &[u8]| {
        let m = Message {
            ty,
            req_id: 1,
            tx_id: 0,
            payload: payload.to_vec(),
        };
        let r = xs.handle(c.conn, &m);
        assert_eq!(r.len(), 1);
        r[0].error()
    };
    // Unknown types, and types only xenstored sends.
    for ty in [20, 23, 999, u32::MAX, 15, 16] {
        assert_eq!(raw(&mut xs, ty, b"/\0"), Some(XsError::NoSys), "type {ty}");
    }
    // One-argument requests need exactly one NUL, at the end.
    for p in [&b""[..], b"/a", b"/a\0b\0", b"/a\0\0", b"\0"] {
        assert_eq!(
            raw(&mut xs, MsgType::Read as u32, p),
            Some(XsError::Inval),
            "{p:?}"
        );
        assert_eq!(
            raw(&mut xs, MsgType::Rm as u32, p),
            Some(XsError::Inval),
            "{p:?}"
        );
    }
    assert_eq!(
        raw(&mut xs, MsgType::Write as u32, b"/no-nul"),
        Some(XsError::Inval)
    );
    assert_eq!(
        raw(&mut xs, MsgType::GetDomainPath as u32, b"abc\0"),
        Some(XsError::Inval)
    );
    assert_eq!(
        raw(&mut xs, MsgType::Introduce as u32, b"5\0"),
        Some(XsError::Inval)
    );
    assert_eq!(
        raw(&mut xs, MsgType::Introduce as u32, b"0\x001\x002\0"),
        Some(XsError::Inval)
    );
    assert_eq!(
        raw(&mut xs, MsgType::SetPerms as u32, b"/\0"),
        Some(XsError::Inval)
    );
    assert_eq!(
        raw(&mut xs, MsgType::Control as u32, b"bogus\0"),
        Some(XsError::Inval)
    );
    assert_eq!(raw(&mut xs, MsgType::Control as u32, b"help\0"), None);
    assert_eq!(
        raw(&mut xs, MsgType::DirectoryPart as u32, b"/\0x\0"),
        Some(XsError::Inval)
    );
}

/// A small fixed-seed PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_messages_never_panic() {
    let mut xs = common::with_domains(&[1]);
    let conns = [xs.connect(0), xs.connect(1)];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let words: [&[u8]; 12] = [
        b"/",
        b"/a",
        b"/a/b",
        b"x",
        b"@releaseDomain",
        b"/local/domain/1",
        b"T",
        b"F",
        b"r1",
        b"n0",
        b"7",
        b"",
    ];
    for _ in 0..20_000 {
        let ty = if rng.below(10) == 0 {
            rng.next() as u32
        } else {
            rng.below(24) as u32
        };
        let mut payload = Vec::new();
        for _ in 0..rng.below(5) {
            if rng.below(4) == 0 {
                for _ in 0..rng.below(20) {
                    payload.push(rng.next() as u8);
                }
            } else {
                payload.extend_from_slice(words[rng.below(words.len() as u64) as usize]);
            }
            if rng.below(5) != 0 {
                payload.push(0);
            }
        }
        let tx_id = match rng.below(4) {
            0 => rng.next() as u32,
            1 => rng.below(4) as u32,
            _ => 0,
        };
        let conn = conns[rng.below(2) as usize];
        let msg = Message {
            ty,
            req_id: rng.next() as u32,
            tx_id,
            payload,
        };
        let replies = xs.handle(conn, &msg);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].req_id, msg.req_id);
        assert!(replies[0].payload.len() <= PAYLOAD_MAX);
        xs.take_events(conn);
    }
}

#[test]
fn random_bytes_through_the_decoder_never_panic() {
    let mut xs = Xenstore::default();
    let conn = xs.connect(0);
    let mut rng = Rng(42);
    for _ in 0..200 {
        let mut d = Decoder::new();
        let len = rng.below(3000) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Keep lengths plausible often enough to reach the handlers.
        if bytes.len() >= HEADER_LEN && rng.below(2) == 0 {
            bytes[12..16].copy_from_slice(&(rng.below(64) as u32).to_le_bytes());
            bytes[0..4].copy_from_slice(&(rng.below(24) as u32).to_le_bytes());
        }
        d.push(&bytes);
        while let Ok(Some(m)) = d.next_message() {
            assert_eq!(xs.handle(conn, &m).len(), 1);
        }
    }
}

#[test]
fn submit_orders_reply_before_the_watch_event() {
    let mut xs = Xenstore::default();
    let conn = xs.connect(0);
    xs.submit(
        conn,
        &Message::request(MsgType::Watch, 5, 0, &[b"/w", b"tok"]),
    );
    let out = xs.take_output(conn);
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].ty, out[0].req_id), (MsgType::Watch as u32, 5));
    assert_eq!(out[1], Message::watch_event("/w", "tok"));
    assert!(!xs.has_output(conn));
}

#[test]
fn unknown_connection_is_an_error_not_a_panic() {
    let mut xs = Xenstore::default();
    let conn = xs.connect(0);
    xs.disconnect(conn);
    let r = xs.handle(conn, &Message::request(MsgType::Read, 1, 0, &[b"/"]));
    assert_eq!(r[0].error(), Some(XsError::NoEnt));
    assert!(xs.take_output(conn).is_empty());
}
