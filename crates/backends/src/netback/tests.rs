//! The engine against a frontend played by the test: ring pages in memory,
//! a grant table of its own, packets shaped as Linux's netfront makes them.

use std::cell::RefCell;
use std::collections::HashMap;

use xen_abi::io::ring::ring_entry_offset;
use xen_abi::GrantRef;
use xenstore::ring::{OwnedPage, SharedPage};

use super::*;
use crate::net_packet::tests::frame;

const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 4;
const RSP_PROD: usize = 8;
const RSP_EVENT: usize = 12;

/// The guest's granted pages: contents and whether the backend may write.
#[derive(Default)]
struct Guest {
    pages: RefCell<HashMap<GrantRef, (Vec<u8>, bool)>>,
}

impl Guest {
    fn grant(&self, gref: GrantRef, data: &[u8], writable: bool) {
        let mut page = vec![0u8; PAGE];
        page[..data.len()].copy_from_slice(data);
        self.pages.borrow_mut().insert(gref, (page, writable));
    }
    fn page(&self, gref: GrantRef) -> Vec<u8> {
        self.pages.borrow()[&gref].0.clone()
    }
}

impl GrantedPages for Guest {
    fn read_granted(&self, gref: GrantRef, offset: usize, buf: &mut [u8]) -> Result<(), String> {
        let pages = self.pages.borrow();
        let (p, _) = pages
            .get(&gref)
            .ok_or(format!("grant {gref} not granted"))?;
        let src = p
            .get(offset..offset + buf.len())
            .ok_or("outside the page".to_string())?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_granted(&self, gref: GrantRef, offset: usize, data: &[u8]) -> Result<(), String> {
        let mut pages = self.pages.borrow_mut();
        let (p, w) = pages
            .get_mut(&gref)
            .ok_or(format!("grant {gref} not granted"))?;
        if !*w {
            return Err("read-only grant".into());
        }
        p.get_mut(offset..offset + data.len())
            .ok_or("outside the page".to_string())?
            .copy_from_slice(data);
        Ok(())
    }
}

#[derive(Default)]
struct Sink {
    got: Vec<(VirtioNetHdr, Vec<u8>)>,
    refuse: bool,
    budget: Option<usize>,
}

impl TxSink for Sink {
    fn may_send(&mut self, len: usize) -> bool {
        match &mut self.budget {
            None => true,
            Some(b) if *b >= len => {
                *b -= len;
                true
            }
            Some(_) => false,
        }
    }
    fn send(&mut self, hdr: &VirtioNetHdr, frame: &[u8]) -> std::io::Result<()> {
        if self.refuse {
            return Err(std::io::Error::other("down"));
        }
        self.got.push((*hdr, frame.to_vec()));
        Ok(())
    }
}

/// The frontend's side of one ring.
struct Front<'a> {
    page: &'a OwnedPage,
    entry: usize,
    size: u32,
    rsp_cons: u32,
}

