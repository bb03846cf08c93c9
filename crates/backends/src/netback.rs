//! The network backend's ring engine for one queue of a vif: takes packets
//! the guest transmits off the tx ring (`io/netif.h`) and hands them to the
//! host side, and copies packets from the host into the buffers the guest
//! posted on the rx ring ("rx-copy").
//!
//! Transmit (guest → host): a packet is a chain of requests, one per
//! granted page piece (`NETTXF_more_data`), the first giving the total size,
//! optionally followed by extra-info slots (`NETTXF_extra_info`: GSO). The
//! data is copied out of the granted pages, and the checksum and GSO flags
//! become a [`VirtioNetHdr`] (which needs the checksum's position: parsed
//! from the headers). Every request gets a response: the data slots the
//! packet's status, the extra slots `NETIF_RSP_NULL`.
//!
//! Receive (host → guest): a packet fills whole rx buffers from offset 0
//! (more than one when it exceeds a page, `NETRXF_more_data`); a GSO
//! packet's extra info takes the slot after the first, as Linux's
//! netfront expects. Rx responses sit at the same ring positions as the
//! requests they answer, since netfront finds its buffers by position.
//!
//! Everything in the rings is guest-controlled. A bad packet (a grant the
//! guest did not give, a piece beyond its page, sizes that do not add up,
//! too many slots) gets `NETIF_RSP_ERROR` and a log line; only a ring that
//! cannot be parsed any more (corrupt indices, a chain that runs past the
//! requests produced, an invalid extra-info type) is an error that stops
//! the queue, as Linux's netback does with `xenvif_fatal_tx_err`.

use vm_memory::ByteValued;
use xen_abi::io::netif::*;

use crate::blkback::GrantedPages;
use crate::io_ring::{BackRing, RingIndexError};
use crate::net_packet::{
    complete_checksum, parse_l4, VirtioNetHdr, VIRTIO_NET_HDR_F_DATA_VALID,
    VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
};

const PAGE: usize = 4096;
const ETH_HLEN: usize = 14;
/// Data slots per packet we accept and produce (`XEN_NETIF_NR_SLOTS_MIN`,
/// Linux netback's `max_skb_slots`); more on tx is dropped.
pub const MAX_SLOTS: usize = XEN_NETIF_NR_SLOTS_MIN;
/// A tx chain this long is no packet at all (Linux's `fatal_skb_slots`).
pub const FATAL_SLOTS: usize = 20;
/// The largest frame we hand to the guest: a 64 KiB GSO packet and its
/// headers.
pub const MAX_RX_FRAME: usize = MAX_SLOTS * PAGE;

/// What the frontend said it can take (its xenstore `feature-*` nodes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// `feature-sg`: packets over several rx buffers.
    pub sg: bool,
    /// `feature-gso-tcpv4`: TCPv4 GSO packets on rx.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`: TCPv6 GSO packets on rx.
    pub gso_tcpv6: bool,
    /// Not `feature-no-csum-offload`: IPv4 packets with a blank checksum.
    pub ip_csum: bool,
    /// `feature-ipv6-csum-offload`: IPv6 packets with a blank checksum.
    pub ipv6_csum: bool,
}

/// Counters of one queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Tx packets the guest got `NETIF_RSP_ERROR` for.
    pub tx_errors: u64,
    /// Tx packets the host side did not take.
    pub tx_dropped: u64,
    pub tx_gso: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Rx packets that could not be written to the guest's buffers.
    pub rx_errors: u64,
    /// Rx packets not given to the guest (too big, unsupported offload).
    pub rx_dropped: u64,
    pub rx_gso: u64,
}

/// The queue's rings cannot be served any more: disconnect it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetbackError {
    #[error(transparent)]
    Ring(#[from] RingIndexError),
    #[error("tx ring: {0}")]
    Protocol(String),
}

/// Where transmitted packets go (the TAP device).
pub trait TxSink {
    /// Whether a packet of `len` bytes may go now; false (a rate limit)
    /// leaves it on the ring until the queue is served again.
    fn may_send(&mut self, _len: usize) -> bool {
        true
    }
    /// Sends one frame with its offload header.
    fn send(&mut self, hdr: &VirtioNetHdr, frame: &[u8]) -> std::io::Result<()>;
}

