//! xenbus device states (`xen/io/xenbus.h`), stored as decimal strings in
//! the `state` node of each frontend and backend directory in xenstore.

use core::fmt;
use core::str::FromStr;

use crate::InvalidValue;

/// `enum xenbus_state`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum XenbusState {
    #[default]
    Unknown = 0,
    Initialising = 1,
    /// Finished early initialisation, waiting for the peer.
    InitWait = 2,
    /// Initialised and waiting for a connection from the peer.
    Initialised = 3,
    Connected = 4,
    /// The device is being closed.
    Closing = 5,
    Closed = 6,
    /// Reconfiguring (e.g. a PCI device hotplug).
    Reconfiguring = 7,
    Reconfigured = 8,
}

impl XenbusState {
    /// Every state, in numeric order.
    pub const ALL: [XenbusState; 9] = [
        Self::Unknown,
        Self::Initialising,
        Self::InitWait,
        Self::Initialised,
        Self::Connected,
        Self::Closing,
        Self::Closed,
        Self::Reconfiguring,
        Self::Reconfigured,
    ];
}

impl TryFrom<u32> for XenbusState {
    type Error = InvalidValue;

    fn try_from(v: u32) -> Result<Self, InvalidValue> {
        Self::ALL
            .get(v as usize)
            .copied()
            .ok_or_else(|| InvalidValue::new("xenbus state", v))
    }
}

impl From<XenbusState> for u32 {
    fn from(s: XenbusState) -> u32 {
        s as u32
    }
}

/// Parses the xenstore form: a decimal number, surrounding whitespace
/// allowed (Linux reads it with `%d`).
impl FromStr for XenbusState {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        s.trim()
            .parse::<u32>()
            .map_err(|_| InvalidValue::new("xenbus state", s))
            .and_then(Self::try_from)
    }
}

/// Formats the xenstore form: the decimal number (`"4"` for `Connected`).
impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", *self as u32)
    }
}