impl<'a> Front<'a> {
    fn new(page: &'a OwnedPage, entry: usize) -> Front<'a> {
        page.store_u32(REQ_EVENT, 1);
        page.store_u32(RSP_EVENT, 1);
        Front {
            page,
            entry,
            size: xen_abi::io::ring::ring_size(4096, entry),
            rsp_cons: 0,
        }
    }
    fn push(&self, entries: &[Vec<u8>]) {
        let prod = self.page.load_u32(REQ_PROD);
        for (i, e) in entries.iter().enumerate() {
            let off = ring_entry_offset(prod.wrapping_add(i as u32), self.size, self.entry);
            self.page.write_bytes(off, e);
        }
        self.page
            .store_u32(REQ_PROD, prod.wrapping_add(entries.len() as u32));
    }
    fn responses(&mut self, len: usize) -> Vec<Vec<u8>> {
        let prod = self.page.load_u32(RSP_PROD);
        let mut out = Vec::new();
        while self.rsp_cons != prod {
            let off = ring_entry_offset(self.rsp_cons, self.size, self.entry);
            let mut b = vec![0u8; len];
            self.page.read_bytes(off, &mut b);
            out.push(b);
            self.rsp_cons = self.rsp_cons.wrapping_add(1);
        }
        out
    }
}

fn txreq(gref: u32, offset: u16, flags: u16, id: u16, size: u16) -> Vec<u8> {
    NetifTxRequest {
        gref,
        offset,
        flags,
        id,
        size,
    }
    .as_slice()
    .to_vec()
}

fn gso_extra(size: u16, kind: u8) -> Vec<u8> {
    let s = size.to_le_bytes();
    NetifExtraInfo {
        type_: XEN_NETIF_EXTRA_TYPE_GSO,
        flags: 0,
        u: [s[0], s[1], kind, 0, 0, 0],
        ..Default::default()
    }
    .as_slice()
    .to_vec()
}

fn tx_rsps(f: &mut Front) -> Vec<(u16, i16)> {
    f.responses(4)
        .iter()
        .map(|b| {
            let r: NetifTxResponse = entry(b);
            (r.id, r.status)
        })
        .collect()
}

fn rx_rsps(f: &mut Front) -> Vec<NetifRxResponse> {
    f.responses(8).iter().map(|b| entry(b)).collect()
}

const FULL: Features = Features {
    sg: true,
    gso_tcpv4: true,
    gso_tcpv6: true,
    ip_csum: true,
    ipv6_csum: true,
};

fn queue<'a>(tx: &'a OwnedPage, rx: &'a OwnedPage, f: Features) -> NetQueue<&'a OwnedPage> {
    NetQueue::new(tx, rx, f, "test".into())
}

#[test]
fn a_one_slot_packet_with_a_blank_checksum_goes_out_with_its_offsets() {
    let (txp, rxp) = (OwnedPage::new(), OwnedPage::new());
    let mut ft = Front::new(&txp, NETIF_TX_RING_ENTRY_SIZE);
    let _fr = Front::new(&rxp, NETIF_RX_RING_ENTRY_SIZE);
    let mut q = queue(&txp, &rxp, FULL);
    let g = Guest::default();
    let pkt = frame(false, 6, 100);
    let mut page = vec![0u8; 200];
    page.extend_from_slice(&pkt);
    g.grant(5, &page, false);
    ft.push(&[txreq(
        5,
        200,
        NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED,
        7,
        pkt.len() as u16,
    )]);
    let mut sink = Sink::default();
    let out = q.service_tx(&g, &mut sink).unwrap();
    assert!(
        out.notify,
        "the frontend waits for its response (rsp_event 1)"
    );
    assert!(!out.throttled);
    assert_eq!(sink.got.len(), 1);
    let (hdr, data) = &sink.got[0];
    assert_eq!(data, &pkt);
    assert_eq!(hdr.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
    assert_eq!((hdr.csum_start, hdr.csum_offset), (34, 16));
    assert_eq!(hdr.gso_type, VIRTIO_NET_HDR_GSO_NONE);
    assert_eq!(tx_rsps(&mut ft), vec![(7, NETIF_RSP_OKAY)]);
    // The backend asked to be told about the next request.
    assert_eq!(txp.load_u32(REQ_EVENT), 2);
    assert_eq!(q.stats().tx_packets, 1);

    // Data validated only: DATA_VALID, no checksum work asked.
    ft.push(&[txreq(5, 200, NETTXF_DATA_VALIDATED, 8, pkt.len() as u16)]);
    q.service_tx(&g, &mut sink).unwrap();
    assert_eq!(sink.got[1].0.flags, VIRTIO_NET_HDR_F_DATA_VALID);
    assert_eq!(tx_rsps(&mut ft), vec![(8, NETIF_RSP_OKAY)]);
}

#[test]
fn a_gso_packet_over_several_slots_is_reassembled() {
    let (txp, rxp) = (OwnedPage::new(), OwnedPage::new());
    let mut ft = Front::new(&txp, NETIF_TX_RING_ENTRY_SIZE);
    let mut q = queue(&txp, &rxp, FULL);
    let g = Guest::default();
    // A 20000-byte TCPv6 packet as netfront sends it: the head (66 bytes of
    // headers + some data) in one slot, the GSO extra, then page pieces.
    let pkt = frame(true, 6, 20000 - 74);
    let head = 1000;
    g.grant(1, &pkt[..head], false);
    let mut reqs = vec![
        txreq(
            1,
            0,
            NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED | NETTXF_EXTRA_INFO | NETTXF_MORE_DATA,
            10,
            pkt.len() as u16,
        ),
        gso_extra(1440, XEN_NETIF_GSO_TYPE_TCPV6),
    ];
    let mut at = head;
    let mut id = 11;
    let mut gref = 2;
    while at < pkt.len() {
        // Pieces start mid-page, as skb frags do.
        let off = 100;
        let len = (pkt.len() - at).min(PAGE - off);
        let mut page = vec![0u8; off];
        page.extend_from_slice(&pkt[at..at + len]);
        g.grant(gref, &page, false);
        let more = if at + len < pkt.len() {
            NETTXF_MORE_DATA
        } else {
            0
        };
        reqs.push(txreq(gref, off as u16, more, id, len as u16));
        at += len;
        id += 1;
        gref += 1;
    }
    let n = reqs.len();
    ft.push(&reqs);
    let mut sink = Sink::default();
    q.service_tx(&g, &mut sink).unwrap();
    let (hdr, data) = &sink.got[0];
    assert_eq!(data, &pkt);
    assert_eq!(hdr.gso_type, VIRTIO_NET_HDR_GSO_TCPV6);
    assert_eq!(hdr.gso_size, 1440);
    assert_eq!(hdr.hdr_len, 74);
    assert_eq!((hdr.csum_start, hdr.csum_offset), (54, 16));
    let rsps = tx_rsps(&mut ft);
    assert_eq!(rsps.len(), n, "one response per slot");
    assert_eq!(rsps[0], (10, NETIF_RSP_OKAY));
    assert_eq!(rsps[1].1, NETIF_RSP_NULL, "the extra slot");
    assert!(rsps[2..].iter().all(|r| r.1 == NETIF_RSP_OKAY));
    assert_eq!(q.stats().tx_gso, 1);
}

#[test]
fn bad_packets_get_error_responses_and_the_ring_goes_on() {
    let (txp, rxp) = (OwnedPage::new(), OwnedPage::new());
    let mut ft = Front::new(&txp, NETIF_TX_RING_ENTRY_SIZE);
    let mut q = queue(&txp, &rxp, FULL);
    let g = Guest::default();
    let pkt = frame(false, 17, 50);
    g.grant(1, &pkt, false);
    let len = pkt.len() as u16;
    let csum = NETTXF_CSUM_BLANK;
    let mut reqs = vec![
        // 1: a grant never given.
        txreq(99, 0, 0, 1, len),
        // 2: runs past the page.
        txreq(1, 4050, 0, 2, len),
        // 3: the later slots hold more than the packet.
        txreq(1, 0, NETTXF_MORE_DATA, 3, 20),
        txreq(1, 0, 0, 4, 30),
        // 5: shorter than an Ethernet header.
        txreq(1, 0, 0, 5, 10),
        // 6: a blank checksum on something that is not TCP/UDP.
        txreq(1, 0, csum, 6, 14),
        // 7: GSO of the wrong type, then GSO size 0.
        txreq(1, 0, csum | NETTXF_EXTRA_INFO, 7, len),
        gso_extra(1000, 9),
        txreq(1, 0, csum | NETTXF_EXTRA_INFO, 8, len),
        gso_extra(0, XEN_NETIF_GSO_TYPE_TCPV4),
        // 9: GSO TCPv4 on a UDP packet.
        txreq(1, 0, csum | NETTXF_EXTRA_INFO, 9, len),
        gso_extra(1000, XEN_NETIF_GSO_TYPE_TCPV4),
    ];
    // 10: 19 slots, one more than allowed.
    for i in 0..19u16 {
        let more = if i < 18 { NETTXF_MORE_DATA } else { 0 };
        let size = if i == 0 { 19 * 20 } else { 20 };
        reqs.push(txreq(1, 0, more, 100 + i, size));
    }
    // 11: a good one after all that.
    reqs.push(txreq(1, 0, csum, 11, len));
    ft.push(&reqs);
    let mut sink = Sink::default();
    q.service_tx(&g, &mut sink).unwrap();
    assert_eq!(sink.got.len(), 1, "only the good packet goes out");
    assert_eq!(sink.got[0].1, pkt);
    assert_eq!(sink.got[0].0.csum_offset, 6, "UDP");
    let rsps = tx_rsps(&mut ft);
    assert_eq!(rsps.len(), reqs.len());
    let errs = rsps.iter().filter(|r| r.1 == NETIF_RSP_ERROR).count();
    let nulls = rsps.iter().filter(|r| r.1 == NETIF_RSP_NULL).count();
    assert_eq!((errs, nulls), (reqs.len() - 4, 3));
    assert_eq!(*rsps.last().unwrap(), (11, NETIF_RSP_OKAY));
    assert_eq!(q.stats().tx_errors, 9);
}

#[test]
fn a_broken_chain_stops_the_queue_without_panicking() {
    let g = Guest::default();
    g.grant(1, &frame(false, 6, 10), false);
    let cases: Vec<Vec<Vec<u8>>> = vec![
        // More data announced, nothing produced after.
        vec![txreq(1, 0, NETTXF_MORE_DATA, 1, 100)],
        // Extra info announced, nothing produced after.
        vec![txreq(1, 0, NETTXF_EXTRA_INFO, 1, 100)],
        // An extra of type 0.
        vec![txreq(1, 0, NETTXF_EXTRA_INFO, 1, 100), vec![0u8; 8]],
        // 20 slots and still more.
        (0..25)
            .map(|i| txreq(1, 0, NETTXF_MORE_DATA, i, 10))
            .collect(),
    ];
    for (i, reqs) in cases.into_iter().enumerate() {
        let (txp, rxp) = (OwnedPage::new(), OwnedPage::new());
        let ft = Front::new(&txp, NETIF_TX_RING_ENTRY_SIZE);
        let mut q = queue(&txp, &rxp, FULL);
        ft.push(&reqs);
        let r = q.service_tx(&g, &mut Sink::default());
        assert!(
            matches!(r, Err(NetbackError::Protocol(_))),
            "case {i}: {r:?}"
        );
    }
    // Corrupt indices.
    let (txp, rxp) = (OwnedPage::new(), OwnedPage::new());
    let _ft = Front::new(&txp, NETIF_TX_RING_ENTRY_SIZE);
    let mut q = queue(&txp, &rxp, FULL);
    txp.store_u32(REQ_PROD, 5000);
    assert!(matches!(
        q.service_tx(&g, &mut Sink::default()),
        Err(NetbackError::Ring(_))
    ));
}

#[test]
fn a_rate_limit_leaves_packets_on_the_ring() {
    let (txp, rxp) = (OwnedPage::new(), OwnedPage::new());
    let mut ft = Front::new(&txp, NETIF_TX_RING_ENTRY_SIZE);
    let mut q = queue(&txp, &rxp, FULL);
    let g = Guest::default();
    let pkt = frame(false, 6, 100);
    g.grant(1, &pkt, false);
    let len = pkt.len() as u16;
    ft.push(&[txreq(1, 0, 0, 1, len), txreq(1, 0, 0, 2, len)]);
    let mut sink = Sink {
        budget: Some(pkt.len() + 10),
        ..Sink::default()
    };
    let out = q.service_tx(&g, &mut sink).unwrap();
    assert!(out.throttled);
    assert_eq!(sink.got.len(), 1);
    assert_eq!(tx_rsps(&mut ft), vec![(1, NETIF_RSP_OKAY)]);
    sink.budget = None;
    let out = q.service_tx(&g, &mut sink).unwrap();
    assert!(!out.throttled);
    assert_eq!(tx_rsps(&mut ft), vec![(2, NETIF_RSP_OKAY)]);
    // A host side that refuses: the guest hears DROPPED.
    sink.refuse = true;
    ft.push(&[txreq(1, 0, 0, 3, len)]);
    q.service_tx(&g, &mut sink).unwrap();
    assert_eq!(tx_rsps(&mut ft), vec![(3, NETIF_RSP_DROPPED)]);
    assert_eq!(q.stats().tx_dropped, 1);
}

#[test]
fn notifications_follow_the_frontends_event_indices() {
    let (txp, rxp) = (OwnedPage::new(), OwnedPage::new());
    let mut ft = Front::new(&txp, NETIF_TX_RING_ENTRY_SIZE);
    let mut q = queue(&txp, &rxp, FULL);
    let g = Guest::default();
    let pkt = frame(false, 6, 10);
    g.grant(1, &pkt, false);
    let len = pkt.len() as u16;
    // The frontend wants to hear only once 3 responses are there.
    txp.store_u32(RSP_EVENT, 3);
    ft.push(&[txreq(1, 0, 0, 1, len), txreq(1, 0, 0, 2, len)]);
    assert!(!q.service_tx(&g, &mut Sink::default()).unwrap().notify);
    ft.push(&[txreq(1, 0, 0, 3, len)]);
    assert!(q.service_tx(&g, &mut Sink::default()).unwrap().notify);
    assert_eq!(tx_rsps(&mut ft).len(), 3);
}

/// Posts `n` rx buffers (grants 1000.., ids from the ring position).
fn post_rx(f: &Front, g: &Guest, n: u32) {
    let prod = f.page.load_u32(REQ_PROD);
    let reqs: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let idx = prod + i;
            let gref = 1000 + idx;
            g.grant(gref, &[], true);
            NetifRxRequest {
                id: (idx % 256) as u16,
                pad: 0,
                gref,
            }
            .as_slice()
            .to_vec()
        })
        .collect();
    f.push(&reqs);
}