/// What [`NetQueue::service_tx`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxOutcome {
    /// Notify the frontend (responses it waits for).
    pub notify: bool,
    /// [`TxSink::may_send`] refused a packet: serve the ring again later
    /// (no notification from the guest will come for it).
    pub throttled: bool,
    /// The call's budget ran out with requests left: serve the ring again
    /// soon (after letting go of whatever lock the caller holds).
    pub more: bool,
}

/// Packets one [`NetQueue::service_tx`] call sends at most: a guest that
/// keeps refilling its ring must not keep the caller (and its locks) busy
/// for ever.
pub const TX_BUDGET: usize = 256;

/// What became of a packet for the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RxOutcome {
    /// In the guest's buffers (published by [`NetQueue::publish_rx`]).
    Delivered,
    /// Not enough buffers posted: keep the packet and retry when the guest
    /// notifies (it was asked to).
    NoRoom,
    /// Gone, and why.
    Dropped(String),
}

/// One queue: a tx ring and an rx ring with their engine state.
pub struct NetQueue<P> {
    tx: BackRing<P>,
    rx: BackRing<P>,
    features: Features,
    stats: NetStats,
    buf: Vec<u8>,
    name: String,
    /// Packets refused for the guest's own errors so far (logged sparingly).
    problems: u64,
}

/// Reads a ring entry type from the first bytes of an entry (copied: the
/// bytes need not be aligned for `T`).
fn entry<T: ByteValued + Default>(bytes: &[u8]) -> T {
    let mut v = T::default();
    v.as_mut_slice().copy_from_slice(&bytes[..size_of::<T>()]);
    v
}

impl<P: xenstore::ring::SharedPage> NetQueue<P> {
    /// Serves the rings on `tx` and `rx` for a frontend with `features`;
    /// `name` prefixes log lines.
    pub fn new(tx: P, rx: P, features: Features, name: String) -> NetQueue<P> {
        NetQueue {
            tx: BackRing::attach(tx, NETIF_TX_RING_ENTRY_SIZE),
            rx: BackRing::attach(rx, NETIF_RX_RING_ENTRY_SIZE),
            features,
            stats: NetStats::default(),
            buf: Vec::with_capacity(65536),
            name,
            problems: 0,
        }
    }

    pub fn stats(&self) -> NetStats {
        self.stats
    }

    pub fn features(&self) -> Features {
        self.features
    }

    /// Sends every complete packet on the tx ring to `sink` and answers
    /// them. An error means the ring is unusable: stop serving it.
    pub fn service_tx(
        &mut self,
        grants: &dyn GrantedPages,
        sink: &mut dyn TxSink,
    ) -> Result<TxOutcome, NetbackError> {
        let mut out = TxOutcome::default();
        let mut budget = TX_BUDGET;
        loop {
            while self.tx.pending_requests()? > 0 {
                if budget == 0 {
                    out.more = true;
                    out.notify |= self.tx.publish_responses();
                    return Ok(out);
                }
                budget -= 1;
                if !self.tx_one(grants, sink)? {
                    out.throttled = true;
                    out.notify |= self.tx.publish_responses();
                    return Ok(out);
                }
            }
            out.notify |= self.tx.publish_responses();
            if !self.tx.final_check_for_requests()? {
                return Ok(out);
            }
        }
    }

    /// Logs a packet the guest got wrong: the first ten, then only the
    /// 16th, 32nd, 64th, ... (a guest must not fill the host's disk with
    /// its domain log).
    fn problem(&mut self, what: std::fmt::Arguments) {
        self.problems += 1;
        let n = self.problems;
        if n <= 10 || n.is_power_of_two() {
            tracing::warn!("{}: {what} ({n} bad packets so far)", self.name);
        }
    }

    fn fatal(&self, why: String) -> NetbackError {
        tracing::warn!("{}: {why}; queue stopped", self.name);
        NetbackError::Protocol(why)
    }

