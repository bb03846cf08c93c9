//! `vif=[...]` entries: the VIFSPEC syntax of `xl-network-configuration(5)`.
//!
//! A spec is a comma-separated list of `key=value` pairs, all optional; the
//! empty string is a valid spec (a NIC with every default). Unset fields
//! stay `None` here; the network backend applies the defaults the manual
//! gives (bridge `xenbr0`, script `vif-bridge`, a MAC in 00:16:3e, name
//! `vifDOMID.DEVID`).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A 48-bit MAC address; reads and prints as `00:16:3e:74:3d:76`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl std::str::FromStr for MacAddr {
    type Err = VifError;

    /// Six groups of one or two hex digits separated by colons.
    fn from_str(s: &str) -> Result<Self, VifError> {
        let bad = || VifError::BadMac(s.to_string());
        let groups: Vec<&str> = s.split(':').collect();
        if groups.len() != 6 {
            return Err(bad());
        }
        let mut mac = [0u8; 6];
        for (byte, g) in mac.iter_mut().zip(groups) {
            if g.is_empty() || g.len() > 2 || !g.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(g, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(mac))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl TryFrom<String> for MacAddr {
    type Error = VifError;
    fn try_from(s: String) -> Result<Self, VifError> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

/// `type=`: how an HVM guest sees the NIC (meaningless for PV guests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NicType {
    /// Paravirtualised only.
    Vif,
    /// Emulated as well as paravirtualised.
    Ioemu,
}

/// `rate=RATE/s[@INTERVAL]`: credit-based transmit limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VifRate {
    pub bytes_per_sec: u64,
    /// How often the credit is replenished (default 50 ms).
    pub interval_usecs: u32,
    /// The credit: bytes that may be sent per interval.
    pub bytes_per_interval: u64,
}

/// One parsed and validated `vif=` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VifSpec {
    /// Device id: the entry's index in the list unless `devid=` is given.
    pub devid: u32,
    pub mac: Option<MacAddr>,
    pub bridge: Option<String>,
    /// `gatewaydev=` (or its deprecated alias `netdev=`), for vif-route.
    pub gatewaydev: Option<String>,
    #[serde(rename = "type")]
    pub nic_type: Option<NicType>,
    pub model: Option<String>,
    /// Backend interface name (`vifname=`).
    pub vifname: Option<String>,
    pub script: Option<String>,
    /// `ip=`: one or more addresses separated by blanks, as written.
    pub ip: Option<String>,
    /// Backend domain name (default: domain 0).
    pub backend: Option<String>,
    pub rate: Option<VifRate>,
    pub mtu: Option<u32>,
}

/// What is wrong with a VIFSPEC.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VifError {
    /// unrecognized argument `{0}` (expected key=value with key one of mac, bridge, gatewaydev, type, model, vifname, script, ip, backend, rate, devid, mtu)
    #[error("unrecognized argument `{0}` (expected key=value with key one of mac, bridge, gatewaydev, type, model, vifname, script, ip, backend, rate, devid, mtu)")]
    Unrecognized(String),
    /// invalid mac {0:?}: expected six hex bytes separated by colons, such as 00:16:3e:74:3d:76
    #[error(
        "invalid mac {0:?}: expected six hex bytes separated by colons, such as 00:16:3e:74:3d:76"
    )]
    BadMac(String),
    /// invalid type {0:?}: expected vif or ioemu
    #[error("invalid type {0:?}: expected vif or ioemu")]
    BadType(String),
    /// invalid rate {0:?}: expected RATE/s or RATE/s@INTERVAL, RATE a number with optional GB, MB, KB, B (bytes) or Gb, Mb, Kb, b (bits) suffix, INTERVAL a number with optional s, ms or us suffix
    #[error("invalid rate {0:?}: expected RATE/s or RATE/s@INTERVAL, RATE a number with optional GB, MB, KB, B (bytes) or Gb, Mb, Kb, b (bits) suffix, INTERVAL a number with optional s, ms or us suffix")]
    BadRate(String),
    /// rate {0:?} is zero or too large
    #[error("rate {0:?} is zero or too large")]
    RateOverflow(String),
    /// invalid ip {0:?}: expected IP addresses separated by blanks
    #[error("invalid ip {0:?}: expected IP addresses separated by blanks")]
    BadIp(String),
    /// invalid {key} {value:?}: expected {expected}
    #[error("invalid {key} {value:?}: expected {expected}")]
    BadNumber {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    /// invalid vifname {0:?}: expected 1 to 15 characters, no blanks or `/`
    #[error("invalid vifname {0:?}: expected 1 to 15 characters, no blanks or `/`")]
    BadVifname(String),
}