#[test]
fn received_packets_fill_whole_buffers_with_gso_extra_in_the_second_slot() {
    let (txp, rxp) = (OwnedPage::new(), OwnedPage::new());
    let mut fr = Front::new(&rxp, NETIF_RX_RING_ENTRY_SIZE);
    let mut q = queue(&txp, &rxp, FULL);
    let g = Guest::default();
    post_rx(&fr, &g, 64);

    // A small packet with a partial checksum: one slot.
    let mut small = frame(false, 6, 50);
    let hdr = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 16,
        ..Default::default()
    };
    assert_eq!(
        q.deliver(&g, &hdr, &mut small).unwrap(),
        RxOutcome::Delivered
    );
    // A 64 KiB GSO packet: 17 slots and the extra.
    let mut big = frame(false, 6, 65535 - 40);
    let gso = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        gso_size: 1448,
        hdr_len: 54,
        csum_start: 34,
        csum_offset: 16,
    };
    assert_eq!(q.deliver(&g, &gso, &mut big).unwrap(), RxOutcome::Delivered);
    assert!(q.publish_rx(), "the frontend waits (rsp_event 1)");
    let rsps = rx_rsps(&mut fr);
    assert_eq!(rsps.len(), 1 + 1 + 17);
    assert_eq!(rsps[0].status as usize, small.len());
    assert_eq!(rsps[0].flags, NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED);
    assert_eq!(rsps[0].id, 0);
    assert_eq!(&g.page(1000)[..small.len()], &small[..]);
    // The big one: first slot, then the extra, then 16 more data slots.
    let first = rsps[1];
    assert_eq!(
        first.flags,
        NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED | NETRXF_MORE_DATA | NETRXF_EXTRA_INFO
    );
    assert_eq!(first.status, 4096);
    let extra: NetifExtraInfo = {
        let raw = rsps[2].as_slice();
        entry(raw)
    };
    assert_eq!(extra.type_, XEN_NETIF_EXTRA_TYPE_GSO);
    assert_eq!(u16::from_le_bytes([extra.u[0], extra.u[1]]), 1448);
    assert_eq!(extra.u[2], XEN_NETIF_GSO_TYPE_TCPV4);
    let mut got = g.page(1001);
    for (i, r) in rsps[3..].iter().enumerate() {
        assert_eq!(
            r.id as u32,
            3 + i as u32,
            "responses sit at their requests' places"
        );
        let last = i == rsps.len() - 4;
        assert_eq!(r.flags & NETRXF_MORE_DATA == 0, last);
        got.extend_from_slice(&g.page(1003 + i as u32)[..r.status as usize]);
    }
    assert_eq!(got, big);
    assert_eq!(q.stats().rx_gso, 1);
}

