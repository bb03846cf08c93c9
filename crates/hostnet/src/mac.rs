//! MAC addresses: random guest MACs in Xen's OUI, the host side's MAC.

use std::fmt;

/// A 48-bit Ethernet address, printed as `00:16:3e:74:3d:76`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

/// The MAC every vif's host side gets (as xl's netback does). A bridge takes
/// the lowest MAC among its ports as its own unless told otherwise: the
/// highest unicast-looking address keeps vifs coming and going from
/// changing the bridge's address.
pub const HOST_SIDE_MAC: Mac = Mac([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]);

/// Xen's organisationally unique identifier (XenSource).
pub const XEN_OUI: [u8; 3] = [0x00, 0x16, 0x3e];

impl Mac {
    /// A random guest MAC in Xen's OUI. As xl does, the fourth byte stays
    /// below 0x80: 00:16:3e:00:00:00-00:16:3e:7f:ff:ff is the range for
    /// random assignment, the upper half is left for administrators.
    pub fn random_xen() -> Mac {
        let r = random_bytes::<3>();
        Mac([XEN_OUI[0], XEN_OUI[1], XEN_OUI[2], r[0] & 0x7f, r[1], r[2]])
    }

    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 != 0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Error parsing a MAC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC {0:?}: expected six hex bytes separated by colons, such as 00:16:3e:74:3d:76")]
pub struct BadMac(pub String);

impl std::str::FromStr for Mac {
    type Err = BadMac;

    fn from_str(s: &str) -> Result<Mac, BadMac> {
        let bad = || BadMac(s.to_string());
        let mut mac = [0u8; 6];
        let mut groups = s.split(':');
        for byte in &mut mac {
            let g = groups.next().ok_or_else(bad)?;
            if g.is_empty() || g.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(g, 16).map_err(|_| bad())?;
        }
        if groups.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(mac))
    }
}

/// `N` bytes from the kernel's random source.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    let mut got = 0;
    while got < N {
        // SAFETY: writes at most N - got bytes into the rest of `buf`.
        let n = unsafe { libc::getrandom(buf[got..].as_mut_ptr().cast(), N - got, 0) };
        if n > 0 {
            got += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // getrandom cannot fail for a few bytes once the pool is up;
            // fall back on the clock rather than give every vif one MAC.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (t >> (8 * (i % 16))) as u8 ^ std::process::id() as u8;
            }
            break;
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_macs_are_in_xens_lower_half_and_differ() {
        let macs: Vec<Mac> = (0..64).map(|_| Mac::random_xen()).collect();
        for m in &macs {
            assert_eq!(m.0[..3], XEN_OUI);
            assert!(m.0[3] < 0x80, "{m}");
            assert!(!m.is_multicast());
        }
        let distinct: std::collections::HashSet<_> = macs.iter().collect();
        assert!(distinct.len() > 60, "{} distinct of 64", distinct.len());
    }

    #[test]
    fn macs_parse_and_print() {
        let m: Mac = "00:16:3E:7:3d:76".parse().unwrap();
        assert_eq!(m.to_string(), "00:16:3e:07:3d:76");
        assert_eq!(HOST_SIDE_MAC.to_string(), "fe:ff:ff:ff:ff:ff");
        for bad in [
            "",
            "00:16:3e:74:3d",
            "00:16:3e:74:3d:76:1",
            "00:16:3e:74:3d:7g",
            "0:1:2:3:4:567",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