/// A VIFSPEC error and the character offset of the offending parameter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct VifSpecError {
    pub offset: usize,
    pub error: VifError,
}

impl VifSpec {
    /// Parses one VIFSPEC for the device at `index` in the list. Besides
    /// the spec, returns notes about parameters accepted but ignored.
    pub fn parse(spec: &str, index: u32) -> Result<(VifSpec, Vec<String>), VifSpecError> {
        let mut vif = VifSpec {
            devid: index,
            ..VifSpec::default()
        };
        let mut notes = Vec::new();
        let mut offset = 0;
        for raw in spec.split(',') {
            let token = raw.trim_start_matches(' ');
            let at = offset + raw.chars().count() - token.chars().count();
            offset += raw.chars().count() + 1;
            if token.is_empty() {
                continue;
            }
            vif.set(token, &mut notes)
                .map_err(|error| VifSpecError { offset: at, error })?;
        }
        Ok((vif, notes))
    }

    fn set(&mut self, token: &str, notes: &mut Vec<String>) -> Result<(), VifError> {
        let Some((key, v)) = token.split_once('=') else {
            return Err(VifError::Unrecognized(token.into()));
        };
        let s = || Some(v.to_string());
        match key {
            "mac" => self.mac = Some(v.parse()?),
            "bridge" => self.bridge = s(),
            "gatewaydev" => self.gatewaydev = s(),
            "netdev" => {
                notes.push("`netdev` is deprecated: use `gatewaydev`".into());
                self.gatewaydev = s();
            }
            "type" => {
                self.nic_type = Some(match v {
                    "vif" => NicType::Vif,
                    "ioemu" => NicType::Ioemu,
                    _ => return Err(VifError::BadType(v.into())),
                })
            }
            "model" => self.model = s(),
            "vifname" => {
                if v.is_empty() || v.len() > 15 || v.contains(['/', ' ', '\t', '\n']) {
                    return Err(VifError::BadVifname(v.into()));
                }
                self.vifname = s();
            }
            "script" => self.script = s(),
            "ip" => {
                let ok = v.split_whitespace().count() > 0
                    && v.split_whitespace().all(|a| {
                        let addr = a.split_once('/').map_or(a, |(addr, _)| addr);
                        addr.parse::<IpAddr>().is_ok()
                    });
                if !ok {
                    return Err(VifError::BadIp(v.into()));
                }
                self.ip = s();
            }
            "backend" => self.backend = s(),
            "rate" => self.rate = Some(parse_rate(v)?),
            "devid" => {
                self.devid = decimal(v, "devid", "a decimal number", 0, u32::MAX as u64)? as u32
            }
            "mtu" => {
                self.mtu =
                    Some(decimal(v, "mtu", "a decimal number from 68 to 65535", 68, 65535)? as u32)
            }
            "accel" => notes.push("`accel` is not supported and is ignored".into()),
            k if k.starts_with("colo_") || k == "forwarddev" => notes.push(format!(
                "`{k}` is ignored: COLO replication is not supported"
            )),
            _ => return Err(VifError::Unrecognized(token.into())),
        }
        Ok(())
    }
}

fn decimal(
    v: &str,
    key: &'static str,
    expected: &'static str,
    min: u64,
    max: u64,
) -> Result<u64, VifError> {
    v.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n) && v.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| VifError::BadNumber {
            key,
            value: v.into(),
            expected,
        })
}