#[test]
fn without_buffers_the_packet_waits_and_the_guest_is_asked_to_notify() {
    let (txp, rxp) = (OwnedPage::new(), OwnedPage::new());
    let mut fr = Front::new(&rxp, NETIF_RX_RING_ENTRY_SIZE);
    let mut q = queue(&txp, &rxp, FULL);
    let g = Guest::default();
    post_rx(&fr, &g, 2);
    let mut pkt = frame(false, 17, 9000);
    let hdr = VirtioNetHdr::default();
    assert_eq!(q.deliver(&g, &hdr, &mut pkt).unwrap(), RxOutcome::NoRoom);
    assert_eq!(rxp.load_u32(REQ_EVENT), 3, "notify at the next request");
    assert!(rx_rsps(&mut fr).is_empty());
    post_rx(&fr, &g, 1);
    assert_eq!(q.deliver(&g, &hdr, &mut pkt).unwrap(), RxOutcome::Delivered);
    q.publish_rx();
    let rsps = rx_rsps(&mut fr);
    assert_eq!(
        rsps.iter().map(|r| r.status as usize).sum::<usize>(),
        pkt.len()
    );
    assert_eq!(rsps[0].flags, NETRXF_MORE_DATA);
    assert_eq!(rsps[2].flags, 0);
}

