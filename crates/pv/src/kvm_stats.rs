//! KVM's binary statistics of a vCPU (`KVM_GET_STATS_FD`): the host's own
//! counters (exits, page faults taken and fixed, emulated instructions, shadow
//! MMU work). rxen logs them when a domain ends; they tell where the time
//! inside `KVM_RUN` goes, which rxen cannot see from its side of the ioctl.
//! debugfs has the same counters but is not readable on our hosts.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};

/// `_IO(KVMIO, 0xce)`.
const KVM_GET_STATS_FD: libc::c_ulong = 0xaece;
/// Size of `struct kvm_stats_header`.
const HEADER_LEN: usize = 24;
/// Fixed part of `struct kvm_stats_desc` (flags, exponent, size, offset,
/// bucket_size), followed by the name.
const DESC_FIXED: usize = 16;

/// One named counter (cumulative or instantaneous; histograms are summed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub name: String,
    pub value: u64,
}

/// Reads every statistic of the vCPU whose fd is `vcpu_fd`.
pub fn read_vcpu(vcpu_fd: &impl AsRawFd) -> std::io::Result<Vec<Stat>> {
    // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd or -1.
    let fd = unsafe { libc::ioctl(vcpu_fd.as_raw_fd(), KVM_GET_STATS_FD, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor this function owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    parse(&buf).ok_or_else(|| std::io::Error::other("malformed KVM stats data"))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn parse(b: &[u8]) -> Option<Vec<Stat>> {
    if b.len() < HEADER_LEN {
        return None;
    }
    let name_size = u32_at(b, 4)? as usize;
    let num_desc = u32_at(b, 8)? as usize;
    let desc_offset = u32_at(b, 16)? as usize;
    let data_offset = u32_at(b, 20)? as usize;
    let desc_len = DESC_FIXED + name_size;
    let mut out = Vec::with_capacity(num_desc);
    for i in 0..num_desc {
        let d = desc_offset + i * desc_len;
        let size = u16::from_ne_bytes(b.get(d + 6..d + 8)?.try_into().ok()?) as usize;
        let offset = u32_at(b, d + 8)? as usize;
        let raw_name = b.get(d + DESC_FIXED..d + desc_len)?;
        let end = raw_name
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(raw_name.len());
        let name = String::from_utf8_lossy(&raw_name[..end]).into_owned();
        let mut value = 0u64;
        for k in 0..size {
            value = value.wrapping_add(u64_at(b, data_offset + offset + k * 8)?);
        }
        out.push(Stat { name, value });
    }
    Some(out)
}

/// `name=value` for the non-zero counters, for a log line.
pub fn summary(stats: &[Stat]) -> String {
    stats
        .iter()
        .filter(|s| s.value != 0)
        .map(|s| format!("{}={}", s.name, s.value))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_descriptors_and_data() {
        let name_size = 8usize;
        let mut b = vec![0u8; HEADER_LEN];
        b[4..8].copy_from_slice(&(name_size as u32).to_ne_bytes());
        b[8..12].copy_from_slice(&2u32.to_ne_bytes());
        let desc_offset = HEADER_LEN;
        let data_offset = desc_offset + 2 * (DESC_FIXED + name_size);
        b[16..20].copy_from_slice(&(desc_offset as u32).to_ne_bytes());
        b[20..24].copy_from_slice(&(data_offset as u32).to_ne_bytes());
        for (name, size, offset) in [("exits", 1u16, 0u32), ("hist", 2, 8)] {
            let mut d = vec![0u8; DESC_FIXED + name_size];
            d[6..8].copy_from_slice(&size.to_ne_bytes());
            d[8..12].copy_from_slice(&offset.to_ne_bytes());
            d[DESC_FIXED..DESC_FIXED + name.len()].copy_from_slice(name.as_bytes());
            b.extend_from_slice(&d);
        }
        for v in [7u64, 1, 2] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        let s = parse(&b).unwrap();
        assert_eq!(
            s[0],
            Stat {
                name: "exits".into(),
                value: 7
            }
        );
        assert_eq!(
            s[1],
            Stat {
                name: "hist".into(),
                value: 3
            }
        );
        assert_eq!(summary(&s), "exits=7 hist=3");
        assert!(
            parse(&b[..b.len() - 4]).is_none(),
            "truncated data is refused"
        );
    }
}
