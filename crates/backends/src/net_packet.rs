//! Packet metadata on the host side of a vif: the `virtio_net_hdr` a TAP
//! device (`IFF_VNET_HDR`) puts before each frame, and the header parsing
//! netback needs to turn netif's flags into it.
//!
//! netif says only "checksum blank" (`NETTXF_csum_blank`); a TAP wants to
//! know where the checksum starts and where it goes (`csum_start`,
//! `csum_offset`), and for GSO how long the headers are (`hdr_len`). Those
//! come from the Ethernet, IP and TCP/UDP headers, which the guest wrote:
//! every length and offset read here is checked against the frame.

/// `virtio_net_hdr.flags`: the checksum from `csum_start` must be filled in.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `virtio_net_hdr.flags`: the checksums were verified.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// Added to a TCP GSO type: the segments carry ECN (CWR) handling.
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;
/// Bytes of [`VirtioNetHdr`] on the wire (the TAP's default header size).
pub const VIRTIO_NET_HDR_LEN: usize = 10;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// `struct virtio_net_hdr` (little-endian, as on x86 and for a TAP with
/// `TUNSETVNETLE` or a native little-endian host).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Bytes of headers before the GSO payload.
    pub hdr_len: u16,
    /// Payload bytes per segment (GSO).
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VirtioNetHdr {
    /// The header as the TAP reads and writes it.
    pub fn to_bytes(&self) -> [u8; VIRTIO_NET_HDR_LEN] {
        let mut b = [0u8; VIRTIO_NET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// Reads a header; `None` if `b` is too short.
    pub fn from_bytes(b: &[u8]) -> Option<VirtioNetHdr> {
        if b.len() < VIRTIO_NET_HDR_LEN {
            return None;
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VirtioNetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// The GSO type without the ECN bit.
    pub fn gso_kind(&self) -> u8 {
        self.gso_type & !VIRTIO_NET_HDR_GSO_ECN
    }
}

/// Where a frame's transport header and checksum are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L4Info {
    /// Offset of the TCP/UDP header (`csum_start`).
    pub start: usize,
    /// Offset of the checksum field from `start` (`csum_offset`).
    pub csum_offset: usize,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub protocol: u8,
    /// IPv6 (else IPv4).
    pub ipv6: bool,
    /// Bytes of all headers up to the payload (TCP: with its options).
    pub hdr_len: usize,
}

/// Why a frame's headers cannot be used for checksum offload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("frame of {0} bytes is too short for its headers")]
    Short(usize),
    #[error("ethertype {0:#06x} carries no IPv4 or IPv6")]
    NotIp(u16),
    #[error("IP protocol {0} is neither TCP nor UDP")]
    NotTcpUdp(u8),
    #[error("IP header is malformed: {0}")]
    BadIp(&'static str),
    #[error("IP fragment: no transport header to checksum")]
    Fragment,
}

fn be16(f: &[u8], at: usize) -> Result<u16, ParseError> {
    f.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(ParseError::Short(f.len()))
}

fn byte(f: &[u8], at: usize) -> Result<u8, ParseError> {
    f.get(at).copied().ok_or(ParseError::Short(f.len()))
}

/// Finds the TCP or UDP header of an Ethernet frame (up to two VLAN tags,
/// IPv4 with options, IPv6 with extension headers).
pub fn parse_l4(f: &[u8]) -> Result<L4Info, ParseError> {
    let mut at = 12;
    let mut ethertype = be16(f, at)?;
    for _ in 0..2 {
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            at += 4;
            ethertype = be16(f, at)?;
        }
    }
    let l3 = at + 2;
    let (protocol, start, ipv6) = match ethertype {
        ETH_P_IP => {
            let vihl = byte(f, l3)?;
            if vihl >> 4 != 4 {
                return Err(ParseError::BadIp("IPv4 version field is not 4"));
            }
            let ihl = usize::from(vihl & 0xf) * 4;
            if ihl < 20 {
                return Err(ParseError::BadIp("IPv4 header shorter than 20 bytes"));
            }
            let frag = be16(f, l3 + 6)?;
            // More fragments, or a fragment offset: not the first and
            // only piece of the datagram.
            if frag & 0x3fff != 0 {
                return Err(ParseError::Fragment);
            }
            (byte(f, l3 + 9)?, l3 + ihl, false)
        }
        ETH_P_IPV6 => {
            if byte(f, l3)? >> 4 != 6 {
                return Err(ParseError::BadIp("IPv6 version field is not 6"));
            }
            let mut next = byte(f, l3 + 6)?;
            let mut at = l3 + 40;
            // Extension headers: hop-by-hop, routing, destination options,
            // authentication; a fragment header ends the search.
            for _ in 0..8 {
                match next {
                    0 | 43 | 60 => {
                        let len = (usize::from(byte(f, at + 1)?) + 1) * 8;
                        next = byte(f, at)?;
                        at += len;
                    }
                    51 => {
                        let len = (usize::from(byte(f, at + 1)?) + 2) * 4;
                        next = byte(f, at)?;
                        at += len;
                    }
                    44 => return Err(ParseError::Fragment),
                    _ => break,
                }
            }
            (next, at, true)
        }
        other => return Err(ParseError::NotIp(other)),
    };
    let (csum_offset, hdr_len) = match protocol {
        IPPROTO_TCP => {
            let doff = usize::from(byte(f, start + 12)? >> 4) * 4;
            if doff < 20 {
                return Err(ParseError::BadIp("TCP header shorter than 20 bytes"));
            }
            (16, start + doff)
        }
        IPPROTO_UDP => (6, start + 8),
        p => return Err(ParseError::NotTcpUdp(p)),
    };
    if hdr_len > f.len() {
        return Err(ParseError::Short(f.len()));
    }
    Ok(L4Info {
        start,
        csum_offset,
        protocol,
        ipv6,
        hdr_len,
    })
}

/// Fills in a partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`, Linux's
/// `CHECKSUM_PARTIAL`): the field already holds the pseudo-header sum,
/// so the one's complement of the sum from `start` to the end goes there.
/// For a peer that cannot take a blank checksum. False if out of range.
pub fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let field = match start.checked_add(offset) {
        Some(f) if f + 2 <= frame.len() => f,
        _ => return false,
    };
    let mut sum: u64 = 0;
    let mut chunks = frame[start..].chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let mut csum = !(sum as u16);
    // UDP sends a computed zero as all ones (zero means "no checksum");
    // TCP would accept either, and the complement of a non-zero sum
    // cannot be 0xffff, so this changes nothing else.
    if csum == 0 {
        csum = 0xffff;
    }
    frame[field..field + 2].copy_from_slice(&csum.to_be_bytes());
    true
}

/// A flow hash over the addresses and ports, to spread a vif's received
/// packets over its queues (the same flow always on the same queue).
pub fn flow_hash(f: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut mix = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    };
    match parse_l4(f) {
        Ok(l4) => {
            // IPv4 addresses are 12..20 of its header, IPv6 8..40.
            if let Some(ip) = ip_header_start(f) {
                let range = if l4.ipv6 {
                    ip + 8..ip + 40
                } else {
                    ip + 12..ip + 20
                };
                if let Some(a) = f.get(range) {
                    mix(a);
                }
            }
            mix(&[l4.protocol]);
            if let Some(p) = f.get(l4.start..l4.start + 4) {
                mix(p);
            }
        }
        Err(_) => mix(f.get(..ETH_HLEN).unwrap_or(f)),
    }
    h
}