#[test]
fn what_the_frontend_cannot_take_is_dropped_or_completed() {
    let (txp, rxp) = (OwnedPage::new(), OwnedPage::new());
    let mut fr = Front::new(&rxp, NETIF_RX_RING_ENTRY_SIZE);
    let plain = Features {
        sg: false,
        ..Features::default()
    };
    let mut q = queue(&txp, &rxp, plain);
    let g = Guest::default();
    post_rx(&fr, &g, 32);
    let none = VirtioNetHdr::default();
    // Over a page without scatter-gather; a GSO packet; a runt.
    for (hdr, mut f) in [
        (none, frame(false, 6, 5000)),
        (
            VirtioNetHdr {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
                gso_size: 1000,
                csum_start: 34,
                csum_offset: 16,
                hdr_len: 54,
            },
            frame(false, 6, 3000),
        ),
        (none, vec![0u8; 10]),
    ] {
        assert!(matches!(
            q.deliver(&g, &hdr, &mut f).unwrap(),
            RxOutcome::Dropped(_)
        ));
    }
    assert_eq!(q.stats().rx_dropped, 3);
    // A partial checksum for a frontend without checksum offload: filled
    // in here, passed as validated.
    let mut f = frame(false, 17, 100);
    let hdr = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 6,
        ..Default::default()
    };
    assert_eq!(q.deliver(&g, &hdr, &mut f).unwrap(), RxOutcome::Delivered);
    q.publish_rx();
    let r = rx_rsps(&mut fr);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].flags, NETRXF_DATA_VALIDATED);
    assert_ne!(&f[40..42], &[0, 0], "checksum written");
    // A checksum position outside the frame is a drop, not a panic.
    let mut f = frame(false, 17, 10);
    let hdr = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: 60000,
        csum_offset: 60000,
        ..Default::default()
    };
    assert!(matches!(
        q.deliver(&g, &hdr, &mut f).unwrap(),
        RxOutcome::Dropped(_)
    ));
}