    /// Takes one packet off the tx ring; `Ok(false)` if the sink refused
    /// it for now (nothing consumed).
    fn tx_one(
        &mut self,
        grants: &dyn GrantedPages,
        sink: &mut dyn TxSink,
    ) -> Result<bool, NetbackError> {
        let pending = self.tx.pending_requests()?;
        let mut raw = [0u8; NETIF_TX_RING_ENTRY_SIZE];
        self.tx.peek_request(0, &mut raw);
        let first: NetifTxRequest = entry(&raw);
        let mut at = 1u32;
        let mut gso: Option<NetifExtraInfo> = None;
        let mut extras = 0u32;
        if first.flags & NETTXF_EXTRA_INFO != 0 {
            loop {
                if at >= pending {
                    return Err(self.fatal(format!(
                        "packet {} announces extra info that was not produced",
                        first.id
                    )));
                }
                self.tx.peek_request(at, &mut raw);
                at += 1;
                extras += 1;
                let e: NetifExtraInfo = entry(&raw);
                if e.type_ == XEN_NETIF_EXTRA_TYPE_NONE || e.type_ >= XEN_NETIF_EXTRA_TYPE_MAX {
                    return Err(self.fatal(format!("invalid extra info type {}", e.type_)));
                }
                if e.type_ == XEN_NETIF_EXTRA_TYPE_GSO {
                    gso = Some(e);
                }
                if e.flags & XEN_NETIF_EXTRA_FLAG_MORE == 0 {
                    break;
                }
                if extras >= u32::from(XEN_NETIF_EXTRA_TYPE_MAX) {
                    return Err(self.fatal("endless extra info chain".into()));
                }
            }
        }
        let mut slots = vec![first];
        let mut more = first.flags & NETTXF_MORE_DATA != 0;
        while more {
            if slots.len() >= FATAL_SLOTS {
                return Err(self.fatal(format!(
                    "packet {} spans more than {FATAL_SLOTS} slots",
                    first.id
                )));
            }
            if at >= pending {
                return Err(self.fatal(format!(
                    "packet {} continues beyond the requests produced",
                    first.id
                )));
            }
            self.tx.peek_request(at, &mut raw);
            at += 1;
            let r: NetifTxRequest = entry(&raw);
            more = r.flags & NETTXF_MORE_DATA != 0;
            slots.push(r);
        }
        if !sink.may_send(usize::from(first.size)) {
            return Ok(false);
        }
        self.tx.consume(at);
        let status = match self.gather_tx(&slots, gso.as_ref(), grants) {
            Ok(hdr) => match sink.send(&hdr, &self.buf) {
                Ok(()) => {
                    self.stats.tx_packets += 1;
                    self.stats.tx_bytes += self.buf.len() as u64;
                    if hdr.gso_type != VIRTIO_NET_HDR_GSO_NONE {
                        self.stats.tx_gso += 1;
                    }
                    NETIF_RSP_OKAY
                }
                Err(e) => {
                    self.stats.tx_dropped += 1;
                    tracing::debug!("{}: host side refused a packet: {e}", self.name);
                    NETIF_RSP_DROPPED
                }
            },
            Err(why) => {
                self.stats.tx_errors += 1;
                self.problem(format_args!("tx packet {}: {why}", first.id));
                NETIF_RSP_ERROR
            }
        };
        self.respond_tx(first.id, status);
        for _ in 0..extras {
            self.respond_tx(0, NETIF_RSP_NULL);
        }
        for s in &slots[1..] {
            self.respond_tx(s.id, status);
        }
        Ok(true)
    }

    fn respond_tx(&mut self, id: u16, status: i16) {
        let rsp = NetifTxResponse { id, status };
        self.tx.push_response(rsp.as_slice());
    }

