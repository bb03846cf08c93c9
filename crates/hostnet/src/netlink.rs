//! Link changes through rtnetlink: look a link up, bring it up, set its MTU
//! and MAC, make it a bridge port, create and delete bridges.
//!
//! The messages come from `netlink-packet-route` and travel over a plain
//! blocking `netlink-sys` socket, one request and its acknowledgement at a
//! time: a vif needs a handful of such requests when it is plugged, which
//! does not justify an async runtime in every monitor (what the `rtnetlink`
//! crate, built on the same two crates, would bring).

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::mac::Mac;

/// What went wrong talking to the kernel's link layer.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("netlink request ({what}) failed: {source}")]
    Request {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("malformed netlink answer to {what}: {detail}")]
    Malformed { what: String, detail: String },
    #[error("there is no network interface {0}")]
    NoSuchLink(String),
    #[error(
        "bridge {0} does not exist: create it with `ip link add {0} type bridge && ip link set {0} up` \
         (or name an existing bridge with the vif's `bridge=`)"
    )]
    NoBridge(String),
    #[error("{0} is not a bridge (vif `bridge=` must name a Linux bridge)")]
    NotABridge(String),
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfoSummary {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
    /// The bridge (or other controller) this link is a port of.
    pub controller: Option<u32>,
    /// `bridge`, `tun`, `veth`... when the link has a kind.
    pub kind: Option<String>,
}

/// A route netlink socket in the calling thread's network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    pub fn open() -> Result<Netlink, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends one request and collects the link messages of the answer
    /// until its acknowledgement (or the end of a dump).
    fn request(
        &mut self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<LinkMessage>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut buf = vec![0; req.header.length as usize];
        req.serialize(&mut buf);
        let failed = |source: io::Error| NetlinkError::Request {
            what: what.to_string(),
            source,
        };
        self.socket.send(&buf, 0).map_err(failed)?;

        let mut links = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(failed)?;
            let mut offset = 0;
            while offset < data.len() {
                let msg: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&data[offset..]).map_err(|e| {
                        NetlinkError::Malformed {
                            what: what.to_string(),
                            detail: e.to_string(),
                        }
                    })?;
                let len = msg.header.length as usize;
                if msg.header.sequence_number != self.seq {
                    // A late answer to an earlier request: not ours.
                } else {
                    match msg.payload {
                        NetlinkPayload::Error(e) => match e.code {
                            None => return Ok(links),
                            Some(_) => return Err(failed(e.to_io())),
                        },
                        NetlinkPayload::Done(_) => return Ok(links),
                        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                            links.push(l);
                            // A lone answer (no dump) ends with its ACK.
                        }
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                offset += len;
            }
        }
    }

    /// The link named `name`, if it exists.
    pub fn link(&mut self, name: &str) -> Result<Option<LinkInfoSummary>, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &format!("look up {name}"),
            RouteNetlinkMessage::GetLink(msg),
            NLM_F_ACK,
        ) {
            Ok(links) => Ok(links.into_iter().next().map(summary)),
            Err(NetlinkError::Request { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The link numbered `index`, if it exists.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<LinkInfoSummary>, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.request(
            &format!("look up link {index}"),
            RouteNetlinkMessage::GetLink(msg),
            NLM_F_ACK,
        ) {
            Ok(links) => Ok(links.into_iter().next().map(summary)),
            Err(NetlinkError::Request { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn index_of(&mut self, name: &str) -> Result<u32, NetlinkError> {
        self.link(name)?
            .map(|l| l.index)
            .ok_or_else(|| NetlinkError::NoSuchLink(name.to_string()))
    }

    /// Changes link `index`: the attributes given, and `up` if set.
    fn set(
        &mut self,
        what: &str,
        index: u32,
        up: Option<bool>,
        attributes: Vec<LinkAttribute>,
    ) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if let Some(up) = up {
            msg.header.change_mask = LinkFlags::Up;
            if up {
                msg.header.flags = LinkFlags::Up;
            }
        }
        msg.attributes = attributes;
        self.request(what, RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)?;
        Ok(())
    }

    pub fn set_up(&mut self, name: &str, up: bool) -> Result<(), NetlinkError> {
        let i = self.index_of(name)?;
        self.set(&format!("set {name} up={up}"), i, Some(up), vec![])
    }

    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        let i = self.index_of(name)?;
        self.set(
            &format!("set {name} mtu {mtu}"),
            i,
            None,
            vec![LinkAttribute::Mtu(mtu)],
        )
    }

    pub fn set_mac(&mut self, name: &str, mac: Mac) -> Result<(), NetlinkError> {
        let i = self.index_of(name)?;
        self.set(
            &format!("set {name} address {mac}"),
            i,
            None,
            vec![LinkAttribute::Address(mac.0.to_vec())],
        )
    }

    /// Checks that `bridge` exists and is a Linux bridge; its index.
    pub fn bridge_index(&mut self, bridge: &str) -> Result<u32, NetlinkError> {
        let b = self
            .link(bridge)?
            .ok_or_else(|| NetlinkError::NoBridge(bridge.to_string()))?;
        if b.kind.as_deref() != Some("bridge") {
            return Err(NetlinkError::NotABridge(bridge.to_string()));
        }
        Ok(b.index)
    }

    /// Makes `port` a port of `bridge` (`ip link set PORT master BRIDGE`).
    pub fn attach_to_bridge(&mut self, port: &str, bridge: &str) -> Result<(), NetlinkError> {
        let b = self.bridge_index(bridge)?;
        let p = self.index_of(port)?;
        self.set(
            &format!("add {port} to bridge {bridge}"),
            p,
            None,
            vec![LinkAttribute::Controller(b)],
        )
    }

    /// Takes `port` off its bridge (`ip link set PORT nomaster`).
    pub fn detach_from_bridge(&mut self, port: &str) -> Result<(), NetlinkError> {
        let p = self.index_of(port)?;
        self.set(
            &format!("take {port} off its bridge"),
            p,
            None,
            vec![LinkAttribute::Controller(0)],
        )
    }

    /// Creates bridge `name` and brings it up.
    pub fn create_bridge(&mut self, name: &str) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(
            &format!("create bridge {name}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        self.set_up(name, true)
    }

    /// Deletes link `name` (a bridge, a veth...).
    pub fn delete(&mut self, name: &str) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = self.index_of(name)?;
        self.request(
            &format!("delete {name}"),
            RouteNetlinkMessage::DelLink(msg),
            NLM_F_ACK,
        )?;
        Ok(())
    }
}

fn summary(l: LinkMessage) -> LinkInfoSummary {
    let mut s = LinkInfoSummary {
        index: l.header.index,
        name: String::new(),
        up: l.header.flags.contains(LinkFlags::Up),
        mtu: None,
        mac: None,
        controller: None,
        kind: None,
    };
    for a in l.attributes {
        match a {
            LinkAttribute::IfName(n) => s.name = n,
            LinkAttribute::Mtu(m) => s.mtu = Some(m),
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut m = [0; 6];
                m.copy_from_slice(&a);
                s.mac = Some(Mac(m));
            }
            LinkAttribute::Controller(c) if c != 0 => s.controller = Some(c),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        s.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    s
}