#[test]
fn a_bad_rx_buffer_returns_every_slot_as_an_error() {
    let (txp, rxp) = (OwnedPage::new(), OwnedPage::new());
    let mut fr = Front::new(&rxp, NETIF_RX_RING_ENTRY_SIZE);
    let mut q = queue(&txp, &rxp, FULL);
    let g = Guest::default();
    post_rx(&fr, &g, 8);
    // The second buffer is read-only: the guest's mistake.
    g.grant(1001, &[], false);
    let mut pkt = frame(false, 17, 6000);
    let out = q.deliver(&g, &VirtioNetHdr::default(), &mut pkt).unwrap();
    assert!(matches!(out, RxOutcome::Dropped(_)));
    q.publish_rx();
    let r = rx_rsps(&mut fr);
    assert_eq!(r.len(), 2);
    assert!(r
        .iter()
        .all(|r| r.status == NETIF_RSP_ERROR && r.flags == 0));
    // The next packet uses the next buffers.
    let mut small = frame(false, 17, 10);
    q.deliver(&g, &VirtioNetHdr::default(), &mut small).unwrap();
    q.publish_rx();
    let r = rx_rsps(&mut fr);
    assert_eq!((r[0].id, r[0].status as usize), (2, small.len()));
    assert_eq!(q.stats().rx_errors, 1);
}