    /// Checks a packet's slots, copies its data into `self.buf` and makes
    /// its offload header.
    fn gather_tx(
        &mut self,
        slots: &[NetifTxRequest],
        gso: Option<&NetifExtraInfo>,
        grants: &dyn GrantedPages,
    ) -> Result<VirtioNetHdr, String> {
        if slots.len() > MAX_SLOTS {
            return Err(format!("{} slots (at most {MAX_SLOTS})", slots.len()));
        }
        let total = usize::from(slots[0].size);
        let rest: usize = slots[1..].iter().map(|s| usize::from(s.size)).sum();
        if rest > total {
            return Err(format!(
                "the slots after the first hold {rest} bytes, more than the packet's {total}"
            ));
        }
        if total < ETH_HLEN {
            return Err(format!(
                "{total}-byte packet is shorter than an Ethernet header"
            ));
        }
        self.buf.clear();
        self.buf.resize(total, 0);
        let mut at = 0;
        for (i, s) in slots.iter().enumerate() {
            let len = if i == 0 {
                total - rest
            } else {
                usize::from(s.size)
            };
            let off = usize::from(s.offset);
            if off + len > PAGE {
                return Err(format!(
                    "slot {i}: {len} bytes at offset {off} run past the page"
                ));
            }
            grants
                .read_granted(s.gref, off, &mut self.buf[at..at + len])
                .map_err(|e| format!("slot {i}: {e}"))?;
            at += len;
        }
        let flags = slots[0].flags;
        let mut hdr = VirtioNetHdr::default();
        if flags & NETTXF_CSUM_BLANK != 0 {
            let l4 = parse_l4(&self.buf).map_err(|e| format!("blank checksum, but {e}"))?;
            hdr.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
            hdr.csum_start = l4.start as u16;
            hdr.csum_offset = l4.csum_offset as u16;
            if let Some(g) = gso {
                let size = u16::from_le_bytes([g.u[0], g.u[1]]);
                let kind = g.u[2];
                let (want_v6, vtype) = match kind {
                    XEN_NETIF_GSO_TYPE_TCPV4 => (false, VIRTIO_NET_HDR_GSO_TCPV4),
                    XEN_NETIF_GSO_TYPE_TCPV6 => (true, VIRTIO_NET_HDR_GSO_TCPV6),
                    t => return Err(format!("GSO type {t}")),
                };
                if size == 0 {
                    return Err("GSO size 0".into());
                }
                if l4.protocol != 6 || l4.ipv6 != want_v6 {
                    return Err(format!(
                        "GSO type {kind} on a packet that is not TCP over IPv{}",
                        if want_v6 { 6 } else { 4 }
                    ));
                }
                hdr.gso_type = vtype;
                hdr.gso_size = size;
                hdr.hdr_len = l4.hdr_len as u16;
            }
        } else if gso.is_some() {
            return Err("GSO without a blank (partial) checksum".into());
        } else if flags & NETTXF_DATA_VALIDATED != 0 {
            hdr.flags = VIRTIO_NET_HDR_F_DATA_VALID;
        }
        Ok(hdr)
    }

    /// Copies one packet from the host into the guest's rx buffers (not
    /// yet published). `frame` may get its checksum filled in.
    pub fn deliver(
        &mut self,
        grants: &dyn GrantedPages,
        hdr: &VirtioNetHdr,
        frame: &mut [u8],
    ) -> Result<RxOutcome, NetbackError> {
        let (flags, gso) = match self.rx_meta(hdr, frame) {
            Ok(m) => m,
            Err(why) => {
                self.stats.rx_dropped += 1;
                tracing::debug!("{}: rx packet dropped: {why}", self.name);
                return Ok(RxOutcome::Dropped(why));
            }
        };
        let slots = frame.len().div_ceil(PAGE);
        let needed = (slots + usize::from(gso.is_some())) as u32;
        if self.rx.pending_requests()? < needed && self.rx.request_notify()? < needed {
            return Ok(RxOutcome::NoRoom);
        }
        let mut raw = [0u8; NETIF_RX_RING_ENTRY_SIZE];
        let mut reqs = Vec::with_capacity(needed as usize);
        for i in 0..needed {
            self.rx.peek_request(i, &mut raw);
            reqs.push(entry::<NetifRxRequest>(&raw));
        }
        self.rx.consume(needed);
        // The data slots: the first request, and those after the extra.
        let data: Vec<NetifRxRequest> = reqs
            .iter()
            .enumerate()
            .filter(|(i, _)| !(gso.is_some() && *i == 1))
            .map(|(_, r)| *r)
            .collect();
        let mut failed = None;
        for (i, (r, chunk)) in data.iter().zip(frame.chunks(PAGE)).enumerate() {
            if let Err(e) = grants.write_granted(r.gref, 0, chunk) {
                failed = Some(format!("buffer {i} (grant {}): {e}", r.gref));
                break;
            }
        }
        if let Some(why) = failed {
            // Each buffer comes back as a failed one-slot packet: the
            // frontend recycles it.
            for r in &reqs {
                self.respond_rx(r.id, 0, NETIF_RSP_ERROR);
            }
            self.stats.rx_errors += 1;
            self.problem(format_args!("rx packet: {why}"));
            return Ok(RxOutcome::Dropped(why));
        }
        let mut chunks = frame.chunks(PAGE).map(|c| c.len() as i16);
        let mut data = data.iter();
        let more = |last: bool| if last { 0 } else { NETRXF_MORE_DATA };
        let (first, len0) = (data.next(), chunks.next());
        if let (Some(r), Some(len)) = (first, len0) {
            let mut f = flags | more(slots == 1);
            if gso.is_some() {
                f |= NETRXF_EXTRA_INFO;
            }
            self.respond_rx(r.id, f, len);
        }
        if let Some(g) = gso {
            self.rx.push_response(g.as_slice());
        }
        for (n, (r, len)) in data.zip(chunks).enumerate() {
            self.respond_rx(r.id, more(n + 2 == slots), len);
        }
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += frame.len() as u64;
        if gso.is_some() {
            self.stats.rx_gso += 1;
        }
        Ok(RxOutcome::Delivered)
    }