/// `RATE/s[@INTERVAL]` as xl reads it: `RATE` is `[0-9]+[GMK]?[Bb]/s`
/// (decimal multipliers; lower-case `b` means bits); `INTERVAL` is
/// `[0-9]+[mu]?s?` where a bare number or `s` means seconds, `m` milli- and
/// `u` microseconds.
pub fn parse_rate(rate: &str) -> Result<VifRate, VifError> {
    let bad = || VifError::BadRate(rate.into());
    let overflow = || VifError::RateOverflow(rate.into());
    let (bytes, interval) = match rate.split_once('@') {
        Some((b, i)) => (b, Some(i)),
        None => (rate, None),
    };
    let body = bytes.strip_suffix("/s").ok_or_else(bad)?;
    let digits = body.bytes().take_while(|b| b.is_ascii_digit()).count();
    let (num, unit) = body.split_at(digits);
    let (mult, bits) = match unit {
        "GB" => (1_000_000_000, false),
        "MB" => (1_000_000, false),
        "KB" => (1_000, false),
        "B" => (1, false),
        "Gb" => (1_000_000_000, true),
        "Mb" => (1_000_000, true),
        "Kb" => (1_000, true),
        "b" => (1, true),
        _ => return Err(bad()),
    };
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| overflow())?;
    if n == 0 || n > u32::MAX as u64 {
        return Err(overflow());
    }
    let mut bytes_per_sec = n * mult;
    if bits {
        bytes_per_sec /= 8;
    }
    let interval_usecs: u64 = match interval {
        None => 50_000,
        Some(i) => {
            let digits = i.bytes().take_while(|b| b.is_ascii_digit()).count();
            let (num, unit) = i.split_at(digits);
            let mult = match unit {
                "" | "s" => 1_000_000,
                "m" | "ms" => 1_000,
                "u" | "us" => 1,
                _ => return Err(bad()),
            };
            if num.is_empty() {
                return Err(bad());
            }
            let n: u64 = num.parse().map_err(|_| overflow())?;
            if n == 0 || n > u32::MAX as u64 || n * mult > u32::MAX as u64 {
                return Err(overflow());
            }
            n * mult
        }
    };
    let bytes_per_interval = bytes_per_sec
        .checked_mul(interval_usecs)
        .ok_or_else(overflow)?
        / 1_000_000;
    Ok(VifRate {
        bytes_per_sec,
        interval_usecs: interval_usecs as u32,
        bytes_per_interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_from_the_manual() {
        let r = parse_rate("10Mb/s").unwrap();
        assert_eq!((r.bytes_per_sec, r.interval_usecs), (1_250_000, 50_000));
        let r = parse_rate("250KB/s").unwrap();
        assert_eq!(r.bytes_per_sec, 250_000);
        // "1MB/s@20ms": 20,000 bytes replenished every 20,000 us.
        let r = parse_rate("1MB/s@20ms").unwrap();
        assert_eq!((r.bytes_per_interval, r.interval_usecs), (20_000, 20_000));
        assert_eq!(parse_rate("1MB/s@20us").unwrap().interval_usecs, 20);
        assert_eq!(parse_rate("1MB/s@2").unwrap().interval_usecs, 2_000_000);
        for bad in ["", "10", "10Mb", "10TB/s", "MB/s", "1MB/s@", "1MB/s@5x"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_rate("0MB/s"),
            Err(VifError::RateOverflow("0MB/s".into()))
        );
    }

    #[test]
    fn mac_round_trips() {
        let m: MacAddr = "00:16:3E:74:3d:76".parse().unwrap();
        assert_eq!(m.to_string(), "00:16:3e:74:3d:76");
        assert!("00:16:3e:74:3d".parse::<MacAddr>().is_err());
        assert!("00:16:3e:74:3d:7g".parse::<MacAddr>().is_err());
        assert!("00:16:3e:74:3d:766".parse::<MacAddr>().is_err());
    }
}
