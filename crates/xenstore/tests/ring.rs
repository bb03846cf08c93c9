//! The shared ring page, with a mock guest on the other side.

use xenstore::ring::mock::{guest_receive, guest_send, set_indices};
use xenstore::ring::{
    OwnedPage, Ring, RingConnection, RingError, SharedPage, ERROR, ERROR_PROTO, ERROR_RINGIDX,
    RING_SIZE,
};
use xenstore::wire::Decoder;
use xenstore::{Message, MsgType, Xenstore};

/// Runs the guest and the server until `want` replies arrived.
fn exchange(
    xs: &mut Xenstore,
    rc: &mut RingConnection<&OwnedPage>,
    page: &OwnedPage,
    requests: &[Message],
    want: usize,
) -> Vec<Message> {
    let mut to_send: Vec<u8> = requests.iter().flat_map(|m| m.encode()).collect();
    let mut dec = Decoder::new();
    let mut got = Vec::new();
    for _ in 0..1000 {
        let n = guest_send(page, &to_send);
        to_send.drain(..n);
        rc.poll(xs).unwrap();
        dec.push(&guest_receive(page));
        while let Some(m) = dec.next_message().unwrap() {
            got.push(m);
        }
        if got.len() >= want && to_send.is_empty() {
            return got;
        }
    }
    panic!("no progress: got {} of {want}", got.len());
}

fn setup(page: &OwnedPage, domid: u16) -> (Xenstore, RingConnection<&OwnedPage>) {
    let mut xs = Xenstore::default();
    xs.mkdir(0, &format!("/local/domain/{domid}")).unwrap();
    xs.set_perms(
        0,
        &format!("/local/domain/{domid}"),
        xenstore::Perms::new(domid, xenstore::Perm::None),
    )
    .unwrap();
    let conn = xs.connect(domid);
    (xs, RingConnection::new(Ring::new(page), conn))
}

#[test]
fn requests_and_replies_over_the_ring() {
    let page = OwnedPage::new();
    let (mut xs, mut rc) = setup(&page, 3);
    let reqs = [
        Message::request(MsgType::Write, 1, 0, &[b"name"]).with_value(b"guest"),
        Message::request(MsgType::Read, 2, 0, &[b"name"]),
        Message::request(MsgType::Read, 3, 0, &[b"/local/domain/0"]),
    ];
    let got = exchange(&mut xs, &mut rc, &page, &reqs, 3);
    assert_eq!(got[0].payload, b"OK\0");
    assert_eq!(got[1].payload, b"guest");
    assert_eq!(got[2].payload, b"EACCES\0");
    assert_eq!(xs.read(0, "/local/domain/3/name").unwrap(), b"guest");
}

#[test]
fn indices_wrap_around_u32_and_the_ring() {
    let page = OwnedPage::new();
    let start = u32::MAX - 700;
    set_indices(&page, start, start, start, start);
    let (mut xs, mut rc) = setup(&page, 3);
    // Big messages, so the 1 KiB rings wrap several times.
    let value = vec![b'v'; 2000];
    let mut reqs = Vec::new();
    for i in 0..5 {
        let path = format!("k{i}");
        reqs.push(Message::request(MsgType::Write, i, 0, &[path.as_bytes()]).with_value(&value));
        reqs.push(Message::request(
            MsgType::Read,
            100 + i,
            0,
            &[path.as_bytes()],
        ));
    }
    let got = exchange(&mut xs, &mut rc, &page, &reqs, 10);
    for i in 0..5 {
        assert_eq!(got[2 * i as usize].payload, b"OK\0");
        assert_eq!(got[2 * i as usize + 1].req_id, 100 + i);
        assert_eq!(got[2 * i as usize + 1].payload, value);
    }
    // The free-running indices passed u32::MAX.
    assert!(page.load_u32(xenstore::ring::REQ_PROD) < start);
    assert!(page.load_u32(xenstore::ring::RSP_PROD) < start);
}

#[test]
fn watch_events_reach_the_guest() {
    let page = OwnedPage::new();
    let (mut xs, mut rc) = setup(&page, 3);
    let got = exchange(
        &mut xs,
        &mut rc,
        &page,
        &[Message::request(MsgType::Watch, 1, 0, &[b"control", b"t"])],
        2,
    );
    assert_eq!(got[0].payload, b"OK\0");
    assert_eq!(got[1], Message::watch_event("control", "t"));
    xs.write(0, "/local/domain/3/control/shutdown", b"poweroff")
        .unwrap();
    let got = exchange(&mut xs, &mut rc, &page, &[], 1);
    assert_eq!(got[0], Message::watch_event("control/shutdown", "t"));
}

#[test]
fn corrupted_request_index_breaks_the_connection() {
    let page = OwnedPage::new();
    let (mut xs, mut rc) = setup(&page, 3);
    set_indices(&page, 10, 10 + RING_SIZE as u32 + 1, 0, 0);
    assert!(matches!(
        rc.poll(&mut xs),
        Err(RingError::RequestIndex { .. })
    ));
    assert_eq!(page.load_u32(ERROR), ERROR_RINGIDX);
    // A producer behind the consumer is just as bad.
    set_indices(&page, 10, 5, 0, 0);
    assert!(rc.poll(&mut xs).is_err());
    // Exactly full is fine.
    set_indices(&page, 0, RING_SIZE as u32, 0, 0);
    assert!(rc.poll(&mut xs).is_ok());
}

#[test]
fn corrupted_response_index_breaks_the_connection() {
    let page = OwnedPage::new();
    let (mut xs, mut rc) = setup(&page, 3);
    let req = Message::request(MsgType::Read, 1, 0, &[b"/"]).encode();
    guest_send(&page, &req);
    set_indices(&page, 0, req.len() as u32, 5000, 0);
    assert!(matches!(
        rc.poll(&mut xs),
        Err(RingError::ResponseIndex { .. })
    ));
}

#[test]
fn overlong_message_breaks_the_connection() {
    let page = OwnedPage::new();
    let (mut xs, mut rc) = setup(&page, 3);
    let h = xenstore::wire::Header {
        ty: 2,
        req_id: 0,
        tx_id: 0,
        len: 5000,
    };
    guest_send(&page, &h.to_bytes());
    assert!(matches!(rc.poll(&mut xs), Err(RingError::Protocol(_))));
    assert_eq!(page.load_u32(ERROR), ERROR_PROTO);
}

#[test]
fn a_guest_that_does_not_read_only_delays_itself() {
    let page = OwnedPage::new();
    let (mut xs, mut rc) = setup(&page, 3);
    xs.write(0, "/local/domain/3/big", &vec![b'x'; 4000])
        .unwrap();
    let req = Message::request(MsgType::Read, 1, 0, &[b"big"]).encode();
    guest_send(&page, &req);
    rc.poll(&mut xs).unwrap();
    // Only a ring's worth went out; the rest waits.
    assert_eq!(rc.pending_output(), 4016 - RING_SIZE);
    let mut dec = Decoder::new();
    for _ in 0..10 {
        dec.push(&guest_receive(&page));
        rc.poll(&mut xs).unwrap();
    }
    assert_eq!(dec.next_message().unwrap().unwrap().payload.len(), 4000);
}

/// WRITE requests carry a raw value after the path.
trait WithValue {
    fn with_value(self, v: &[u8]) -> Message;
}
impl WithValue for Message {
    fn with_value(mut self, v: &[u8]) -> Message {
        self.payload.extend_from_slice(v);
        self
    }
}