    fn respond_rx(&mut self, id: u16, flags: u16, status: i16) {
        let rsp = NetifRxResponse {
            id,
            offset: 0,
            flags,
            status,
        };
        self.rx.push_response(rsp.as_slice());
    }

    /// The first slot's flags and the GSO extra info for a packet, or why
    /// the guest cannot take it.
    fn rx_meta(
        &self,
        hdr: &VirtioNetHdr,
        frame: &mut [u8],
    ) -> Result<(u16, Option<NetifExtraInfo>), String> {
        let f = self.features;
        if frame.len() < ETH_HLEN {
            return Err(format!("{}-byte frame", frame.len()));
        }
        if frame.len() > MAX_RX_FRAME {
            return Err(format!("{}-byte frame", frame.len()));
        }
        if frame.len() > PAGE && !f.sg {
            return Err(format!(
                "{}-byte frame for a frontend without scatter-gather",
                frame.len()
            ));
        }
        let gso = match hdr.gso_kind() {
            VIRTIO_NET_HDR_GSO_NONE => None,
            VIRTIO_NET_HDR_GSO_TCPV4 if f.gso_tcpv4 => Some(XEN_NETIF_GSO_TYPE_TCPV4),
            VIRTIO_NET_HDR_GSO_TCPV6 if f.gso_tcpv6 => Some(XEN_NETIF_GSO_TYPE_TCPV6),
            t => return Err(format!("GSO type {t} the frontend cannot take")),
        };
        let mut flags = 0;
        if hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
            let v6 = parse_l4(frame).map(|l| l.ipv6).unwrap_or(false);
            let blank_ok = if v6 { f.ipv6_csum } else { f.ip_csum };
            if blank_ok {
                flags |= NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED;
            } else if gso.is_some() {
                return Err("GSO packet for a frontend without checksum offload".into());
            } else if complete_checksum(
                frame,
                usize::from(hdr.csum_start),
                usize::from(hdr.csum_offset),
            ) {
                flags |= NETRXF_DATA_VALIDATED;
            } else {
                return Err("checksum position outside the frame".into());
            }
        } else if hdr.flags & VIRTIO_NET_HDR_F_DATA_VALID != 0 {
            flags |= NETRXF_DATA_VALIDATED;
        }
        let extra = match gso {
            None => None,
            Some(kind) => {
                if hdr.gso_size == 0 {
                    return Err("GSO size 0".into());
                }
                let s = hdr.gso_size.to_le_bytes();
                Some(NetifExtraInfo {
                    type_: XEN_NETIF_EXTRA_TYPE_GSO,
                    flags: 0,
                    u: [s[0], s[1], kind, 0, 0, 0],
                    ..Default::default()
                })
            }
        };
        Ok((flags, extra))
    }

    /// Publishes the rx responses written so far; whether to notify.
    pub fn publish_rx(&mut self) -> bool {
        self.rx.publish_responses()
    }

    /// Whether the guest posted buffers beyond those we used (a packet
    /// waiting for room can be retried).
    pub fn rx_buffers(&self) -> Result<u32, NetbackError> {
        Ok(self.rx.pending_requests()?)
    }
}

#[cfg(test)]
mod tests;