fn ip_header_start(f: &[u8]) -> Option<usize> {
    let mut at = 12;
    let mut t = be16(f, at).ok()?;
    for _ in 0..2 {
        if t == ETH_P_8021Q || t == ETH_P_8021AD {
            at += 4;
            t = be16(f, at).ok()?;
        }
    }
    Some(at + 2)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An Ethernet frame with an IPv4 (or IPv6) header and a TCP or UDP
    /// header, then `payload` bytes.
    pub(crate) fn frame(ipv6: bool, protocol: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f[..6].copy_from_slice(&[0x00, 0x16, 0x3e, 1, 2, 3]);
        f[6..12].copy_from_slice(&[0x00, 0x16, 0x3e, 4, 5, 6]);
        let l4len = if protocol == IPPROTO_TCP { 20 } else { 8 };
        if ipv6 {
            f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&((l4len + payload) as u16).to_be_bytes());
            ip[6] = protocol;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&[0xfd; 16]);
            ip[24..40].copy_from_slice(&[0xfe; 16]);
            f.extend_from_slice(&ip);
        } else {
            f.extend_from_slice(&ETH_P_IP.to_be_bytes());
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + l4len + payload) as u16).to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = 64;
            ip[9] = protocol;
            ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
            ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
            f.extend_from_slice(&ip);
        }
        let mut l4 = vec![0u8; l4len];
        l4[0..2].copy_from_slice(&1234u16.to_be_bytes());
        l4[2..4].copy_from_slice(&80u16.to_be_bytes());
        if protocol == IPPROTO_TCP {
            l4[12] = 5 << 4;
        } else {
            l4[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        }
        f.extend_from_slice(&l4);
        f.extend((0..payload).map(|i| (i * 7) as u8));
        f
    }

    #[test]
    fn header_round_trips() {
        let h = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN,
            hdr_len: 86,
            gso_size: 1440,
            csum_start: 54,
            csum_offset: 16,
        };
        let b = h.to_bytes();
        assert_eq!(b[..4], [1, 0x84, 86, 0]);
        assert_eq!(VirtioNetHdr::from_bytes(&b), Some(h));
        assert_eq!(h.gso_kind(), VIRTIO_NET_HDR_GSO_TCPV6);
        assert_eq!(VirtioNetHdr::from_bytes(&b[..9]), None);
    }

    #[test]
    fn finds_tcp_and_udp_over_ipv4_and_ipv6() {
        let l4 = parse_l4(&frame(false, IPPROTO_TCP, 100)).unwrap();
        assert_eq!((l4.start, l4.csum_offset, l4.hdr_len), (34, 16, 54));
        let l4 = parse_l4(&frame(false, IPPROTO_UDP, 100)).unwrap();
        assert_eq!((l4.start, l4.csum_offset, l4.hdr_len), (34, 6, 42));
        let l4 = parse_l4(&frame(true, IPPROTO_TCP, 0)).unwrap();
        assert_eq!((l4.start, l4.hdr_len, l4.ipv6), (54, 74, true));
        // A VLAN tag moves everything by 4.
        let mut v = frame(false, IPPROTO_TCP, 10);
        v.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
        assert_eq!(parse_l4(&v).unwrap().start, 38);
        // IPv4 options.
        let mut o = frame(false, IPPROTO_UDP, 10);
        o[14] = 0x46;
        o.splice(34..34, [1, 1, 1, 1]);
        assert_eq!(parse_l4(&o).unwrap().start, 38);
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        let good = frame(false, IPPROTO_TCP, 10);
        for n in 0..good.len() {
            // Truncations either parse to something inside the frame or fail.
            if let Ok(l4) = parse_l4(&good[..n]) {
                assert!(l4.hdr_len <= n);
            }
        }
        let mut bad = good.clone();
        bad[14] = 0x41; // ihl 4
        assert!(parse_l4(&bad).is_err());
        let mut bad = good.clone();
        bad[20] = 0x20; // more fragments
        assert_eq!(parse_l4(&bad), Err(ParseError::Fragment));
        let mut bad = good.clone();
        bad[23] = 1; // ICMP
        assert_eq!(parse_l4(&bad), Err(ParseError::NotTcpUdp(1)));
        let mut bad = good.clone();
        bad[46] = 0x10; // TCP data offset 4
        assert!(parse_l4(&bad).is_err());
        let mut bad = good;
        bad[46] = 0xf0; // 60-byte TCP header in a short frame
        assert!(matches!(parse_l4(&bad), Err(ParseError::Short(_))));
        assert_eq!(
            parse_l4(&[0u8; 14]).unwrap_err(),
            ParseError::NotIp(0),
            "ethertype 0"
        );
        // An IPv6 extension header chain that runs off the end.
        let mut e = frame(true, 0, 0);
        e.truncate(54);
        e.extend_from_slice(&[0, 255]);
        assert!(parse_l4(&e).is_err());
        // Random bytes never panic.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let len = (x % 120) as usize;
            let mut f = vec![0u8; len];
            for b in f.iter_mut() {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (x >> 16) as u8;
            }
            if len > 13 {
                f[12] = 0x08;
                f[13] = if x & 1 == 0 { 0x00 } else { 0xdd };
                if x & 1 == 1 {
                    f[12] = 0x86;
                }
            }
            let _ = parse_l4(&f);
            let _ = flow_hash(&f);
        }
    }

    /// The checksum the receiver verifies: over the pseudo-header and the
    /// segment, it must come to 0xffff.
    fn verify_tcp4(f: &[u8]) -> bool {
        let ip = &f[14..34];
        let seg = &f[34..];
        let mut sum: u64 = 0;
        for c in ip[12..20].chunks(2) {
            sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
        }
        sum += u64::from(ip[9]) + seg.len() as u64;
        for c in seg.chunks(2) {
            let hi = u64::from(c[0]) << 8;
            sum += hi + c.get(1).map_or(0, |&b| u64::from(b));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    #[test]
    fn completes_a_partial_checksum() {
        for payload in [0, 1, 99, 1000] {
            let mut f = frame(false, IPPROTO_TCP, payload);
            // Linux leaves the pseudo-header sum (not complemented) there.
            let len = (f.len() - 34) as u64;
            let mut ps: u64 = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + len;
            while ps > 0xffff {
                ps = (ps & 0xffff) + (ps >> 16);
            }
            f[50..52].copy_from_slice(&(ps as u16).to_be_bytes());
            assert!(complete_checksum(&mut f, 34, 16));
            assert!(verify_tcp4(&f), "payload {payload}");
        }
        let mut short = [0u8; 20];
        assert!(!complete_checksum(&mut short, 10, 16));
        assert!(!complete_checksum(&mut short, usize::MAX, 16));
    }

    #[test]
    fn flows_hash_stably_and_apart() {
        let a = frame(false, IPPROTO_TCP, 10);
        let mut b = a.clone();
        b[35] ^= 1; // other source port
        assert_eq!(flow_hash(&a), flow_hash(&frame(false, IPPROTO_TCP, 500)));
        assert_ne!(flow_hash(&a), flow_hash(&b));
    }
}
