//! The network device protocol (`xen/io/netif.h`) between xen-netfront and
//! a network backend: a transmit ring and a receive ring, one page each.

use crate::grant_table::GrantRef;
use crate::io::ring::ring_size;

/// Minimum number of slots a backend must accept for one packet.
pub const XEN_NETIF_NR_SLOTS_MIN: usize = 18;
/// Largest packet a single `tx` request chain can describe.
pub const XEN_NETIF_MAX_TX_SIZE: u32 = 0xFFFF;

// Transmit request flags (`NetifTxRequest::flags`).
/// The protocol checksum field is blank (checksum offload).
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// The packet data has been validated against the protocol checksum.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// The packet continues in the next request.
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// A [`NetifExtraInfo`] follows in the next slot.
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

// Receive response flags (`NetifRxResponse::flags`).
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
/// The GSO prefix descriptor precedes the packet.
pub const NETRXF_GSO_PREFIX: u16 = 1 << 4;

// Extra info types and flags.
pub const XEN_NETIF_EXTRA_TYPE_NONE: u8 = 0;
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;
/// Another extra info slot follows.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;

// GSO types (`gso.type`).
pub const XEN_NETIF_GSO_TYPE_NONE: u8 = 0;
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

// Response statuses.
pub const NETIF_RSP_DROPPED: i16 = -2;
pub const NETIF_RSP_ERROR: i16 = -1;
pub const NETIF_RSP_OKAY: i16 = 0;
/// No response: used for the extra-info slots of a tx request chain.
pub const NETIF_RSP_NULL: i16 = 1;

// Control ring.
pub const XEN_NETIF_CTRL_TYPE_INVALID: u16 = 0;
pub const XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS: u16 = 1;
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS: u16 = 2;
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_KEY: u16 = 3;
pub const XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE: u16 = 4;
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE: u16 = 5;
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING: u16 = 6;
pub const XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM: u16 = 7;
pub const XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE: u16 = 8;
pub const XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING: u16 = 9;
pub const XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING: u16 = 10;
pub const XEN_NETIF_CTRL_STATUS_SUCCESS: u32 = 0;
pub const XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED: u32 = 1;
pub const XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER: u32 = 2;
pub const XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW: u32 = 3;
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV4: u32 = 1 << 0;
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP: u32 = 1 << 1;
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV6: u32 = 1 << 2;
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP: u32 = 1 << 3;
pub const XEN_NETIF_CTRL_HASH_ALGORITHM_NONE: u32 = 0;
pub const XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ: u32 = 1;
pub const XEN_NETIF_CTRLF_GREF_READONLY: u16 = 1 << 0;

pod!(
    /// `struct netif_tx_request`: one slot of a packet to transmit.
    NetifTxRequest, 12, {
        /// Grant of the page holding the data.
        gref: GrantRef,
        /// Offset of the data within the page.
        offset: u16,
        /// `NETTXF_*`.
        flags: u16,
        /// Echoed in the response.
        id: u16,
        /// First slot: the whole packet's size; later slots: this slot's.
        size: u16,
    }
);

pod!(
    /// `struct netif_extra_info` (8 bytes). `u` is the C union, raw:
    /// - `gso`: `size` = `u[0..2]` (LE u16), `type` = `u[2]`, `pad` = `u[3]`,
    ///   `features` = `u[4..6]`;
    /// - `mcast`: `addr` = `u[0..6]`;
    /// - `hash`: `type` = `u[0]`, `algorithm` = `u[1]`, `value` = `u[2..6]`.
    NetifExtraInfo, 8, {
        /// Gives the union the C alignment (2).
        _align: [u16; 0],
        /// `XEN_NETIF_EXTRA_TYPE_*` (`type` in C).
        type_: u8,
        /// `XEN_NETIF_EXTRA_FLAG_*`.
        flags: u8,
        u: [u8; 6],
    }
);

pod!(
    /// `struct netif_tx_response`.
    NetifTxResponse, 4, {
        id: u16,
        /// `NETIF_RSP_*`.
        status: i16,
    }
);

pod!(
    /// `struct netif_rx_request`: a granted page for received data.
    NetifRxRequest, 8, {
        /// Echoed in the response.
        id: u16,
        pad: u16,
        gref: GrantRef,
    }
);

pod!(
    /// `struct netif_rx_response`.
    NetifRxResponse, 8, {
        id: u16,
        /// Offset of the data in the page.
        offset: u16,
        /// `NETRXF_*`.
        flags: u16,
        /// Negative: `NETIF_RSP_*`; else the number of bytes received.
        status: i16,
    }
);

pod!(
    /// `struct xen_netif_ctrl_request`.
    XenNetifCtrlRequest, 16, {
        id: u16,
        /// `XEN_NETIF_CTRL_TYPE_*` (`type` in C).
        type_: u16,
        data: [u32; 3],
    }
);

pod!(
    /// `struct xen_netif_ctrl_response`.
    XenNetifCtrlResponse, 12, {
        id: u16,
        /// `XEN_NETIF_CTRL_TYPE_*` (`type` in C).
        type_: u16,
        /// `XEN_NETIF_CTRL_STATUS_*`.
        status: u32,
        data: u32,
    }
);

pod!(
    /// `struct xen_netif_gref`.
    XenNetifGref, 8, {
        ref_: GrantRef,
        /// `XEN_NETIF_CTRLF_GREF_*`.
        flags: u16,
        /// `XEN_NETIF_CTRL_STATUS_*`-like status.
        status: u16,
    }
);

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Size of one tx ring entry (`union netif_tx_sring_entry`).
pub const NETIF_TX_RING_ENTRY_SIZE: usize =
    max(size_of::<NetifTxRequest>(), size_of::<NetifTxResponse>());
/// Size of one rx ring entry (`union netif_rx_sring_entry`).
pub const NETIF_RX_RING_ENTRY_SIZE: usize =
    max(size_of::<NetifRxRequest>(), size_of::<NetifRxResponse>());
/// Size of one control ring entry (`union xen_netif_ctrl_sring_entry`).
pub const XEN_NETIF_CTRL_RING_ENTRY_SIZE: usize = max(
    size_of::<XenNetifCtrlRequest>(),
    size_of::<XenNetifCtrlResponse>(),
);

/// Entries in a one-page tx ring (256).
pub const NETIF_TX_RING_SIZE: u32 = ring_size(4096, NETIF_TX_RING_ENTRY_SIZE);
/// Entries in a one-page rx ring (256).
pub const NETIF_RX_RING_SIZE: u32 = ring_size(4096, NETIF_RX_RING_ENTRY_SIZE);
/// Entries in a one-page control ring.
pub const XEN_NETIF_CTRL_RING_SIZE: u32 = ring_size(4096, XEN_NETIF_CTRL_RING_ENTRY_SIZE);
