//! `cpus=`: which host CPUs the guest's vCPUs may run on (hard affinity).
//!
//! A CPULIST is a comma-separated list of items: `all`, a CPU `N` or range
//! `N-M`, or a NUMA node `node:N` / `nodes:N-M` (or `nodes:all`), each
//! optionally prefixed by `^` to remove it. `cpus` is either one CPULIST
//! for every vCPU or a list of CPULISTs, one per vCPU.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Whether an item names CPUs or whole NUMA nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuUnit {
    Cpu,
    Node,
}

/// One CPULIST item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuItem {
    /// `^`: remove rather than add.
    pub exclude: bool,
    pub unit: CpuUnit,
    /// Inclusive range; `None` means `all`.
    pub range: Option<(u32, u32)>,
}

/// A parsed CPULIST, items in order (later items override earlier ones).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CpuList(pub Vec<CpuItem>);

/// The `cpus=` setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuAffinity {
    /// One CPULIST for all vCPUs (`cpus="0-3,^1"`).
    All(CpuList),
    /// One CPULIST per vCPU (`cpus=["2", "3-8,^5"]`); vCPUs past the end
    /// of the list are not pinned.
    PerVcpu(Vec<CpuList>),
}

/// Why a CPULIST is refused (the message names the offending item).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid CPU list item {item:?}: {reason}")]
pub struct CpuListError {
    pub item: String,
    pub reason: &'static str,
}

impl CpuList {
    pub fn parse(s: &str) -> Result<CpuList, CpuListError> {
        let mut items = Vec::new();
        for raw in s.split(',').filter(|i| !i.is_empty()) {
            let bad = |reason| CpuListError {
                item: raw.to_string(),
                reason,
            };
            let (exclude, rest) = match raw.strip_prefix('^') {
                Some(r) => (true, r),
                None => (false, raw),
            };
            let (unit, rest) = match rest
                .strip_prefix("nodes:")
                .or_else(|| rest.strip_prefix("node:"))
            {
                Some(r) => (CpuUnit::Node, r),
                None => (CpuUnit::Cpu, rest),
            };
            let range = if rest == "all" {
                if exclude {
                    return Err(bad("\"^\" cannot be combined with \"all\""));
                }
                None
            } else {
                let num = |t: &str| {
                    (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| t.parse::<u32>().ok())
                        .flatten()
                };
                let (a, b) = match rest.split_once('-') {
                    Some((a, b)) => (num(a), num(b)),
                    None => (num(rest), num(rest)),
                };
                match (a, b) {
                    (Some(a), Some(b)) if a <= b => Some((a, b)),
                    (Some(_), Some(_)) => return Err(bad("the range ends before it starts")),
                    _ => {
                        return Err(bad(
                            "expected all, N, N-M, node:N or nodes:N-M, optionally after ^",
                        ))
                    }
                }
            };
            items.push(CpuItem {
                exclude,
                unit,
                range,
            });
        }
        if items.is_empty() {
            return Err(CpuListError {
                item: s.to_string(),
                reason: "the list is empty",
            });
        }
        Ok(CpuList(items))
    }

    /// The host CPUs named, given the host's CPU count and the CPUs of each
    /// NUMA node (`nodes[n]`). CPUs and nodes the host lacks are skipped.
    pub fn resolve(&self, host_cpus: u32, nodes: &[Vec<u32>]) -> BTreeSet<u32> {
        let mut set = BTreeSet::new();
        for item in &self.0 {
            let cpus: Vec<u32> = match (item.unit, item.range) {
                (CpuUnit::Cpu, None) => (0..host_cpus).collect(),
                (CpuUnit::Cpu, Some((a, b))) => (a..=b.min(host_cpus.saturating_sub(1))).collect(),
                (CpuUnit::Node, range) => {
                    let (a, b) = range.unwrap_or((0, u32::MAX));
                    nodes
                        .iter()
                        .enumerate()
                        .filter(|(n, _)| (a as usize..=b as usize).contains(n))
                        .flat_map(|(_, c)| c.iter().copied())
                        .collect()
                }
            };
            for c in cpus {
                if item.exclude {
                    set.remove(&c);
                } else {
                    set.insert(c);
                }
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host of the manual's example: 16 CPUs, 4 per node.
    fn nodes() -> Vec<Vec<u32>> {
        (0..4).map(|n| (n * 4..n * 4 + 4).collect()).collect()
    }

    fn cpus(s: &str) -> Vec<u32> {
        CpuList::parse(s)
            .unwrap()
            .resolve(16, &nodes())
            .into_iter()
            .collect()
    }

    #[test]
    fn examples_from_xl_cfg() {
        assert_eq!(cpus("all"), (0..16).collect::<Vec<_>>());
        assert_eq!(cpus("0-3,5,^1"), vec![0, 2, 3, 5]);
        assert_eq!(cpus("all,^7").len(), 15);
        assert_eq!(
            cpus("nodes:0-3,^node:2"),
            vec![0, 1, 2, 3, 4, 5, 6, 7, 12, 13, 14, 15]
        );
        assert_eq!(cpus("1,node:1,^6"), vec![1, 4, 5, 7]);
        assert_eq!(
            cpus("all,^node:1"),
            vec![0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15]
        );
        assert_eq!(cpus("3-8,^5"), vec![3, 4, 6, 7, 8]);
        assert_eq!(cpus("all,^5-8").len(), 12);
        assert_eq!(cpus("node:0,node:2,^9-11,18-20"), vec![0, 1, 2, 3, 8]);
    }

    #[test]
    fn bad_lists() {
        for s in ["", "^all", "3-1", "x", "1-", "node:", "-1"] {
            assert!(CpuList::parse(s).is_err(), "{s}");
        }
    }
}