#[test]
fn corrupt_rx_indices_are_an_error() {
    let (txp, rxp) = (OwnedPage::new(), OwnedPage::new());
    let _fr = Front::new(&rxp, NETIF_RX_RING_ENTRY_SIZE);
    let mut q = queue(&txp, &rxp, FULL);
    rxp.store_u32(REQ_PROD, 100_000);
    let mut pkt = frame(false, 17, 10);
    assert!(q
        .deliver(&Guest::default(), &VirtioNetHdr::default(), &mut pkt)
        .is_err());
}

/// A frontend that posts a new request for every one served.
struct Refill<'a> {
    front: &'a Front<'a>,
    len: u16,
    sent: usize,
}

impl TxSink for Refill<'_> {
    fn may_send(&mut self, _: usize) -> bool {
        true
    }
    fn send(&mut self, _: &VirtioNetHdr, _: &[u8]) -> std::io::Result<()> {
        self.sent += 1;
        let id = (self.sent % 256) as u16;
        self.front.push(&[txreq(5, 200, 0, id, self.len)]);
        Ok(())
    }
}

#[test]
fn a_guest_that_keeps_refilling_its_tx_ring_gets_a_budget_per_call() {
    let (txp, rxp) = (OwnedPage::new(), OwnedPage::new());
    let ft = Front::new(&txp, NETIF_TX_RING_ENTRY_SIZE);
    let _fr = Front::new(&rxp, NETIF_RX_RING_ENTRY_SIZE);
    let mut q = queue(&txp, &rxp, FULL);
    let g = Guest::default();
    let pkt = frame(false, 6, 100);
    let mut page = vec![0u8; 200];
    page.extend_from_slice(&pkt);
    g.grant(5, &page, false);
    ft.push(&[txreq(5, 200, 0, 0, pkt.len() as u16)]);
    let mut sink = Refill {
        front: &ft,
        len: pkt.len() as u16,
        sent: 0,
    };
    let out = q.service_tx(&g, &mut sink).unwrap();
    assert!(out.more, "the call must stop with work left");
    assert_eq!(sink.sent, TX_BUDGET);
    // The next call goes on where this one stopped.
    let out = q.service_tx(&g, &mut sink).unwrap();
    assert!(out.more);
    assert_eq!(sink.sent, 2 * TX_BUDGET);
}
