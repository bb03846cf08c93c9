//! The xenstore wire protocol of Xen's `io/xs_wire.h`.
//!
//! Every message in either direction is a 16-byte header of four
//! little-endian `u32`s — `type`, `req_id`, `tx_id`, `len` — followed by `len`
//! bytes of payload, at most [`PAYLOAD_MAX`]. Payloads are NUL-terminated
//! strings, except WRITE's value, which is the raw rest after the path's NUL.
//! Replies echo `type`, `req_id` and `tx_id`; failures are `ERROR` messages
//! carrying the errno name with a trailing NUL.
//!
//! The constants are defined here rather than taken from another crate so the
//! store stands alone.

use crate::error::XsError;

/// Size of the message header.
pub const HEADER_LEN: usize = 16;
/// Largest payload allowed in either direction (`XENSTORE_PAYLOAD_MAX`).
pub const PAYLOAD_MAX: usize = 4096;
/// Longest absolute path (`XENSTORE_ABS_PATH_MAX`).
pub const ABS_PATH_MAX: usize = 3072;
/// Longest path below a domain's home, for unprivileged callers
/// (`XENSTORE_REL_PATH_MAX`).
pub const REL_PATH_MAX: usize = 2048;

/// Message types (`enum xsd_sockmsg_type`), from `xen-abi`, where they are
/// checked against Xen's header.
pub use xen_abi::XsSockmsgType as MsgType;

/// The message header (`struct xsd_sockmsg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Raw message type; see [`MsgType`].
    pub ty: u32,
    /// Request identifier, echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 outside a transaction.
    pub tx_id: u32,
    /// Payload length.
    pub len: u32,
}

impl Header {
    /// Parses a header from its 16 wire bytes.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            ty: word(0),
            req_id: word(4),
            tx_id: word(8),
            len: word(12),
        }
    }

    /// The 16 wire bytes of this header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        for (i, v) in [self.ty, self.req_id, self.tx_id, self.len]
            .into_iter()
            .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }
}

/// A whole message: header fields plus payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Raw message type (kept raw so unknown types can be answered).
    pub ty: u32,
    /// Request identifier.
    pub req_id: u32,
    /// Transaction id.
    pub tx_id: u32,
    /// Payload, at most [`PAYLOAD_MAX`] bytes when sent.
    pub payload: Vec<u8>,
}

impl Message {
    /// A message with the given fields.
    pub fn new(ty: MsgType, req_id: u32, tx_id: u32, payload: impl Into<Vec<u8>>) -> Message {
        Message {
            ty: ty as u32,
            req_id,
            tx_id,
            payload: payload.into(),
        }
    }

    /// A request whose payload is the given strings, each NUL-terminated.
    pub fn request(ty: MsgType, req_id: u32, tx_id: u32, strings: &[&[u8]]) -> Message {
        Message::new(ty, req_id, tx_id, join_strings(strings))
    }

    /// The type, if known.
    pub fn msg_type(&self) -> Option<MsgType> {
        MsgType::try_from(self.ty).ok()
    }

    /// A reply to `self` of the same type carrying `payload`.
    pub fn reply(&self, payload: impl Into<Vec<u8>>) -> Message {
        Message {
            ty: self.ty,
            req_id: self.req_id,
            tx_id: self.tx_id,
            payload: payload.into(),
        }
    }

    /// The `OK\0` acknowledgement to `self`.
    pub fn ack(&self) -> Message {
        self.reply(&b"OK\0"[..])
    }

    /// An `ERROR` reply to `self`: the errno name with a trailing NUL.
    pub fn error_reply(&self, err: XsError) -> Message {
        let mut payload = err.name().as_bytes().to_vec();
        payload.push(0);
        Message {
            ty: MsgType::Error as u32,
            req_id: self.req_id,
            tx_id: self.tx_id,
            payload,
        }
    }

    /// A WATCH_EVENT for `path` and `token` (`req_id` and `tx_id` are 0).
    pub fn watch_event(path: &str, token: &str) -> Message {
        Message::request(
            MsgType::WatchEvent,
            0,
            0,
            &[path.as_bytes(), token.as_bytes()],
        )
    }

    /// If this is an `ERROR` message, the error it names.
    pub fn error(&self) -> Option<XsError> {
        if self.ty != MsgType::Error as u32 {
            return None;
        }
        let name = self.payload.strip_suffix(&[0]).unwrap_or(&self.payload);
        XsError::from_name(std::str::from_utf8(name).ok()?)
    }

    /// The header for this message.
    pub fn header(&self) -> Header {
        Header {
            ty: self.ty,
            req_id: self.req_id,
            tx_id: self.tx_id,
            len: self.payload.len() as u32,
        }
    }

    /// Appends the wire form (header and payload) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header().to_bytes());
        out.extend_from_slice(&self.payload);
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        self.encode_into(&mut out);
        out
    }
}

/// Joins strings into a payload, each followed by a NUL.
pub fn join_strings(strings: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in strings {
        out.extend_from_slice(s);
        out.push(0);
    }
    out
}

/// Splits a payload made only of NUL-terminated strings. `None` if the
/// payload does not end in a NUL (an empty payload is zero strings).
pub fn split_strings(payload: &[u8]) -> Option<Vec<&[u8]>> {
    let body = match payload.split_last() {
        None => return Some(Vec::new()),
        Some((0, body)) => body,
        Some(_) => return None,
    };
    Some(body.split(|&b| b == 0).collect())
}

/// The single argument of a payload that must hold exactly one string: one
/// NUL, at the end (xenstored's `onearg`).
pub fn one_arg(payload: &[u8]) -> Option<&[u8]> {
    let (last, body) = payload.split_last()?;
    (*last == 0 && !body.contains(&0)).then_some(body)
}

/// Why the byte stream can no longer be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// the peer announced a {0}-byte payload, over the 4096-byte limit
    #[error("payload of {0} bytes exceeds XENSTORE_PAYLOAD_MAX")]
    PayloadTooLong(u32),
}

/// Reassembles messages from a byte stream that may arrive in pieces.
///
/// An over-long payload leaves the stream impossible to resynchronise;
/// xenstored drops such a connection, and so should the caller.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not yet form a whole message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many more bytes are needed before [`Decoder::next_message`] can
    /// make progress (at least 1).
    pub fn wanted(&self) -> usize {
        if self.buf.len() < HEADER_LEN {
            return HEADER_LEN - self.buf.len();
        }
        let hdr = self.header().expect("have a header");
        (HEADER_LEN + (hdr.len as usize).min(PAYLOAD_MAX))
            .saturating_sub(self.buf.len())
            .max(1)
    }

    fn header(&self) -> Option<Header> {
        let bytes: &[u8; HEADER_LEN] = self.buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Header::parse(bytes))
    }

    /// The next whole message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        let Some(hdr) = self.header() else {
            return Ok(None);
        };
        if hdr.len as usize > PAYLOAD_MAX {
            return Err(WireError::PayloadTooLong(hdr.len));
        }
        let total = HEADER_LEN + hdr.len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let payload = self.buf[HEADER_LEN..total].to_vec();
        self.buf.drain(..total);
        Ok(Some(Message {
            ty: hdr.ty,
            req_id: hdr.req_id,
            tx_id: hdr.tx_id,
            payload,
        }))
    }
}
